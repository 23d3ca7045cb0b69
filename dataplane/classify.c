/* classify.c: the per-packet decisions of a shoal worker.
 *
 * Pure functions over frames in memory: no device, no I/O, no locks. The Go
 * reference classifier (reference.go) implements the same rules; the
 * fixtures, the differential test and the fuzz target hold the two equal.
 * The rules are written out in docs/dataplane.md.
 */
#include <errno.h>
#include <string.h>

#include <rte_hash_crc.h>
#include <rte_ip.h>

#include "flows.h"
#include "sdp.h"

#define ETH_HLEN 14
#define ETH_P_IPV4 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_VLAN 0x8100
#define ETH_P_QINQ 0x88a8
#define ETH_P_QINQ_OLD 0x9100

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

static inline uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Loads in memory order: keys stay in network byte order. */
static inline uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint16_t ld16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return v;
}

/* CRC32C of a flow key, loaded through memcpy: handing the struct to
 * rte_hash_crc() would read it through a uint64_t pointer, which the
 * compiler may reorder before the struct's stores (strict aliasing). */
static inline uint32_t key_hash(const struct sdp_key *k, uint32_t seed)
{
	uint64_t a;
	uint32_t b;
	memcpy(&a, k, 8);
	memcpy(&b, (const uint8_t *)k + 8, 4);
	return sdp_conn_value_words(a, b, seed);
}

uint32_t sdp_conn_value(uint32_t seed, uint32_t saddr, uint32_t daddr,
			uint16_t sport, uint16_t dport)
{
	struct sdp_key k = {saddr, daddr, sport, dport};
	return key_hash(&k, seed);
}

uint32_t sdp_conn_value6(uint32_t seed, const uint8_t saddr[16],
			 const uint8_t daddr[16], uint16_t sport,
			 uint16_t dport)
{
	uint8_t in[36];
	memcpy(in, saddr, 16);
	memcpy(in + 16, daddr, 16);
	memcpy(in + 32, &sport, 2);
	memcpy(in + 34, &dport, 2);
	return rte_hash_crc(in, sizeof(in), seed);
}

int sdp_classifier_init(struct sdp_classifier *c, uint32_t max_flows,
			uint32_t max_half_open)
{
	memset(&c->flows, 0, sizeof(c->flows));
	memset(&c->ctr, 0, sizeof(c->ctr));
	if (max_flows == 0 || max_half_open == 0 || max_half_open > max_flows)
		return -EINVAL;
	int rc = sdp_flows_init(&c->flows, max_flows, max_half_open);
	c->flows.key[0] = c->slot_key[0];
	c->flows.key[1] = c->slot_key[1];
	return rc;
}

void sdp_classifier_free(struct sdp_classifier *c)
{
	sdp_flows_free(&c->flows);
}

/* A flow is finished once both FINs are acknowledged or a reset was
 * seen: only stragglers remain, which the closing timer covers. */
static inline int finished(const struct sdp_flow *fl)
{
	const uint8_t both = SDP_F_CFIN_ACKED | SDP_F_SFIN_ACKED;
	return (fl->flags & SDP_F_RST) || (fl->flags & both) == both;
}

/* An IPv4 (no options) TCP packet whose lengths hold: total length within
 * the frame, TCP header within the packet, not a fragment. */
static inline int tcp_frame_ok(const uint8_t *ip, uint16_t len)
{
	uint16_t totlen = rd16(ip + 2);
	uint8_t doff = ip[20 + 12] >> 4;
	return totlen >= 40 && (uint32_t)ETH_HLEN + totlen <= len &&
	       !(rd16(ip + 6) & 0x3fff) && doff >= 5 && 20u + doff * 4u <= totlen;
}

static inline int owned(const struct sdp_classifier *c, uint16_t bucket)
{
	const struct sdp_owner_table *o = c->owner;
	return o != NULL && (o->bits[bucket >> 6] >> (bucket & 63)) & 1;
}

/* Six bytes compared as a 4-byte and a 2-byte load: no memcmp call on
 * the per-packet path. */
static inline int mac_eq(const uint8_t *a, const uint8_t *b)
{
	return ld32(a) == ld32(b) && ld16(a + 4) == ld16(b + 4);
}

static const uint8_t bcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* The Internet checksum of a buffer, folded, not inverted, added to sum. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	while (n > 1) {
		sum += rd16(p);
		p += 2;
		n -= 2;
	}
	if (n)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* What the first pass learnt of a frame from the NIC. */
enum pre_kind {
	PRE_OTHER = 0,     /* not TCP to the VIP: decided by the slow path */
	PRE_MALFORMED = 1, /* to the VIP but broken */
	PRE_VIP_TCP = 2,   /* well-formed TCP to the VIP: key and hash set */
	PRE_FOREIGN_MAC = 3, /* to the VIP but another station's MAC */
	PRE_VIP_ICMP = 4,  /* well-formed ICMP to the VIP, at least 8 bytes */
	PRE_DECIDED = 5,   /* dropped by the first pass, counted there */
};

