/* worker.h: the DPDK poll loop around the classifier. */
#ifndef SHOAL_WORKER_H
#define SHOAL_WORKER_H

#include <stdatomic.h>
#include <stdint.h>

#include "sdp.h"

/* State shared by every worker of a node: the published ownership table.
 * Go swaps the pointer; workers load it once per loop iteration. */
struct sdp_shared {
	_Atomic(struct sdp_owner_table *) table;
};

struct sdp_worker {
	struct sdp_classifier cls;
	struct sdp_shared *shared;
	uint16_t nic_port;
	uint16_t nic_queue;
	uint16_t tap_port;
	uint16_t tap_queue;
	uint32_t idle_sleep_max_us;
	/* Written by the worker, read by Go. */
	_Atomic uint64_t seen_epoch; /* epoch of the table in use: the quiescent report */
	_Atomic int running;
	uint64_t polls;
	uint64_t idle_sleeps;
	uint64_t sleep_us;
	/* Written by Go. */
	_Atomic int stop;
	/* Flow dump: Go fills the request and sets dump_req; the worker, which
	 * alone touches its table, copies up to dump_max flows from
	 * dump_cursor into dump_buf at its next iteration and sets dump_done. */
	_Atomic int dump_req;
	_Atomic int dump_done;
	struct sdp_flow *dump_buf;
	uint32_t dump_max;
	uint32_t dump_cursor;
	uint32_t dump_n;
};

/* The lcore entry point; arg is a struct sdp_worker *. */
int sdp_worker_main(void *arg);

/* Milliseconds of the worker clock (TSC based, shared by all workers). */
uint32_t sdp_now_ms(void);

/* Publish a new table; returns the old one, which the caller frees once
 * every running worker reports an epoch at least as new. */
struct sdp_owner_table *sdp_publish(struct sdp_shared *s,
				    struct sdp_owner_table *t);

/* 1 when every worker in ws[0..n) is stopped or has seen epoch. */
int sdp_quiescent(struct sdp_worker **ws, uint32_t n, uint64_t epoch);

/* Accessors for Go, which cannot name C11 atomics. */
static inline void sdp_worker_set_stop(struct sdp_worker *w, int v) { atomic_store(&w->stop, v); }
static inline void sdp_worker_set_running(struct sdp_worker *w, int v) { atomic_store(&w->running, v); }
static inline int sdp_worker_running(struct sdp_worker *w) { return atomic_load(&w->running); }
static inline void sdp_worker_request_dump(struct sdp_worker *w) { atomic_store(&w->dump_done, 0); atomic_store(&w->dump_req, 1); }
static inline int sdp_worker_dump_done(struct sdp_worker *w) { return atomic_load(&w->dump_done); }
static inline uint64_t sdp_worker_epoch(struct sdp_worker *w) { return atomic_load(&w->seen_epoch); }

#endif
