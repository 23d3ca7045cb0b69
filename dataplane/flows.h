/* flows.h: the flow table's internal interface, shared by classify.c. */
#ifndef SHOAL_FLOWS_H
#define SHOAL_FLOWS_H

#include <string.h>

#include <rte_byteorder.h>
#include <rte_hash_crc.h>

#include "sdp.h"

/* A flow key: client address and port first, all in network order. Its 12
 * bytes are exactly the connection-value input. */
struct sdp_key {
	uint32_t saddr;
	uint32_t daddr;
	uint16_t sport;
	uint16_t dport;
};

/* The connection value (frozen format: CRC32C under the cluster seed) of a
 * flow key given as its first 8 and last 4 bytes, as loaded from the frame
 * or from struct sdp_key. */
static inline uint32_t sdp_conn_value_words(uint64_t a, uint32_t b,
					    uint32_t seed)
{
	return rte_hash_crc_4byte(b, rte_hash_crc_8byte(a, seed));
}

/* Wrap-safe: a deadline has passed when now - deadline is not negative. */
static inline int sdp_expired(const struct sdp_flow *f, uint32_t now_ms)
{
	return (int32_t)(now_ms - f->expire_ms) >= 0;
}

int sdp_flows_init(struct sdp_flow_table *t, uint32_t max_flows,
		   uint32_t max_half_open);
void sdp_flows_free(struct sdp_flow_table *t);

/* Whether bucket b holds any flow of ours. */
static inline int sdp_bucket_used(const struct sdp_flow_table *t, uint16_t b)
{
	return (t->bucket_bits[b >> 6] >> (b & 63)) & 1;
}

/* SipHash-1-3 of a flow key's 12 bytes under the table's secret key: the
 * slot index. The connection value cannot serve: CRC32C is linear, so
 * anyone can compute many tuples with one value, whatever the seed, and pile
 * them into one probe run. A keyed PRF spreads them; the key is random per
 * table and never leaves the worker, and nothing the worker sends shows a
 * slot. One compression round per 8-byte block and three to finish, as in
 * Rust's default hasher and CPython's string hash (docs/dataplane.md, "The
 * slot index"): the hash sits on the path from a frame's key to its slot's
 * prefetch, and its latency is what the first pass waits through before
 * the next frame's miss can start. */
#define SDP_SIP_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SDP_SIPROUND                                                          \
	do {                                                                  \
		v0 += v1;                                                     \
		v1 = SDP_SIP_ROTL(v1, 13);                                    \
		v1 ^= v0;                                                     \
		v0 = SDP_SIP_ROTL(v0, 32);                                    \
		v2 += v3;                                                     \
		v3 = SDP_SIP_ROTL(v3, 16);                                    \
		v3 ^= v2;                                                     \
		v0 += v3;                                                     \
		v3 = SDP_SIP_ROTL(v3, 21);                                    \
		v3 ^= v0;                                                     \
		v2 += v1;                                                     \
		v1 = SDP_SIP_ROTL(v1, 17);                                    \
		v1 ^= v2;                                                     \
		v2 = SDP_SIP_ROTL(v2, 32);                                    \
	} while (0)

/* The slot hash of a key given as its two words, as loaded from memory
 * (frame or struct sdp_key) on a little-endian host: m0 the addresses,
 * m1 the ports. The worker hands words it loaded from the frame straight
 * in, so no key is stored and read back before hashing. */
static inline uint32_t sdp_slot_hash_words(const uint64_t key[2], uint64_t m0,
					   uint32_t m1)
{
	m0 = rte_le_to_cpu_64(m0);
	uint64_t last = (uint64_t)12 << 56 | rte_le_to_cpu_32(m1);
	uint64_t v0 = key[0] ^ 0x736f6d6570736575ull;
	uint64_t v1 = key[1] ^ 0x646f72616e646f6dull;
	uint64_t v2 = key[0] ^ 0x6c7967656e657261ull;
	uint64_t v3 = key[1] ^ 0x7465646279746573ull;
	v3 ^= m0;
	SDP_SIPROUND;
	v0 ^= m0;
	v3 ^= last;
	SDP_SIPROUND;
	v0 ^= last;
	v2 ^= 0xff;
	SDP_SIPROUND;
	SDP_SIPROUND;
	SDP_SIPROUND;
	return (uint32_t)(v0 ^ v1 ^ v2 ^ v3);
}

static inline uint32_t sdp_slot_hash(const uint64_t key[2],
				     const struct sdp_key *k)
{
	uint64_t m0;
	uint32_t m1;
	memcpy(&m0, k, 8);
	memcpy(&m1, (const uint8_t *)k + 8, 4);
	return sdp_slot_hash_words(key, m0, m1);
}

static inline uint32_t sdp_flow_slot_hash(const struct sdp_flow_table *t,
					  const struct sdp_flow *f)
{
	struct sdp_key k = {f->saddr, f->daddr, f->sport, f->dport};
	return sdp_slot_hash(t->key, &k);
}

static inline void sdp_flows_prefetch(const struct sdp_flow_table *t,
				      uint32_t slot_hash)
{
	__builtin_prefetch(&t->slots[slot_hash & t->mask], 0, 0);
}

static inline int key_eq(const struct sdp_flow *f, const struct sdp_key *k)
{
	return f->saddr == k->saddr && f->daddr == k->daddr &&
	       f->sport == k->sport && f->dport == k->dport;
}

/* Find a flow by key; slot_hash is sdp_slot_hash of the key. */
static inline struct sdp_flow *sdp_flows_find(struct sdp_flow_table *t,
					      const struct sdp_key *k,
					      uint32_t slot_hash)
{
	uint32_t i = slot_hash & t->mask;
	for (;;) {
		struct sdp_flow *f = &t->slots[i];
		if (f->state == SDP_EMPTY)
			return NULL;
		if (key_eq(f, k))
			return f;
		i = (i + 1) & t->mask;
	}
}
struct sdp_flow *sdp_flows_insert(struct sdp_flow_table *t,
				  const struct sdp_key *k, uint32_t slot_hash,
				  uint16_t bucket, uint8_t state);
void sdp_flows_set_state(struct sdp_flow_table *t, struct sdp_flow *f,
			 uint8_t state);
/* Give f's slot to a new flow of the same key in state: every field but
 * the key and the bucket starts afresh, as after deleting f and inserting
 * the key again (the slot stays on the key's probe path, the bucket's
 * count does not change). */
struct sdp_flow *sdp_flows_reuse(struct sdp_flow_table *t, struct sdp_flow *f,
				 uint8_t state);
/* Delete f; returns the slots the backward shift looked at (at least 1),
 * the work the sweep budget counts. */
uint32_t sdp_flows_delete(struct sdp_flow_table *t, struct sdp_flow *f);
/* Remove expired flows, touching about budget slots from the sweep cursor
 * (0: the whole table, from slot 0). */
uint32_t sdp_flows_sweep_table(struct sdp_flow_table *t, uint32_t now_ms,
			       uint32_t budget);

#endif