struct pre {
	uint8_t kind;
	uint8_t tcp_flags;
	uint8_t slot_ok;   /* slot holds the key's slot hash */
	uint8_t csum;      /* enum sdp_rx_hint */
	struct sdp_key key;
	uint32_t hash;     /* the connection value */
	uint32_t slot;
};

/* The key's slot hash, computed once per frame and only when the table is
 * probed: a foreign frame whose bucket holds none of our flows never pays
 * for it. */
static inline uint32_t pre_slot(const struct sdp_classifier *c, struct pre *p)
{
	if (!p->slot_ok) {
		p->slot = sdp_slot_hash(c->flows.key, &p->key);
		p->slot_ok = 1;
	}
	return p->slot;
}

/* Drops the first pass decides, counted per burst. */
struct pre_tally {
	uint32_t fast, not_ours, port_dropped;
};

static inline int served(const struct sdp_classifier *c, uint16_t port_be)
{
	uint16_t port = rte_be_to_cpu_16(port_be);
	return (c->ports[port >> 6] >> (port & 63)) & 1;
}

/* Parse the frame as far as the flow key. Called once per frame per burst;
 * touches only the first 54 bytes. */
static void pre_parse_rx(const struct sdp_classifier *c, const uint8_t *f,
			 uint16_t len, struct pre *p, struct pre_tally *tally,
			 uint8_t *verdict)
{
	p->kind = PRE_OTHER;
	p->slot_ok = 0;
	if (len < ETH_HLEN + 20 || rd16(f + 12) != ETH_P_IPV4)
		return;
	const uint8_t *ip = f + ETH_HLEN;
	if (ld32(ip + 16) != c->vip)
		return;
	if (!mac_eq(f, c->cluster_mac) && !mac_eq(f, c->node_mac)) {
		p->kind = PRE_FOREIGN_MAC;
		return;
	}
	p->kind = PRE_MALFORMED;
	if (ip[0] != 0x45) /* version 4, no options */
		return;
	uint16_t totlen = rd16(ip + 2);
	if (totlen < 28 || (uint32_t)ETH_HLEN + totlen > len)
		return;
	if (rd16(ip + 6) & 0x3fff) /* MF or a fragment offset */
		return;
	if (ip[9] == 1) {
		p->kind = PRE_VIP_ICMP;
		return;
	}
	if (ip[9] != 6 || totlen < 40)
		return;
	const uint8_t *tcp = ip + 20;
	uint8_t doff = tcp[12] >> 4;
	if (doff < 5 || 20u + doff * 4u > totlen)
		return;
	p->tcp_flags = tcp[13];
	if ((p->tcp_flags & TCP_SYN) && (p->tcp_flags & (TCP_RST | TCP_FIN)))
		return;
	/* The key is the frame's own bytes: addresses at ip+12, ports at
	 * tcp+0, in the order struct sdp_key keeps them. Both hashes take
	 * the words as loaded; the copy in p is for the later passes. */
	uint64_t a;
	uint32_t b;
	memcpy(&a, ip + 12, 8);
	memcpy(&b, tcp, 4);
	memcpy(&p->key, &a, 8);
	memcpy((uint8_t *)&p->key + 8, &b, 4);
	uint32_t hash = sdp_conn_value_words(a, b, c->seed);
	uint16_t bucket = (uint16_t)hash;
	p->hash = hash;
	/* Only buckets holding flows are probed: their slot hash is computed
	 * and the slot prefetched now, so the misses of a burst overlap. A
	 * SYN earlier in the burst may add a flow to a bucket after this
	 * test: the slot hash is then computed when the frame is decided. */
	if (sdp_bucket_used(&c->flows, bucket)) {
		uint32_t slot = sdp_slot_hash_words(c->flows.key, a, b);
		p->slot = slot;
		p->slot_ok = 1;
		p->kind = PRE_VIP_TCP;
		sdp_flows_prefetch(&c->flows, slot);
		return;
	}
	/* A bucket that holds no flow of ours and that we do not own: the
	 * frame is decided here. Nothing earlier in the burst can add a flow
	 * to it (only a SYN in an owned bucket does), so the second pass
	 * would come to the same drop, counted the same way (classify_syn,
	 * classify_segment). Every field above is written once and the
	 * decision taken from registers: reading back what was just stored
	 * in a wider load stalls on store forwarding. */
	if (!owned(c, bucket)) {
		uint8_t flags = tcp[13];
		if ((flags & (TCP_SYN | TCP_ACK)) != TCP_SYN)
			tally->fast++;
		else if (!served(c, ld16(tcp + 2)))
			tally->port_dropped++;
		else
			tally->not_ours++;
		p->kind = PRE_DECIDED;
		*verdict = SDP_DROP;
		return;
	}
	p->kind = PRE_VIP_TCP;
}

static uint8_t to_kernel(struct sdp_classifier *c, uint8_t *f)
{
	if (mac_eq(f, c->cluster_mac))
		memcpy(f, c->node_mac, 6);
	c->ctr.to_kernel++;
	return SDP_TO_KERNEL;
}

