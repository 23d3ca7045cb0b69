/* sdp.h: shoal data plane, the per-packet C code.
 *
 * Everything in this header is pure: it reads and rewrites frames held in
 * memory and touches no device, so the same code runs under the DPDK worker
 * loop (worker.c), under Go tests through plain byte buffers, and under the
 * benchmarks. Names read sdp_<module>_<verb>.
 */
#ifndef SHOAL_SDP_H
#define SHOAL_SDP_H

#include <stdint.h>
#include <stddef.h>

#define SDP_BUCKETS 65536u
#define SDP_BURST 32u
#define SDP_TOMBSTONE_MS 5000u
/* How far (bytes of sequence space) a client segment may start from the
 * client's next sequence number and still teach the flow anything. */
#define SDP_SEQ_SLACK (1u << 20)
/* A client RST changes a flow only if its sequence number is within this
 * many bytes of the client's next sequence number: below it once the
 * connection is established, above it in SYN_RCVD (the window our kernel
 * advertised in its SYN-ACK, at most 65535 unscaled). */
#define SDP_RST_WINDOW 65535u

/* Verdicts: what the worker does with a frame. */
enum sdp_verdict {
	SDP_DROP = 0,
	SDP_TO_KERNEL = 1, /* out through the tap, into this node's kernel */
	SDP_TO_NIC = 2,    /* out through the NIC, towards the network */
};

/* Flow states. EMPTY marks a free slot of the table. */
enum sdp_state {
	SDP_EMPTY = 0,
	SDP_SYN_RCVD = 1,    /* SYN accepted; ISN learnt from our SYN-ACK */
	SDP_ESTABLISHED = 2, /* the client acknowledged our SYN-ACK */
	SDP_CLOSING = 3,     /* a FIN or a RST seen; see the F_ flags */
	SDP_WITHDRAWN = 4,   /* lost an overlap: drop everything both ways */
	SDP_NSTATES = 5,
};

#define SDP_F_ISN_KNOWN 0x01
#define SDP_F_CFIN 0x02       /* the client's FIN seen: cfin valid */
#define SDP_F_SFIN 0x04       /* our FIN seen: sfin valid */
#define SDP_F_CFIN_ACKED 0x08 /* our kernel acknowledged the client's FIN */
#define SDP_F_SFIN_ACKED 0x10 /* the client acknowledged our FIN */
#define SDP_F_RST 0x20        /* a reset was seen */

/* Counters, one set per worker, summed by Go on read. Order is the ABI the
 * Go side reads (Counters in dataplane/report, whose size is checked against this
 * struct at compile time in cclassifier.go); add new counters at the end
 * only, in both. */
struct sdp_counters {
	uint64_t rx;                  /* frames received from the NIC */
	uint64_t tx;                  /* frames sent to the NIC */
	uint64_t to_kernel;           /* frames sent through the tap */
	uint64_t from_kernel;         /* frames received from the tap */
	uint64_t foreign_dropped;     /* TCP to the VIP of a flow not ours */
	uint64_t malformed_dropped;   /* truncated, options, fragments, VLAN, non-TCP to the VIP */
	uint64_t syn_accepted;        /* SYNs in our buckets, flow created */
	uint64_t syn_not_ours;        /* SYNs in other nodes' buckets */
	uint64_t overlap_withdrawn;   /* flows given up: the client chose another node */
	uint64_t arp_replied;         /* ARP requests for the VIP answered */
	uint64_t kernel_arp_dropped;  /* ARP from the kernel naming the VIP */
	uint64_t kernel_withdrawn_dropped; /* kernel packets of withdrawn flows */
	uint64_t table_full_dropped;  /* SYNs dropped because the table is full */
	uint64_t half_open_dropped;   /* SYNs dropped at the half-open bound */
	uint64_t other_dropped;       /* frames for neither us nor the VIP */
	uint64_t tx_failed;           /* frames a full TX queue refused */
	uint64_t expired;             /* flows removed by their timers */
	uint64_t fast_dropped;        /* foreign drops decided without a probe */
	uint64_t syn_port_dropped;    /* SYNs to a VIP port the cluster does not serve */
	uint64_t rst_ignored;         /* client RSTs outside the window: no state change */
	uint64_t stray_dropped;       /* segments in SYN_RCVD outside the client's window */
	uint64_t bad_checksum_dropped; /* TCP to the VIP with a bad IPv4 or TCP checksum */
	uint64_t icmp_to_kernel;      /* ICMP errors about our flows, echo requests in our buckets */
	uint64_t icmp_dropped;        /* other ICMP to the VIP: other nodes' flows and buckets, other types */
};

/* One flow: 32 bytes, two per cache line. Keys are in network order, as on
 * the wire, client side first. */
struct sdp_flow {
	uint32_t saddr;
	uint32_t daddr;
	uint16_t sport;
	uint16_t dport;
	uint32_t expire_ms; /* wrap-safe deadline in the worker's clock */
	uint8_t state;
	uint8_t flags;
	uint16_t bucket;    /* low 16 bits of the connection value */
	union {
		uint32_t isn;  /* SYN_RCVD: our ISN, once F_ISN_KNOWN */
		uint32_t sfin; /* later: the sequence number of our FIN */
	};
	uint32_t cnxt;      /* the client's next sequence number: its ISN+1
			     * at the SYN, then the end of its furthest
			     * plausible segment */
	uint32_t cfin;      /* the sequence number of the client's FIN */
};

