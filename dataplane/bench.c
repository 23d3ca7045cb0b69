/* bench.c: the benchmark loop, on one lcore, over a net_null port whose
 * mempool was pre-filled with frame templates. The bare loop (rx -> free)
 * and the classifying loop (rx -> classify -> free) share everything but
 * the classification, so their ratio is the classifier's cost. Frames the
 * classifier would send (tap or NIC) are freed in bulk like drops: the
 * benchmark measures decisions, not the kernel's tap path. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "bench.h"
#include "flows.h"
#include "worker.h"

int sdp_bench_main(void *arg)
{
	struct sdp_bench *b = arg;
	struct rte_mbuf *pkts[SDP_BURST];
	uint8_t *frames[SDP_BURST];
	uint16_t lens[SDP_BURST];
	uint8_t verdicts[SDP_BURST];
	uint64_t hz = rte_get_tsc_hz();
	uint64_t start = rte_get_tsc_cycles();
	uint64_t end = start + b->duration_ms * (hz / 1000);
	uint64_t packets = 0;
	uint64_t now_tsc = start;

	while (now_tsc < end) {
		for (int rep = 0; rep < 64; rep++) {
			uint16_t n = rte_eth_rx_burst(b->rx_port, 0, pkts, SDP_BURST);
			if (b->cls != NULL && n > 0) {
				for (uint16_t i = 0; i < n; i++) {
					frames[i] = rte_pktmbuf_mtod(pkts[i], uint8_t *);
					lens[i] = rte_pktmbuf_data_len(pkts[i]);
				}
				sdp_classify_rx(b->cls, frames, lens, n,
						(uint32_t)((now_tsc - start) / (hz / 1000)),
						NULL, verdicts);
			}
			rte_pktmbuf_free_bulk(pkts, n);
			packets += n;
		}
		now_tsc = rte_get_tsc_cycles();
	}
	b->packets = packets;
	b->cycles = now_tsc - start;
	b->hz = hz;
	return 0;
}

int sdp_bench_fill_pool(struct rte_mempool *pool, const uint8_t *buf,
			uint32_t n, uint16_t len)
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
	}
	/* Freed in order: a pool without a per-lcore cache hands them out
	 * again first in, first out, so the port cycles through them all. */
	rte_pktmbuf_free_bulk(ms, n);
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