static uint8_t drop_malformed(struct sdp_classifier *c)
{
	c->ctr.malformed_dropped++;
	return SDP_DROP;
}

/* Answer an ARP request for the VIP in place: the sender hardware address
 * is the cluster MAC, the Ethernet source our own unicast MAC (bridges drop
 * frames from multicast sources). */
static uint8_t arp_reply(struct sdp_classifier *c, uint8_t *f)
{
	uint8_t *a = f + ETH_HLEN;
	uint8_t req_mac[6], req_ip[4];
	memcpy(req_mac, a + 8, 6);
	memcpy(req_ip, a + 14, 4);
	memcpy(f, req_mac, 6);
	memcpy(f + 6, c->node_mac, 6);
	wr16(a + 6, 2);
	memcpy(a + 8, c->cluster_mac, 6);
	memcpy(a + 14, &c->vip, 4);
	memcpy(a + 18, req_mac, 6);
	memcpy(a + 24, req_ip, 4);
	c->ctr.arp_replied++;
	c->ctr.tx++;
	return SDP_TO_NIC;
}

/* Frames that are not TCP to the VIP. */
static uint8_t classify_other(struct sdp_classifier *c, uint8_t *f,
			      uint16_t len)
{
	if (len < ETH_HLEN)
		return drop_malformed(c);
	int for_us = mac_eq(f, c->node_mac) || mac_eq(f, bcast_mac);
	uint16_t et = rd16(f + 12);
	switch (et) {
	case ETH_P_VLAN:
	case ETH_P_QINQ:
	case ETH_P_QINQ_OLD:
		return drop_malformed(c);
	case ETH_P_ARP: {
		const uint8_t *a = f + ETH_HLEN;
		if (len < ETH_HLEN + 28 || rd16(a) != 1 ||
		    rd16(a + 2) != ETH_P_IPV4 || a[4] != 6 || a[5] != 4)
			return drop_malformed(c);
		if (rd16(a + 6) == 1 && ld32(a + 24) == c->vip)
			return arp_reply(c, f);
		break;
	}
	case ETH_P_IPV4:
		if (len < ETH_HLEN + 20)
			return drop_malformed(c);
		break;
	}
	if (!for_us) {
		c->ctr.other_dropped++;
		return SDP_DROP;
	}
	return to_kernel(c, f);
}

/* Recompute the IPv4 header checksum and the TCP checksum (pseudo-header
 * and tcplen bytes of TCP header, no payload). */
static void fix_checksums(uint8_t *ip, uint16_t tcplen)
{
	uint8_t *tcp = ip + 20;
	uint8_t pseudo[12];
	wr16(ip + 10, 0);
	wr16(ip + 10, csum_fold(csum_add(0, ip, 20)));
	wr16(tcp + 16, 0);
	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0;
	pseudo[9] = 6;
	wr16(pseudo + 10, tcplen);
	wr16(tcp + 16, csum_fold(csum_add(csum_add(0, pseudo, 12), tcp, tcplen)));
}

/* Turn the client's losing ACK into a RST for our own kernel, so its
 * half-open socket dies without answering the client. The RST carries the
 * client's sequence number (exactly the one the socket expects) and no ACK
 * flag, so the kernel neither checks it against its ISN nor replies. */
static void ack_to_rst(uint8_t *f, uint16_t *len)
{
	uint8_t *ip = f + ETH_HLEN;
	uint8_t *tcp = ip + 20;
	uint16_t tcplen = (uint16_t)((tcp[12] >> 4) * 4);
	uint16_t totlen = (uint16_t)(20 + tcplen);
	wr16(ip + 2, totlen);
	wr32(tcp + 8, 0);   /* ack */
	tcp[13] = TCP_RST;
	wr16(tcp + 14, 0);  /* window */
	wr16(tcp + 18, 0);  /* urgent pointer */
	fix_checksums(ip, tcplen);
	*len = (uint16_t)(ETH_HLEN + totlen);
}

/* Turn our kernel's SYN-ACK of a withdrawn flow into the RST the client
 * would send: addresses and ports swapped, the sequence number the SYN-ACK
 * acknowledges, no ACK flag, no options. The kernel drops its half-open
 * socket without answering. */
static void synack_to_rst(const struct sdp_classifier *c, uint8_t *f,
			  uint16_t *len)
{
	uint8_t *ip = f + ETH_HLEN;
	uint8_t *tcp = ip + 20;
	uint8_t tmp[6];
	memcpy(tmp, f, 6);
	memcpy(f, c->node_mac, 6);
	memcpy(f + 6, tmp, 6);
	memcpy(tmp, ip + 12, 4);
	memcpy(ip + 12, ip + 16, 4);
	memcpy(ip + 16, tmp, 4);
	memcpy(tmp, tcp, 2);
	memcpy(tcp, tcp + 2, 2);
	memcpy(tcp + 2, tmp, 2);
	memcpy(tcp + 4, tcp + 8, 4); /* seq = the ack of the SYN-ACK */
	wr32(tcp + 8, 0);
	tcp[12] = 5 << 4;
	tcp[13] = TCP_RST;
	wr16(tcp + 14, 0);
	wr16(tcp + 18, 0);
	wr16(ip + 2, 40);
	fix_checksums(ip, 20);
	*len = ETH_HLEN + 40;
}