struct sdp_wanted;

/* Flow table: open addressing, linear probing, backward-shift deletion, so
 * no tombstone slots ever lengthen probes. Capacity is a power of two at
 * least twice max_flows. The slot of a flow is a keyed hash of its key
 * (SipHash-1-3 under key[], random per table), never the connection value. */
struct sdp_flow_table {
	struct sdp_flow *slots;
	uint64_t key[2];
	uint32_t mask;
	uint32_t count;       /* flows in the table, any state */
	uint32_t max_flows;
	uint32_t max_half_open;
	uint32_t by_state[SDP_NSTATES];
	uint32_t sweep_cursor;
	uint32_t sweep_work;    /* slots the last sweep call touched */
	uint32_t *bucket_flows; /* flows per bucket */
	/* One bit per bucket holding flows: the fast-drop filter. 8 KiB,
	 * which stays in L1 where the 256 KiB of counts would miss. */
	uint64_t bucket_bits[SDP_BUCKETS / 64];
	/* The in-kernel prefilter's bitmap (wanted.h), kept in step at every
	 * 0 <-> 1 change of a bucket's count; NULL without a prefilter. */
	struct sdp_wanted *wanted;
};

/* The published form of the range table: this node's ownership bitmap. */
struct sdp_owner_table {
	uint64_t epoch;
	uint64_t bits[SDP_BUCKETS / 64];
};

/* Timers in milliseconds. */
struct sdp_timers {
	uint32_t half_open_ms;
	uint32_t idle_ms;
	uint32_t closing_ms;
};

/* The classifier: everything one worker needs to decide a frame. */
struct sdp_classifier {
	uint32_t vip;          /* network order */
	uint32_t seed;         /* connection-value seed */
	uint64_t slot_key[2];  /* flow-table slot key, copied in at init */
	uint8_t cluster_mac[6];
	uint8_t node_mac[6];   /* NIC MAC, also the tap's */
	uint64_t ports[65536 / 64]; /* served VIP ports (host order bit index) */
	struct sdp_timers timers;
	const struct sdp_owner_table *owner; /* the worker reloads it once per loop iteration */
	struct sdp_flow_table flows;
	struct sdp_counters ctr;
};

/* Connection value of an IPv4 4-tuple, all in network order. */
uint32_t sdp_conn_value(uint32_t seed, uint32_t saddr, uint32_t daddr,
			uint16_t sport, uint16_t dport);
/* Connection value of an IPv6 4-tuple (16+16+2+2 bytes). */
uint32_t sdp_conn_value6(uint32_t seed, const uint8_t saddr[16],
			 const uint8_t daddr[16], uint16_t sport, uint16_t dport);

/* Allocate and free a classifier's flow table. Returns 0 or -errno. */
int sdp_classifier_init(struct sdp_classifier *c, uint32_t max_flows,
			uint32_t max_half_open);
void sdp_classifier_free(struct sdp_classifier *c);

/* What the NIC says of a frame's checksums (rx_hints of sdp_classify_rx). */
enum sdp_rx_hint {
	SDP_RX_CSUM_UNKNOWN = 0, /* nothing: the classifier verifies them */
	SDP_RX_CSUM_GOOD = 1,    /* IPv4 and TCP checksums verified good */
	SDP_RX_CSUM_BAD = 2,     /* one of them is bad */
};

/* Decide a burst of frames from the NIC (rx) or from the tap (tap). Frames
 * are rewritten in place; lens[i] may shrink (an overlap loser's ACK becomes
 * a RST for our own kernel). Processing is sequential in meaning; the burst
 * form only lets the table prefetch. rx_hints, if not NULL, holds one enum
 * sdp_rx_hint per frame. */
void sdp_classify_rx(struct sdp_classifier *c, uint8_t **frames,
		     uint16_t *lens, uint16_t n, uint32_t now_ms,
		     const uint8_t *rx_hints, uint8_t *verdicts);
void sdp_classify_tap(struct sdp_classifier *c, uint8_t **frames,
		      uint16_t *lens, uint16_t n, uint32_t now_ms,
		      uint8_t *verdicts);

/* Remove expired flows, touching about budget slots from the sweep cursor
 * (slots visited plus slots the deletions' backward shifts looked at), so
 * one call never stalls the worker; budget = 0 sweeps the whole table.
 * Returns flows removed. */
uint32_t sdp_flows_sweep(struct sdp_classifier *c, uint32_t now_ms,
			 uint32_t budget);

/* The longest run of occupied slots: the most a lookup can probe. */
uint32_t sdp_flows_longest_run(const struct sdp_classifier *c);

/* The slot hash of a key under a slot key, for the tests. */
uint32_t sdp_slot_hash_of(const uint64_t key[2], uint32_t saddr,
			  uint32_t daddr, uint16_t sport, uint16_t dport);

/* Look a flow up by its client-side key (network order); for tests and the
 * CLI. Returns the state, or SDP_EMPTY. */
int sdp_flows_state(struct sdp_classifier *c, uint32_t saddr, uint32_t daddr,
		    uint16_t sport, uint16_t dport, uint32_t now_ms);

#endif
