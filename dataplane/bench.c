/* bench.c: the limits of the benchmark, on one lcore, over a net_null port
 * whose mempool was pre-filled with frame templates: the bare loop (rx ->
 * free), the header loop (rx -> read every frame's Ethernet, IPv4 and
 * TCP headers -> free) and the SYN floor (the header loop plus the
 * connection value, the ownership test and the owned SYNs out through the
 * tap). What they are limits of is the worker's own loop,
 * sdp_worker_main, which the benchmark runs through dataplane.Runtime on
 * the same port. Also the kernel peer's sender (sdp_bench_tx_main). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "bench.h"
#include "flows.h"
#include "worker.h"

static inline uint64_t read_headers(const uint8_t *p)
{
	uint64_t v = (uint64_t)p[12] << 8 | p[13];
	if (v != 0x0800)
		return v;
	const uint8_t *ip = p + 14;
	uint32_t daddr, ports;
	memcpy(&daddr, ip + 16, 4);
	const uint8_t *tcp = ip + (ip[0] & 15) * 4;
	memcpy(&ports, tcp, 4);
	return v ^ daddr ^ ports ^ ((uint64_t)ip[9] << 40) ^
	       ((uint64_t)(ip[2] << 8 | ip[3]) << 48) ^ ((uint64_t)tcp[13] << 32);
}

/* The floor's decision for one frame: 1 if it is a SYN (no ACK) of IPv4
 * TCP in a bucket of owner, whose connection value is sdp_conn_value's
 * CRC32C of the key's 12 bytes as the frame holds them. */
