/* worker.h: the DPDK poll loop around the classifier. */
#ifndef SHOAL_WORKER_H
#define SHOAL_WORKER_H

#include <stdatomic.h>
#include <stdint.h>

#include "cmd.h"
#include "sdp.h"

/* State shared by every worker of a node: the published ownership table.
 * Go swaps the pointer; workers load it once per loop iteration. */
struct sdp_shared {
	_Atomic(struct sdp_owner_table *) table;
};

/* The worker's spin decision: whether to keep polling through the first
 * spin_us of the next quiet spell before sleeping, from whether it did so
 * in the last spell and how long it asked to sleep in it. Spinning stays on
 * while spells end before the first sleep (a spin caught the next packet),
 * and comes back when a spell ends within sleeps adding up to no more than
 * spin_us (a spin would have caught it). */
static inline int sdp_spin_next(int spin, uint64_t spell_slept_us,
				uint64_t spin_us)
{
	return spin ? spell_slept_us == 0 : spell_slept_us <= spin_us;
}

struct sdp_worker {
	struct sdp_classifier cls;
	struct sdp_shared *shared;
	uint16_t nic_port;
	uint16_t nic_queue;
	uint16_t tap_port;
	uint16_t tap_queue;
	uint32_t idle_sleep_max_us;
	/* File descriptors that poll(2) reports readable while the NIC's and
	 * the tap's receive queues hold packets (dpdk.Port.RxWaitFD), or -1.
	 * With both, an idle worker sleeps in ppoll on them until a packet
	 * comes or idle_sleep_max_us passes; otherwise in timed nanosleeps. */
	int nic_fd;
	int tap_fd;
	/* Written by the worker, read by Go. */
	_Atomic uint64_t seen_epoch; /* epoch of the table in use: the quiescent report */
	_Atomic int running;
	uint64_t polls;
	uint64_t idle_sleeps;
	uint64_t sleep_us;   /* time asleep, measured (TSC) */
	uint64_t empty_wakes; /* sleeps after which the next poll found nothing */
	/* The longest loop iteration, in TSC cycles, sleep excluded: what a
	 * packet arriving at the worst moment waits for. Go resets it with
	 * sdp_worker_take_max_iter. */
	_Atomic uint64_t max_iter_cycles;
	_Atomic int tid; /* the worker thread's id, for operators (taskset, perf) */
	/* Written by Go. */
	_Atomic int stop;
	/* Commands from Go: install, remove, withdraw, dump (cmd.h). */
	struct sdp_cmd_ring cmds;
};

/* A zeroed worker, aligned as its command ring requires; free() frees it. */
struct sdp_worker *sdp_worker_alloc(void);

/* The lcore entry point; arg is a struct sdp_worker *. */
int sdp_worker_main(void *arg);

/* The worker clock: milliseconds since sdp_clock_init, from the TSC, shared
 * by every worker and by Go (flow deadlines are in this clock). Call
 * sdp_clock_init once, after the EAL is up and before the first worker
 * starts (NewRuntime does, under a sync.Once); it returns -EAGAIN while the
 * EAL does not know the TSC rate yet and 0 otherwise, also when called
 * again (the clock is never reset). */
int sdp_clock_init(void);
extern uint64_t sdp_clock_start, sdp_clock_per_ms;
static inline uint32_t sdp_clock_ms(uint64_t tsc)
{
	return (uint32_t)((tsc - sdp_clock_start) / sdp_clock_per_ms);
}
uint32_t sdp_now_ms(void);
uint64_t sdp_tsc_hz(void);

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
static inline uint64_t sdp_worker_take_max_iter(struct sdp_worker *w) { return atomic_exchange(&w->max_iter_cycles, 0); }
static inline uint64_t sdp_worker_max_iter(struct sdp_worker *w) { return atomic_load(&w->max_iter_cycles); }
static inline int sdp_worker_tid(struct sdp_worker *w) { return atomic_load(&w->tid); }
static inline uint64_t sdp_worker_cmds_done(struct sdp_worker *w) { return atomic_load(&w->cmds.done); }
static inline uint64_t sdp_worker_epoch(struct sdp_worker *w) { return atomic_load(&w->seen_epoch); }

#endif
