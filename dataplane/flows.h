/* flows.h: the flow table's internal interface, shared by classify.c. */
#ifndef SHOAL_FLOWS_H
#define SHOAL_FLOWS_H

#include "sdp.h"

/* A flow key: client address and port first, all in network order. Its 12
 * bytes are exactly the connection-value input. */
struct sdp_key {
	uint32_t saddr;
	uint32_t daddr;
	uint16_t sport;
	uint16_t dport;
};

/* Wrap-safe: a deadline has passed when now - deadline is not negative. */
static inline int sdp_expired(const struct sdp_flow *f, uint32_t now_ms)
{
	return (int32_t)(now_ms - f->expire_ms) >= 0;
}

int sdp_flows_init(struct sdp_flow_table *t, uint32_t max_flows,
		   uint32_t max_half_open);
void sdp_flows_free(struct sdp_flow_table *t);

/* The home slot of a connection value: multiplicative hashing of the
 * value the bucket came from, so a lookup needs no second hash. */
static inline uint32_t slot_of(const struct sdp_flow_table *t, uint32_t hash)
{
	return (uint32_t)(hash * 2654435761u) >> t->shift;
}

static inline void sdp_flows_prefetch(const struct sdp_flow_table *t,
				      uint32_t hash)
{
	__builtin_prefetch(&t->slots[slot_of(t, hash)], 0, 0);
}

static inline int key_eq(const struct sdp_flow *f, const struct sdp_key *k)
{
	return f->saddr == k->saddr && f->daddr == k->daddr &&
	       f->sport == k->sport && f->dport == k->dport;
}

static inline struct sdp_flow *sdp_flows_find(struct sdp_flow_table *t,
					      const struct sdp_key *k,
					      uint32_t hash)
{
	uint32_t i = slot_of(t, hash);
	for (;;) {
		struct sdp_flow *f = &t->slots[i];
		if (f->state == SDP_EMPTY)
			return NULL;
		if (f->hash == hash && key_eq(f, k))
			return f;
		i = (i + 1) & t->mask;
	}
}
struct sdp_flow *sdp_flows_insert(struct sdp_flow_table *t,
				  const struct sdp_key *k, uint32_t hash,
				  uint16_t bucket, uint8_t state);
void sdp_flows_set_state(struct sdp_flow_table *t, struct sdp_flow *f,
			 uint8_t state);
void sdp_flows_delete(struct sdp_flow_table *t, struct sdp_flow *f);
uint32_t sdp_flows_sweep_table(struct sdp_flow_table *t, uint32_t now_ms,
			       uint32_t max_slots);

#endif