/* The one's complement sum of n bytes as 32-bit words loaded in host
 * order, added to sum: a 64-bit accumulator takes the carries, folded
 * once at the end. The sum is byte-order independent (RFC 1071), so a
 * little-endian host need not swap: a checksum that verifies folds to
 * 0xffff either way. A trailing 16-bit word and a trailing byte are
 * loaded the same way (the byte as the first of a word padded with 0). */
static inline uint64_t csum_words(const uint8_t *p, uint32_t n, uint64_t sum)
{
	while (n >= 8) {
		sum += ld32(p);
		sum += ld32(p + 4);
		p += 8;
		n -= 8;
	}
	if (n >= 4) {
		sum += ld32(p);
		p += 4;
		n -= 4;
	}
	if (n >= 2) {
		sum += ld16(p);
		p += 2;
		n -= 2;
	}
	if (n) {
		uint8_t last[2] = {p[0], 0};
		sum += ld16(last);
	}
	return sum;
}

static inline uint16_t csum_reduce(uint64_t sum)
{
	sum = (sum & 0xffffffffu) + (sum >> 32);
	sum = (sum & 0xffffffffu) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* The IPv4 header checksum and the TCP checksum (pseudo-header and the
 * whole segment) of a validated packet: each sums to 0xffff. The addresses
 * are summed once and shared by both. */
static int csum_verify(const uint8_t *ip)
{
	uint64_t addrs = (uint64_t)ld32(ip + 12) + ld32(ip + 16);
	uint64_t hdr = (uint64_t)ld32(ip) + ld32(ip + 4) + ld32(ip + 8);
	if (csum_reduce(hdr + addrs) != 0xffff)
		return 0;
	uint16_t l4len = (uint16_t)(rd16(ip + 2) - 20);
	uint64_t sum = addrs + rte_cpu_to_be_16(6) + rte_cpu_to_be_16(l4len);
	return csum_reduce(csum_words(ip + 20, l4len, sum)) == 0xffff;
}

/* Checked before a segment changes a flow or reaches the kernel: the NIC's
 * word when it gave one, else verified here. A corrupted segment must not
 * change state, and the overlap guard would turn it into a valid RST. */
static int csum_ok(struct sdp_classifier *c, const uint8_t *f,
		   const struct pre *p)
{
	int ok = p->csum == SDP_RX_CSUM_GOOD ||
		 (p->csum == SDP_RX_CSUM_UNKNOWN && csum_verify(f + ETH_HLEN));
	if (!ok)
		c->ctr.bad_checksum_dropped++;
	return ok;
}

/* Find a live flow; an expired one found on the way is removed. slot is
 * the key's slot hash. */
static struct sdp_flow *find_live(struct sdp_classifier *c,
				  const struct sdp_key *k, uint32_t slot,
				  uint32_t now_ms)
{
	struct sdp_flow *fl = sdp_flows_find(&c->flows, k, slot);
	if (fl != NULL && sdp_expired(fl, now_ms)) {
		sdp_flows_delete(&c->flows, fl);
		c->ctr.expired++;
		return NULL;
	}
	return fl;
}

static uint8_t classify_syn(struct sdp_classifier *c, uint8_t *f,
			    struct pre *p, uint32_t now_ms)
{
	struct sdp_flow_table *t = &c->flows;
	uint16_t bucket = (uint16_t)p->hash;
	/* Only the ports the cluster serves: every other port would give an
	 * attacker 16 more bits to choose tuples with (see flows.h), and no
	 * kernel listens there anyway. */
	if (!served(c, p->key.dport)) {
		c->ctr.syn_port_dropped++;
		return SDP_DROP;
	}
	/* No flow in the bucket: no retransmission to look up. */
	struct sdp_flow *fl = !sdp_bucket_used(t, bucket)
				      ? NULL
				      : sdp_flows_find(t, &p->key, pre_slot(c, p));
	/* An entry of this tuple that the SYN ends: expired, finished (both
	 * FINs acknowledged, or reset) or withdrawn. The SYN is then a new
	 * connection, decided afresh, and the entry goes whatever the
	 * decision; if the SYN is accepted, its flow takes the entry's slot
	 * (sdp_flows_reuse), which is what deleting the entry and inserting
	 * the tuple again would leave, without the backward shift of the
	 * removal and the probe of the insert. Clients that reuse a port
	 * (NAT gateways, busy proxies) meet this path. */
	struct sdp_flow *old = NULL;
	if (fl != NULL) {
		if (sdp_expired(fl, now_ms)) {
			c->ctr.expired++;
			old = fl;
		} else if (fl->state != SDP_WITHDRAWN && !finished(fl)) {
			/* A retransmission, or a SYN of the live connection:
			 * the kernel answers it. */
			return csum_ok(c, f, p) ? to_kernel(c, f) : SDP_DROP;
		} else {
			old = fl;
		}
	}
	/* The bounds below count the table as it will be once old is gone. */
	uint32_t count = t->count, half_open =
		t->by_state[SDP_SYN_RCVD] + t->by_state[SDP_WITHDRAWN];
	if (old != NULL) {
		count--;
		if (old->state == SDP_SYN_RCVD || old->state == SDP_WITHDRAWN)
			half_open--;
	}
	int accept = 0;
	if (!owned(c, bucket))
		c->ctr.syn_not_ours++;
	else if (!csum_ok(c, f, p))
		accept = 0; /* counted by csum_ok */
	else if (count >= t->max_flows)
		c->ctr.table_full_dropped++;
	/* Every entry not yet established counts: half-open ones and the
	 * tombstones of lost overlaps, which a SYN and an ACK make too. */
	else if (half_open >= t->max_half_open)
		c->ctr.half_open_dropped++;
	else
		accept = 1;
	if (!accept) {
		if (old != NULL)
			sdp_flows_delete(t, old);
		return SDP_DROP;
	}
	fl = old != NULL ? sdp_flows_reuse(t, old, SDP_SYN_RCVD)
			 : sdp_flows_insert(t, &p->key, pre_slot(c, p), bucket,
					    SDP_SYN_RCVD);
	fl->expire_ms = now_ms + c->timers.half_open_ms;
	fl->cnxt = rd32(f + ETH_HLEN + 20 + 4) + 1;
	c->ctr.syn_accepted++;
	return to_kernel(c, f);
}

static void to_closing(struct sdp_classifier *c, struct sdp_flow *fl,
		       uint32_t now_ms)
{
	sdp_flows_set_state(&c->flows, fl, SDP_CLOSING);
	fl->expire_ms = now_ms + c->timers.closing_ms;
}

/* The signed distance from b to a in sequence space. */
static inline int32_t seq_diff(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b);
}

