/* flows.c: the per-worker flow table.
 *
 * Open addressing with linear probing and backward-shift deletion. The slot
 * index is SipHash-1-3 of the key under a random per-table key (flows.h),
 * so tuples that share a connection value, which anyone can compute, still
 * land in unrelated slots. Only the worker that owns the table touches it:
 * no locks, no atomics.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "flows.h"
#include "wanted.h"


/* Zeroed memory aligned to 2 MiB and marked for transparent huge pages: a
 * table probed at random misses the TLB on every lookup with 4 KiB pages. */
static void *huge_calloc(size_t size)
{
	const size_t huge = 2u << 20;
	void *p = NULL;
	if (size < huge) /* small tables (tests, fuzzing): no page to save */
		return calloc(1, size);
	size = (size + huge - 1) & ~(huge - 1);
	if (posix_memalign(&p, huge, size) != 0)
		return NULL;
	madvise(p, size, MADV_HUGEPAGE);
	memset(p, 0, size);
	return p;
}

int sdp_flows_init(struct sdp_flow_table *t, uint32_t max_flows,
		   uint32_t max_half_open)
{
	uint64_t cap = 1024;
	memset(t, 0, sizeof(*t));
	while (cap < (uint64_t)max_flows * 2)
		cap <<= 1;
	if (cap > (1ull << 31))
		return -EINVAL;
	t->slots = huge_calloc(cap * sizeof(struct sdp_flow));
	if (t->slots == NULL)
		return -ENOMEM;
	t->bucket_flows = huge_calloc(SDP_BUCKETS * sizeof(uint32_t));
	if (t->bucket_flows == NULL) {
		free(t->slots);
		t->slots = NULL;
		return -ENOMEM;
	}
	t->mask = (uint32_t)(cap - 1);
	t->max_flows = max_flows;
	t->max_half_open = max_half_open;
	return 0;
}

void sdp_flows_free(struct sdp_flow_table *t)
{
	free(t->slots);
	free(t->bucket_flows);
	t->slots = NULL;
	t->bucket_flows = NULL;
}


struct sdp_flow *sdp_flows_insert(struct sdp_flow_table *t,
				  const struct sdp_key *k, uint32_t slot_hash,
				  uint16_t bucket, uint8_t state)
{
	uint32_t i = slot_hash & t->mask;
	while (t->slots[i].state != SDP_EMPTY)
		i = (i + 1) & t->mask;
	struct sdp_flow *f = &t->slots[i];
	memset(f, 0, sizeof(*f));
	f->saddr = k->saddr;
	f->daddr = k->daddr;
	f->sport = k->sport;
	f->dport = k->dport;
	f->bucket = bucket;
	f->state = state;
	t->count++;
	t->by_state[state]++;
	if (t->bucket_flows[bucket]++ == 0) {
		t->bucket_bits[bucket >> 6] |= 1ull << (bucket & 63);
		if (t->wanted != NULL)
			sdp_wanted_used(t->wanted, bucket);
	}
	return f;
}

void sdp_flows_set_state(struct sdp_flow_table *t, struct sdp_flow *f,
			 uint8_t state)
{
	t->by_state[f->state]--;
	t->by_state[state]++;
	f->state = state;
}

struct sdp_flow *sdp_flows_reuse(struct sdp_flow_table *t, struct sdp_flow *f,
				 uint8_t state)
{
	/* Field by field, in place: a struct built aside and copied in
	 * whole was read back in wider loads than it was written with, and
	 * stalled on store forwarding. */
	t->by_state[f->state]--;
	t->by_state[state]++;
	f->expire_ms = 0;
	f->state = state;
	f->flags = 0;
	f->isn = 0;
	f->cnxt = 0;
	f->cfin = 0;
	return f;
}

/* Backward-shift deletion: move later members of the probe run back into
 * the hole, so lookups never need tombstone slots. Entries do not store
 * their slot hash (it would cost 4 of their 32 bytes): each one the shift
 * looks at is hashed again, which runs kept short by the keyed index make
 * cheap. */
uint32_t sdp_flows_delete(struct sdp_flow_table *t, struct sdp_flow *f)
{
	uint32_t hole = (uint32_t)(f - t->slots);
	uint32_t work = 1;
	t->count--;
	t->by_state[f->state]--;
	if (--t->bucket_flows[f->bucket] == 0) {
		t->bucket_bits[f->bucket >> 6] &= ~(1ull << (f->bucket & 63));
		if (t->wanted != NULL)
			sdp_wanted_unused(t->wanted, f->bucket);
	}
	uint32_t i = hole;
	for (;;) {
		i = (i + 1) & t->mask;
		struct sdp_flow *g = &t->slots[i];
		if (g->state == SDP_EMPTY)
			break;
		work++;
		uint32_t home = sdp_flow_slot_hash(t, g) & t->mask;
		/* g may move into the hole only if its home is not in the
		 * cyclic interval (hole, i]. */
		if (((i - home) & t->mask) >= ((i - hole) & t->mask)) {
			t->slots[hole] = *g;
			hole = i;
		}
	}
	memset(&t->slots[hole], 0, sizeof(struct sdp_flow));
	return work;
}

uint32_t sdp_flows_sweep_table(struct sdp_flow_table *t, uint32_t now_ms,
			       uint32_t budget)
{
	uint32_t removed = 0;
	uint32_t cap = t->mask + 1;
	uint32_t visited = 0, work = 0;
	if (budget == 0) {
		/* The whole table: every slot once, whatever it costs. */
		t->sweep_cursor = 0;
		budget = UINT32_MAX;
	}
	while (work < budget && visited < cap) {
		uint32_t i = t->sweep_cursor;
		struct sdp_flow *f = &t->slots[i];
		if (f->state != SDP_EMPTY && sdp_expired(f, now_ms)) {
			/* The backward shift may pull an unvisited flow into
			 * slot i: look at slot i again before moving on. A
			 * flow shifted across the wrap to slot cap-1 is met by
			 * the next pass. */
			work += sdp_flows_delete(t, f);
			removed++;
			continue;
		}
		t->sweep_cursor = (i + 1) & t->mask;
		visited++;
		work++;
	}
	t->sweep_work = work;
	return removed;
}
