/* bench.h: the data-plane benchmark (shoal bench dataplane): the limits the
 * worker's own loop is measured beside, and the kernel peer's sender. */
#ifndef SHOAL_BENCH_H
#define SHOAL_BENCH_H

#include <stdint.h>

#include <rte_mempool.h>

#include "sdp.h"

enum sdp_bench_mode {
	SDP_BENCH_BARE = 0,    /* rx -> free: the port and the pool alone */
	SDP_BENCH_HEADERS = 1, /* rx -> read Ethernet, IPv4, TCP headers -> free:
				* the least any classifier must do */
	SDP_BENCH_FLOOR = 2,   /* the header loop, plus the connection value
				* (sdp_conn_value's CRC32C) and the ownership
				* test of every frame; owned SYNs out through
				* tx_port (the worker's tap sink), the rest
				* freed: the least a SYN classifier must do, with
				* no flow table and no checksum */
};

struct sdp_bench {
	int mode;
	uint16_t rx_port;
	uint64_t duration_ms;
	/* SDP_BENCH_FLOOR only */
	uint16_t tx_port;
	uint32_t seed;		/* the connection-value seed */
	const uint64_t *owner;	/* SDP_BUCKETS bits: the owned buckets */
	/* results */
	uint64_t packets;
	uint64_t cycles;
	uint64_t hz;
	uint64_t cpu_ns; /* the lcore thread's CPU time over the run: on a shared
			  * machine the run's rate per CPU second stays near the
			  * quiet machine's while its wall-clock rate does not */
	uint64_t sink; /* what the header loop read, so it is not optimised away */
	uint64_t delivered; /* frames tx_port took (SDP_BENCH_FLOOR) */
};

/* Lcore entry point: poll rx_port for duration_ms; arg is struct sdp_bench *. */
int sdp_bench_main(void *arg);

/* The sender of the kernel peer's benchmark: rx_port's frames (a replay
 * port) out through tx_port for duration_ms; arg is struct sdp_bench_tx *. */
struct sdp_bench_tx {
	uint16_t rx_port;
	uint16_t tx_port;
	uint64_t duration_ms;
	uint64_t sent;
	uint64_t refused;
};
int sdp_bench_tx_main(void *arg);

/* Write n frames of len bytes each (packed in buf) into the n mbufs of
 * pool, so that a net_null port on that pool receives them in order, over
 * and over. pool must have no per-lcore cache. With frees (from
 * sdp_bench_free_pool) the mbufs are freed through it. Returns 0 or -errno. */
int sdp_bench_fill_pool(struct rte_mempool *pool, struct rte_mempool *frees,
			const uint8_t *buf, uint32_t n, uint16_t len);

/* A pool with a per-lcore cache of cache mbufs and no objects of its own,
 * through which the mbufs of fifo (a replay pool without a cache) are freed:
 * what its caches flush goes to fifo's ring, in order. Sets *out and
 * returns 0, or returns -errno. Release it with sdp_bench_free_pool_release
 * (which flushes every lcore's cache into fifo) before fifo is freed and
 * while no lcore uses it. */
int sdp_bench_free_pool(struct rte_mempool *fifo, const char *name,
			unsigned cache, struct rte_mempool **out);
void sdp_bench_free_pool_release(struct rte_mempool *mp);
/* Return what every lcore's cache of mp holds to its replay pool: no lcore
 * may be freeing into mp meanwhile. */
void sdp_bench_free_pool_flush(struct rte_mempool *mp);

/* Insert n established flows (client-side keys, network order) without
 * packets, expiring far in the future. Returns how many went in. */
uint32_t sdp_bench_preload(struct sdp_classifier *c, const uint32_t *keys,
			   uint32_t n, uint32_t now_ms);

/* Insert one half-open flow (SYN_RCVD, our ISN not known yet, the client's
 * next sequence number cnxt), as a SYN would, without the SYN: for the
 * tests that need the worker to start with a handshake open. Returns 0, or
 * -EEXIST, -ENOSPC. */
int sdp_bench_preload_half_open(struct sdp_classifier *c, uint32_t saddr,
				uint32_t daddr, uint16_t sport, uint16_t dport,
				uint32_t cnxt, uint32_t now_ms);

struct sdp_worker;

/* Cycles of n iterations of an empty loop that, with poll set, checks the
 * command ring for work exactly as the worker's loop does once per
 * iteration. The worker must be stopped and its ring empty (0 otherwise). */
uint64_t sdp_bench_cmd_poll(struct sdp_worker *w, uint64_t n, int poll);

#endif