/* The TCP payload length of a validated IPv4/TCP frame. */
static inline uint32_t tcp_paylen(const uint8_t *ip)
{
	return (uint32_t)rd16(ip + 2) - 20u - (uint32_t)(ip[20 + 12] >> 4) * 4u;
}

/* Every segment of an established or closing flow refreshes its timer:
 * the idle timer while data may still flow one way or the other (a
 * half-closed connection is as alive as an established one), the short
 * closing timer once the flow is finished. */
static inline void refresh(const struct sdp_classifier *c, struct sdp_flow *fl,
			   uint32_t now_ms)
{
	fl->expire_ms = now_ms + (finished(fl) ? c->timers.closing_ms
					       : c->timers.idle_ms);
}

/* A segment from the client of an established or closing flow (not a
 * RST). What it teaches: the client's next sequence number, its FIN, and
 * whether it acknowledged our FIN. A segment whose sequence number is far
 * from the client's (more than SDP_SEQ_SLACK away) teaches nothing: no
 * real client jumps that far, and a blind attacker must not move the
 * window. A segment without ACK is dropped by the kernel: it teaches
 * nothing either and refreshes nothing. */
static void client_seen(struct sdp_classifier *c, struct sdp_flow *fl,
			const uint8_t *ip, uint8_t flags, uint32_t now_ms)
{
	const uint8_t *tcp = ip + 20;
	uint32_t seq = rd32(tcp + 4), ack = rd32(tcp + 8);
	if (!(flags & TCP_ACK))
		return;
	/* Nothing follows a FIN: its acknowledgment is exact. */
	if ((fl->flags & SDP_F_SFIN) && ack == fl->sfin + 1)
		fl->flags |= SDP_F_SFIN_ACKED;
	int32_t d = seq_diff(seq, fl->cnxt);
	if (d >= -(int32_t)SDP_SEQ_SLACK && d <= (int32_t)SDP_SEQ_SLACK) {
		uint32_t len = tcp_paylen(ip);
		uint32_t end = seq + len + ((flags & TCP_FIN) ? 1 : 0);
		if ((flags & TCP_FIN) && !(fl->flags & SDP_F_CFIN_ACKED)) {
			/* After our FIN was acknowledged, an in-order FIN
			 * is one our kernel takes: its acknowledgment, a
			 * bare ACK, may leave by the kernel's own path
			 * without crossing the worker. */
			if ((fl->flags & SDP_F_SFIN_ACKED) && ack == fl->sfin + 1 &&
			    seq == fl->cnxt)
				fl->flags |= SDP_F_CFIN_ACKED;
			fl->cfin = seq + len;
			fl->flags |= SDP_F_CFIN;
			if (fl->state != SDP_CLOSING)
				sdp_flows_set_state(&c->flows, fl, SDP_CLOSING);
		}
		if (seq_diff(end, fl->cnxt) > 0)
			fl->cnxt = end;
	}
	refresh(c, fl, now_ms);
}

/* A segment from our kernel of an established or closing flow: trusted,
 * so its FIN is recorded as is and its RST ends the flow. */
