/* wanted.h: the bitmap an in-kernel prefilter reads (package prefilter).
 *
 * The NIC's af_packet socket can carry an eBPF socket filter that drops,
 * before the ring copy and before it wakes the worker, every well-formed
 * TCP segment to the VIP whose bucket is not "wanted": not owned by this
 * node and holding no flow of ours. That is exactly the worker's fast drop
 * (classify.c, pre_parse_rx: "A bucket that holds no flow of ours and that
 * we do not own"). The filter reads one bit per bucket from a memory-mapped
 * BPF array; the worker, and only the worker, writes it:
 *
 *   wanted = owned | used,   used = the flow table's bucket_bits.
 *
 * The invariant every write keeps: at every instant, wanted is a superset
 * of (owned | used) as the worker decides frames at that instant. A frame
 * the filter drops is then one the worker, deciding it at that instant,
 * would have fast-dropped; if the worker would only have seen it a moment
 * later, under a newer table, it is the same as the frame having arrived a
 * moment earlier (a SYN retransmission covers it, as for any SYN that
 * meets a bucket nobody owns yet). So:
 *
 *   - bits are set before the worker decides anything with them: a flow's
 *     bucket when its count goes 0 -> 1 (a SYN in an owned bucket, whose
 *     bit is already set; a handoff import or a withdrawn entry installed
 *     through the command ring), and an adopted table's owned buckets
 *     before the worker's first frame under it;
 *   - bits are cleared only after the worker stopped needing them: a
 *     bucket's count going 1 -> 0 clears it only if the table in use does
 *     not own it; adopting a table clears the buckets it lost and where no
 *     flow is left, which the worker decides as foreign from then on.
 *
 * Make-before-break therefore survives the filter: a node that gains a
 * bucket passes its frames from the moment its worker adopts the table,
 * one that loses it keeps passing them until its worker has adopted the
 * table without it, and a bucket that still holds flows of ours (live
 * connections of a lost bucket, withdrawn overlap losers and their
 * tombstones, imported handoffs) stays wanted until its last flow is gone,
 * so the overlap guard still sees every client ACK it must judge.
 *
 * One writer (the worker thread), any number of readers (the filter on
 * every CPU): words are written whole with relaxed atomic stores, so a
 * reader sees the old or the new word, never a torn one. The filter runs
 * before a frame enters the ring, so every frame the worker decides after
 * a store was filtered no earlier than that store's program-order point
 * minus the time the store takes to become visible: the "moment" above.
 */
#ifndef SHOAL_WANTED_H
#define SHOAL_WANTED_H

#include <stdint.h>

#include "sdp.h"

struct sdp_wanted {
	uint64_t *bits; /* SDP_BUCKETS bits: the prefilter map's memory */
	/* The table the bits were last built from: the worker's current
	 * c->owner, or NULL before the first. */
	const struct sdp_owner_table *adopted;
	uint64_t adopted_epoch;
	int synced; /* the bits were built once */
};

static inline void sdp_wanted_store(struct sdp_wanted *w, uint32_t i,
				    uint64_t v)
{
	__atomic_store_n(&w->bits[i], v, __ATOMIC_RELAXED);
}

/* A bucket's flow count went 0 -> 1: wanted from now on. */
static inline void sdp_wanted_used(struct sdp_wanted *w, uint16_t b)
{
	uint64_t v = w->bits[b >> 6] | 1ull << (b & 63);
	sdp_wanted_store(w, b >> 6, v);
}

/* A bucket's flow count went 1 -> 0: no longer wanted unless owned. */
static inline void sdp_wanted_unused(struct sdp_wanted *w, uint16_t b)
{
	const struct sdp_owner_table *o = w->adopted;
	if (o != NULL && (o->bits[b >> 6] >> (b & 63)) & 1)
		return;
	uint64_t v = w->bits[b >> 6] & ~(1ull << (b & 63));
	sdp_wanted_store(w, b >> 6, v);
}

/* Rebuild the bits for table o (NULL: none) and the flow table's used
 * buckets. Call before the worker decides a frame under o; a no-op when o
 * is the table already adopted. */
void sdp_wanted_adopt(struct sdp_wanted *w, const struct sdp_flow_table *t,
		      const struct sdp_owner_table *o);

#endif