static inline int floor_owned_syn(const uint8_t *p, uint32_t seed,
				  const uint64_t *owner)
{
	if ((p[12] << 8 | p[13]) != 0x0800)
		return 0;
	const uint8_t *ip = p + 14;
	const uint8_t *tcp = ip + (ip[0] & 15) * 4;
	if (ip[9] != 6 || (tcp[13] & 0x12) != 0x02)
		return 0;
	uint64_t a;
	uint32_t k;
	memcpy(&a, ip + 12, 8);
	memcpy(&k, tcp, 4);
	uint16_t bucket = (uint16_t)sdp_conn_value_words(a, k, seed);
	return (owner[bucket >> 6] >> (bucket & 63)) & 1;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int sdp_bench_main(void *arg)
{
	struct sdp_bench *b = arg;
	struct rte_mbuf *pkts[SDP_BURST], *keep[SDP_BURST], *drop[SDP_BURST];
	uint64_t hz = rte_get_tsc_hz();
	uint64_t start = rte_get_tsc_cycles();
	uint64_t end = start + b->duration_ms * (hz / 1000);
	uint64_t packets = 0, sink = 0, delivered = 0;
	uint64_t now_tsc = start;
	uint64_t cpu0 = thread_cpu_ns();

	while (now_tsc < end) {
		for (int rep = 0; rep < 64; rep++) {
			uint16_t n = rte_eth_rx_burst(b->rx_port, 0, pkts, SDP_BURST);
			packets += n;
			if (b->mode != SDP_BENCH_BARE)
				for (uint16_t i = 0; i < n; i++)
					__builtin_prefetch(rte_pktmbuf_mtod(pkts[i], void *), 0, 0);
			if (b->mode != SDP_BENCH_FLOOR) {
				if (b->mode == SDP_BENCH_HEADERS)
					for (uint16_t i = 0; i < n; i++)
						sink += read_headers(rte_pktmbuf_mtod(pkts[i], uint8_t *));
				rte_pktmbuf_free_bulk(pkts, n);
				continue;
			}
			uint16_t nk = 0, nd = 0;
			for (uint16_t i = 0; i < n; i++) {
				if (floor_owned_syn(rte_pktmbuf_mtod(pkts[i], uint8_t *),
						    b->seed, b->owner))
					keep[nk++] = pkts[i];
				else
					drop[nd++] = pkts[i];
			}
			if (nk) {
				uint16_t sent = rte_eth_tx_burst(b->tx_port, 0, keep, nk);
				delivered += sent;
				if (sent < nk)
					rte_pktmbuf_free_bulk(keep + sent, nk - sent);
			}
			if (nd)
				rte_pktmbuf_free_bulk(drop, nd);
		}
		now_tsc = rte_get_tsc_cycles();
	}
	b->cpu_ns = thread_cpu_ns() - cpu0;
	b->packets = packets;
	b->cycles = now_tsc - start;
	b->hz = hz;
	b->sink = sink;
	b->delivered = delivered;
	return 0;
}

int sdp_bench_tx_main(void *arg)
{
	struct sdp_bench_tx *b = arg;
	struct rte_mbuf *pkts[SDP_BURST];
	uint64_t end = rte_get_tsc_cycles() + b->duration_ms * (rte_get_tsc_hz() / 1000);
	while (rte_get_tsc_cycles() < end) {
		uint16_t n = rte_eth_rx_burst(b->rx_port, 0, pkts, SDP_BURST);
		uint16_t m = rte_eth_tx_burst(b->tx_port, 0, pkts, n);
		if (m < n)
			rte_pktmbuf_free_bulk(pkts + m, n - m);
		b->sent += m;
		b->refused += n - m;
	}
	return 0;
}

/* The free side of a replay pool. The node's pool has a per-lcore cache
 * (node/dataplane.go: 256 mbufs), so a worker's frees, net_tap's one at a
 * time as much as the drop path's bulk ones, land in its lcore's cache and
 * reach the pool's ring in bulk. The replay pool cannot have that cache:
 * net_null's receive would then take back from it the mbufs just freed and
 * replay the same few dozen templates. So the templates' mbufs name as
 * theirs a second pool, with the node's cache and no objects of its own,
 * whose operations pass what its cache flushes (and what a thread without
 * a cache frees) on to the replay pool's ring: frees pay what they pay on
 * the node, receive still takes every template in turn (a frame waits at
 * most one cache flush, 1.5 x cache frees, before it is replayed). */
static int fwd_alloc(struct rte_mempool *mp)
{
	mp->pool_data = mp->pool_config;
	return 0;
}

static void fwd_free(struct rte_mempool *mp)
{
	(void)mp;
}

static int fwd_enqueue(struct rte_mempool *mp, void *const *objs, unsigned n)
{
	return rte_mempool_ops_enqueue_bulk(mp->pool_config, objs, n);
}

static int fwd_dequeue(struct rte_mempool *mp, void **objs, unsigned n)
{
	return rte_mempool_ops_dequeue_bulk(mp->pool_config, objs, n);
}

static unsigned fwd_count(const struct rte_mempool *mp)
{
	return rte_mempool_avail_count(mp->pool_config);
}

static const struct rte_mempool_ops fwd_ops = {
	.name = "shoal_bench_fwd",
	.alloc = fwd_alloc,
	.free = fwd_free,
	.enqueue = fwd_enqueue,
	.dequeue = fwd_dequeue,
	.get_count = fwd_count,
};

int sdp_bench_free_pool(struct rte_mempool *fifo, const char *name,
			unsigned cache, struct rte_mempool **out)
{
	static int registered = -1;
	if (registered < 0)
		registered = rte_mempool_register_ops(&fwd_ops);
	if (registered < 0)
		return registered;
	struct rte_mempool *mp = rte_mempool_create_empty(
		name, fifo->size, fifo->elt_size, cache, fifo->private_data_size,
		fifo->socket_id, 0);
	if (mp == NULL)
		return -rte_errno;
	/* Never populated: fwd_alloc is not called, and the operations read
	 * fifo from pool_config. */
	int rc = rte_mempool_set_ops_byname(mp, fwd_ops.name, fifo);
	if (rc != 0) {
		rte_mempool_free(mp);
		return rc;
	}
	memcpy(rte_mempool_get_priv(mp), rte_mempool_get_priv(fifo),
	       fifo->private_data_size);
	*out = mp;
	return 0;
}

void sdp_bench_free_pool_flush(struct rte_mempool *mp)
{
	if (mp == NULL)
		return;
	for (unsigned l = 0; l < RTE_MAX_LCORE; l++) {
		struct rte_mempool_cache *c = rte_mempool_default_cache(mp, l);
		if (c != NULL && c->len > 0)
			rte_mempool_cache_flush(c, mp);
	}
}

void sdp_bench_free_pool_release(struct rte_mempool *mp)
{
	sdp_bench_free_pool_flush(mp);
	rte_mempool_free(mp);
}

int sdp_bench_fill_pool(struct rte_mempool *pool, struct rte_mempool *frees,
			const uint8_t *buf, uint32_t n, uint16_t len)
{
	struct rte_mbuf **ms = calloc(n, sizeof(*ms));
	if (ms == NULL)
		return -ENOMEM;
	int rc = rte_pktmbuf_alloc_bulk(pool, ms, n);
	if (rc != 0) {
		free(ms);
		return -ENOBUFS;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (rte_pktmbuf_tailroom(ms[i]) < len) {
			rte_pktmbuf_free_bulk(ms, n);
			free(ms);
			return -EMSGSIZE;
		}
		memcpy(rte_pktmbuf_mtod(ms[i], uint8_t *), buf + (size_t)i * len, len);
		if (frees != NULL)
			ms[i]->pool = frees;
	}
	/* Put back in order, past any cache: the ring of a pool without a
	 * per-lcore cache hands them out again first in, first out, so the
	 * port cycles through them all. */
	rte_mempool_generic_put(pool, (void **)ms, n, NULL);
	free(ms);
	return 0;
}

uint32_t sdp_bench_preload(struct sdp_classifier *c, const uint32_t *keys,
			   uint32_t n, uint32_t now_ms)
{
	struct sdp_flow_table *t = &c->flows;
	uint32_t added = 0;
	for (uint32_t i = 0; i < n && t->count < t->max_flows; i++) {
		struct sdp_key k;
		memcpy(&k, keys + 3 * (size_t)i, sizeof(k));
		uint32_t hash = sdp_conn_value(c->seed, k.saddr, k.daddr,
					       k.sport, k.dport);
		uint32_t slot = sdp_slot_hash(t->key, &k);
		if (sdp_flows_find(t, &k, slot) != NULL)
			continue;
		struct sdp_flow *f = sdp_flows_insert(t, &k, slot,
						      (uint16_t)hash,
						      SDP_ESTABLISHED);
		f->expire_ms = now_ms + 0x7fffffffu;
		added++;
	}
	return added;
}

int sdp_bench_preload_half_open(struct sdp_classifier *c, uint32_t saddr,
				uint32_t daddr, uint16_t sport, uint16_t dport,
				uint32_t cnxt, uint32_t now_ms)
{
	struct sdp_flow_table *t = &c->flows;
	struct sdp_key k = {saddr, daddr, sport, dport};
	uint32_t slot = sdp_slot_hash(t->key, &k);
	if (sdp_flows_find(t, &k, slot) != NULL)
		return -EEXIST;
	if (t->count >= t->max_flows)
		return -ENOSPC;
	struct sdp_flow *f = sdp_flows_insert(
		t, &k, slot, (uint16_t)sdp_conn_value(c->seed, saddr, daddr, sport, dport),
		SDP_SYN_RCVD);
	f->expire_ms = now_ms + c->timers.half_open_ms;
	f->cnxt = cnxt;
	return 0;
}

uint64_t sdp_bench_cmd_poll(struct sdp_worker *w, uint64_t n, int poll)
{
	uint32_t worked = 0;
	uint64_t start = rte_get_tsc_cycles();
	for (uint64_t i = 0; i < n; i++) {
		if (poll && sdp_cmd_pending(&w->cmds))
			worked += sdp_cmd_run(&w->cmds, &w->cls, 0);
		/* Every iteration loads the ring again, as the worker's loop
		 * does between its bursts. */
		__asm__ volatile("" ::: "memory");
	}
	uint64_t cycles = rte_get_tsc_cycles() - start;
	return worked ? 0 : cycles;
}