static void server_seen(struct sdp_classifier *c, struct sdp_flow *fl,
			const uint8_t *ip, uint8_t flags, uint32_t now_ms)
{
	const uint8_t *tcp = ip + 20;
	if (flags & TCP_RST) {
		fl->flags |= SDP_F_RST;
		to_closing(c, fl, now_ms);
		return;
	}
	if (fl->flags & SDP_F_RST) {
		/* Our kernel still speaks on the connection: it did not take
		 * the client's reset (a challenge ACK answers one in its
		 * window but not exact). The flow lives on. */
		fl->flags &= (uint8_t)~SDP_F_RST;
		if (!(fl->flags & (SDP_F_CFIN | SDP_F_SFIN)))
			sdp_flows_set_state(&c->flows, fl, SDP_ESTABLISHED);
	}
	if ((flags & TCP_ACK) && (fl->flags & SDP_F_CFIN) &&
	    rd32(tcp + 8) == fl->cfin + 1)
		fl->flags |= SDP_F_CFIN_ACKED;
	if ((flags & TCP_FIN) && !(fl->flags & SDP_F_SFIN_ACKED)) {
		fl->sfin = rd32(tcp + 4) + tcp_paylen(ip);
		fl->flags |= SDP_F_SFIN;
		if (fl->state != SDP_CLOSING)
			sdp_flows_set_state(&c->flows, fl, SDP_CLOSING);
	}
	refresh(c, fl, now_ms);
}

/* A RST from the client of an established or closing flow. Linux takes a
 * RST only at exactly its rcv_nxt (RFC 5961), which is at most cnxt and at
 * least cnxt minus what is still in flight; the worker takes the RSTs in
 * that range, within SDP_RST_WINDOW. Others change nothing and are
 * counted; all go to the kernel, which decides for itself. */
static void client_rst(struct sdp_classifier *c, struct sdp_flow *fl,
		       const uint8_t *ip, uint32_t now_ms)
{
	uint32_t seq = rd32(ip + 20 + 4);
	if (fl->cnxt - seq > SDP_RST_WINDOW) {
		c->ctr.rst_ignored++;
		return;
	}
	fl->flags |= SDP_F_RST;
	to_closing(c, fl, now_ms);
}

static uint8_t classify_segment(struct sdp_classifier *c, uint8_t *f,
				uint16_t *len, struct pre *p,
				uint32_t now_ms)
{
	uint16_t bucket = (uint16_t)p->hash;
	if (!sdp_bucket_used(&c->flows, bucket)) {
		c->ctr.foreign_dropped++;
		c->ctr.fast_dropped++;
		return SDP_DROP;
	}
	struct sdp_flow *fl = find_live(c, &p->key, pre_slot(c, p), now_ms);
	if (fl == NULL || fl->state == SDP_WITHDRAWN) {
		c->ctr.foreign_dropped++;
		return SDP_DROP;
	}
	if (!csum_ok(c, f, p))
		return SDP_DROP;
	uint8_t fl_flags = p->tcp_flags;
	switch (fl->state) {
	case SDP_SYN_RCVD:
		if (fl_flags & TCP_RST) {
			/* Our kernel's half-open socket takes a RST anywhere
			 * in the window of its SYN-ACK. */
			if (rd32(f + ETH_HLEN + 20 + 4) - fl->cnxt > SDP_RST_WINDOW) {
				c->ctr.rst_ignored++;
				break;
			}
			/* It dies there: nothing of the connection is left
			 * to deliver, so the entry goes at once. Kept, it
			 * would let SYN+RST pairs fill the table. */
			sdp_flows_delete(&c->flows, fl);
			break;
		}
		if (!(fl_flags & TCP_ACK))
			break;
		if (!(fl->flags & SDP_F_ISN_KNOWN) ||
		    rd32(f + ETH_HLEN + 20 + 8) != fl->isn + 1) {
			/* Only a segment of this handshake, carrying the
			 * client's own sequence numbers (within the window
			 * of a SYN-ACK after its ISN+1), says the client
			 * chose another node. Anything else (a stray or
			 * spoofed ACK, an old segment of the tuple's
			 * previous use) is dropped: our kernel would answer
			 * it with a RST, and the handshake goes on. */
			if (rd32(f + ETH_HLEN + 20 + 4) - fl->cnxt > SDP_RST_WINDOW) {
				c->ctr.stray_dropped++;
				return SDP_DROP;
			}
			/* The client acknowledged another node's SYN-ACK:
			 * that node won the overlap. */
			sdp_flows_set_state(&c->flows, fl, SDP_WITHDRAWN);
			fl->expire_ms = now_ms + SDP_TOMBSTONE_MS;
			c->ctr.overlap_withdrawn++;
			ack_to_rst(f, len);
			break;
		}
		sdp_flows_set_state(&c->flows, fl, SDP_ESTABLISHED);
		client_seen(c, fl, f + ETH_HLEN, fl_flags, now_ms);
		break;
	default: /* ESTABLISHED, CLOSING */
		if (fl_flags & TCP_RST)
			client_rst(c, fl, f + ETH_HLEN, now_ms);
		else
			client_seen(c, fl, f + ETH_HLEN, fl_flags, now_ms);
		break;
	}
	return to_kernel(c, f);
}

/* ICMP to the VIP. An error (destination unreachable, "fragmentation
 * needed" among them, or time exceeded) quotes a packet we sent: it goes to
 * the kernel holding that connection, found by the quoted tuple reversed,
 * and is dropped everywhere else. An echo request is answered by exactly one
 * node: the owner of the bucket of the connection value of (client, VIP,
 * 0, 0). The kernel answers it, and the reply leaves through the tap. The
 * kernel verifies the ICMP checksum; nothing here changes a flow. */
static uint8_t classify_icmp(struct sdp_classifier *c, uint8_t *f,
			     uint32_t now_ms)
{
	const uint8_t *ip = f + ETH_HLEN;
	const uint8_t *icmp = ip + 20;
	uint32_t icmplen = (uint32_t)rd16(ip + 2) - 20u;
	uint8_t type = icmp[0];
	if (type == 8 && icmp[1] == 0) {
		uint32_t h = sdp_conn_value(c->seed, ld32(ip + 12), c->vip, 0, 0);
		if (owned(c, (uint16_t)h))
			goto deliver;
		goto drop;
	}
	if (type != 3 && type != 11)
		goto drop;
	/* The quoted packet: its IPv4 header (options allowed) and at least
	 * the 8 bytes of TCP that hold the ports. */
	const uint8_t *q = icmp + 8;
	uint32_t qlen = icmplen - 8u;
	if (qlen < 20 || (q[0] >> 4) != 4 || q[9] != 6 || ld32(q + 12) != c->vip)
		goto drop;
	uint32_t qihl = (q[0] & 15u) * 4u;
	if (qihl < 20 || qlen < qihl + 8)
		goto drop;
	struct sdp_key k = {ld32(q + 16), ld32(q + 12), ld16(q + qihl + 2),
			    ld16(q + qihl)};
	uint32_t hash = key_hash(&k, c->seed);
	if (!sdp_bucket_used(&c->flows, (uint16_t)hash))
		goto drop;
	struct sdp_flow *fl =
		find_live(c, &k, sdp_slot_hash(c->flows.key, &k), now_ms);
	if (fl == NULL || fl->state == SDP_WITHDRAWN)
		goto drop;
deliver:
	c->ctr.icmp_to_kernel++;
	return to_kernel(c, f);
drop:
	c->ctr.icmp_dropped++;
	return SDP_DROP;
}

void sdp_classify_rx(struct sdp_classifier *c, uint8_t **frames,
		     uint16_t *lens, uint16_t n, uint32_t now_ms,
		     const uint8_t *rx_hints, uint8_t *verdicts)
{
	struct pre pre[SDP_BURST];
	while (n > 0) {
		uint16_t m = n < SDP_BURST ? n : SDP_BURST;
		/* First pass: hash every frame and prefetch the slots the
		 * second pass will probe, so the misses overlap. The frames'
		 * own headers are fetched all at once before that, for
		 * reading: prefetchw cost about 60 ns more a SYN in new
		 * connections (median of 8 pairs) on this VM with the other
		 * core busy (benchmarks.md, sixth pass); the few frames
		 * rewritten later are already in L1. */
		for (uint16_t i = 0; i < m; i++)
			__builtin_prefetch(frames[i], 0, 3);
		struct pre_tally tally = {0, 0, 0};
		for (uint16_t i = 0; i < m; i++) {
			pre[i].csum = rx_hints ? rx_hints[i] : SDP_RX_CSUM_UNKNOWN;
			pre_parse_rx(c, frames[i], lens[i], &pre[i], &tally,
				     &verdicts[i]);
		}
		c->ctr.rx += m;
		c->ctr.foreign_dropped += tally.fast;
		c->ctr.fast_dropped += tally.fast;
		c->ctr.syn_not_ours += tally.not_ours;
		c->ctr.syn_port_dropped += tally.port_dropped;
		for (uint16_t i = 0; i < m; i++) {
			uint8_t *f = frames[i];
			switch (pre[i].kind) {
			case PRE_DECIDED:
				break;
			case PRE_MALFORMED:
				verdicts[i] = drop_malformed(c);
				break;
			case PRE_FOREIGN_MAC:
				c->ctr.other_dropped++;
				verdicts[i] = SDP_DROP;
				break;
			case PRE_VIP_ICMP:
				verdicts[i] = classify_icmp(c, f, now_ms);
				break;
			case PRE_VIP_TCP:
				if ((pre[i].tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
					verdicts[i] = classify_syn(c, f, &pre[i], now_ms);
				else
					verdicts[i] = classify_segment(c, f, &lens[i], &pre[i], now_ms);
				break;
			default:
				verdicts[i] = classify_other(c, f, lens[i]);
			}
		}
		frames += m;
		lens += m;
		verdicts += m;
		if (rx_hints)
			rx_hints += m;
		n = (uint16_t)(n - m);
	}
}

/* One frame from our kernel. */
static uint8_t classify_tap_one(struct sdp_classifier *c, uint8_t *f,
				uint16_t len, uint16_t *len_out, uint32_t now_ms)
{
	c->ctr.from_kernel++;
	if (len < ETH_HLEN)
		return drop_malformed(c);
	uint16_t et = rd16(f + 12);
	if (et == ETH_P_ARP && len >= ETH_HLEN + 28 &&
	    ld32(f + ETH_HLEN + 14) == c->vip) {
		/* The kernel must never claim the VIP: a client would cache
		 * the tap's unicast MAC and send everything to this node. */
		c->ctr.kernel_arp_dropped++;
		return SDP_DROP;
	}
	const uint8_t *ip = f + ETH_HLEN;
	if (et == ETH_P_IPV4 && len >= ETH_HLEN + 40 && ip[0] == 0x45 &&
	    ip[9] == 6 && ld32(ip + 12) == c->vip && tcp_frame_ok(ip, len)) {
		const uint8_t *tcp = ip + 20;
		struct sdp_key k = {ld32(ip + 16), ld32(ip + 12), ld16(tcp + 2),
				    ld16(tcp)};
		uint32_t hash = key_hash(&k, c->seed);
		if (sdp_bucket_used(&c->flows, (uint16_t)hash)) {
			struct sdp_flow *fl = find_live(
				c, &k, sdp_slot_hash(c->flows.key, &k), now_ms);
			uint8_t fl_flags = tcp[13];
			if (fl != NULL) {
				switch (fl->state) {
				case SDP_WITHDRAWN:
					c->ctr.kernel_withdrawn_dropped++;
					if ((fl_flags & (TCP_SYN | TCP_ACK)) ==
					    (TCP_SYN | TCP_ACK)) {
						/* Our kernel still holds the half-open
						 * socket: the RST made from the client's
						 * ACK overtook the SYN inside the kernel.
						 * Answer this SYN-ACK with a RST of the
						 * client's own. */
						synack_to_rst(c, f, len_out);
						c->ctr.to_kernel++;
						return SDP_TO_KERNEL;
					}
					return SDP_DROP;
				case SDP_SYN_RCVD:
					if (fl_flags & TCP_RST) {
						/* Our kernel refused the connection
						 * (RST-ACK of the SYN): the entry goes.
						 * Other RSTs (the listener answering a
						 * stray ACK) leave the handshake be. */
						if ((fl_flags & TCP_ACK) &&
						    rd32(tcp + 8) == fl->cnxt)
							sdp_flows_delete(&c->flows, fl);
					} else if ((fl_flags & (TCP_SYN | TCP_ACK)) ==
						   (TCP_SYN | TCP_ACK)) {
						fl->isn = rd32(tcp + 4);
						fl->flags |= SDP_F_ISN_KNOWN;
					}
					break;
				default: /* ESTABLISHED, CLOSING */
					server_seen(c, fl, ip, fl_flags, now_ms);
					break;
				}
			}
		}
	}
	c->ctr.tx++;
	return SDP_TO_NIC;
}

void sdp_classify_tap(struct sdp_classifier *c, uint8_t **frames,
		      uint16_t *lens, uint16_t n, uint32_t now_ms,
		      uint8_t *verdicts)
{
	for (uint16_t i = 0; i < n; i++)
		verdicts[i] = classify_tap_one(c, frames[i], lens[i], &lens[i], now_ms);
}

uint32_t sdp_flows_longest_run(const struct sdp_classifier *c)
{
	const struct sdp_flow_table *t = &c->flows;
	uint32_t best = 0, run = 0;
	/* Twice round, so a run across the wrap is measured whole. */
	for (uint64_t i = 0; i < 2ull * (t->mask + 1); i++) {
		if (t->slots[i & t->mask].state != SDP_EMPTY) {
			if (++run > best)
				best = run;
		} else {
			run = 0;
		}
	}
	return best > t->mask + 1 ? t->mask + 1 : best;
}

uint32_t sdp_slot_hash_of(const uint64_t key[2], uint32_t saddr,
			  uint32_t daddr, uint16_t sport, uint16_t dport)
{
	struct sdp_key k = {saddr, daddr, sport, dport};
	return sdp_slot_hash(key, &k);
}

uint32_t sdp_flows_sweep(struct sdp_classifier *c, uint32_t now_ms,
			 uint32_t budget)
{
	uint32_t removed = sdp_flows_sweep_table(&c->flows, now_ms, budget);
	c->ctr.expired += removed;
	return removed;
}

int sdp_flows_state(struct sdp_classifier *c, uint32_t saddr, uint32_t daddr,
		    uint16_t sport, uint16_t dport, uint32_t now_ms)
{
	struct sdp_key k = {saddr, daddr, sport, dport};
	struct sdp_flow *fl =
		sdp_flows_find(&c->flows, &k, sdp_slot_hash(c->flows.key, &k));
	if (fl == NULL || sdp_expired(fl, now_ms))
		return SDP_EMPTY;
	return fl->state;
}
