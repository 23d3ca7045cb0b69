/* cmd.h: the command channel from Go to one worker.
 *
 * A single-producer single-consumer ring of command slots in C memory. Go is
 * the producer (its posts are serialised by a mutex), the worker the
 * consumer: once per loop iteration it checks whether the ring holds work
 * and, if so, runs at most SDP_CMD_PER_ITER commands and scans at most
 * SDP_CMD_SCAN_SLOTS slots of its flow table, so no command stalls packet
 * processing for long. A dump that needs more scanning stays at the head
 * of the ring and carries on at the next iteration.
 *
 * Each slot goes through these states (an atomic word in the slot):
 *
 *   FREE --post--> POSTED --worker done--> DONE --waiter read--> FREE
 *                    |                                           ^
 *                    +--waiter gave up--> ABANDONED --worker done-+
 *
 * Ownership rule, on which memory safety rests:
 * - A slot and everything it points to (its dump buffer included) belong to
 *   the ring. They are allocated by sdp_cmd_post (the buffer once, at the
 *   slot's first dump, then reused) and freed only by sdp_cmd_ring_free,
 *   which runs after the worker has returned. No caller ever frees command
 *   memory, so a worker finishing a command nobody waits for any more
 *   writes into live memory.
 * - The producer writes a slot only while it is FREE; the worker writes it
 *   only while it is POSTED or ABANDONED; the waiter reads the results only
 *   once it saw DONE, and hands the slot back with sdp_cmd_release. A waiter
 *   whose deadline passes calls sdp_cmd_abandon instead: from then on the
 *   worker, when it completes the command, frees the slot itself.
 * - An abandoned command still runs: a caller that timed out must assume
 *   its install, remove or withdraw may take effect later.
 *
 * Everything here is pure C over memory (no DPDK call), so the channel and
 * the flow table run under AddressSanitizer in a plain C test
 * (testdata/cmdtest.c, driven by TestCommandChannelASan).
 */
#ifndef SHOAL_CMD_H
#define SHOAL_CMD_H

#include <stdatomic.h>
#include <stdint.h>

#include "sdp.h"

#define SDP_CMD_SLOTS 8u         /* commands in flight per worker, at most */
#define SDP_CMD_PER_ITER 8u      /* commands completed per loop iteration, at most */
#define SDP_CMD_SCAN_SLOTS 4096u /* flow-table slots a dump scans per iteration, at most */
#define SDP_CMD_DUMP_MAX 16384u  /* flows one dump command returns, at most */

enum sdp_cmd_op {
	SDP_CMD_INSTALL = 1,  /* insert or overwrite a flow: state, ISN, timer */
	SDP_CMD_REMOVE = 2,   /* delete a flow */
	SDP_CMD_WITHDRAW = 3, /* make the tuple a tombstone (as a lost overlap) */
	SDP_CMD_DUMP = 4,     /* copy flows out, from a cursor on */
};

enum sdp_slot_state {
	SDP_SLOT_FREE = 0,
	SDP_SLOT_POSTED = 1,
	SDP_SLOT_DONE = 2,
	SDP_SLOT_ABANDONED = 3,
};

/* What the producer asks. Keys are client side first, in network order, as
 * in struct sdp_flow. */
struct sdp_cmd_args {
	uint32_t op;
	uint32_t saddr;
	uint32_t daddr;
	uint16_t sport;
	uint16_t dport;
	uint8_t state;  /* INSTALL: SDP_SYN_RCVD or SDP_ESTABLISHED */
	uint8_t flags;  /* INSTALL: SDP_F_ISN_KNOWN when isn is set */
	uint16_t reserved;
	uint32_t isn;    /* INSTALL: our initial sequence number */
	uint32_t cnxt;   /* INSTALL: the client's next sequence number (its
			  * ISN+1 for SYN_RCVD; rcv_nxt for an adopted flow),
			  * which RST and FIN checks measure the window from */
	uint32_t cursor; /* DUMP: first table slot to scan */
	uint32_t max;    /* DUMP: flows to return, 1..SDP_CMD_DUMP_MAX */
};

struct sdp_cmd_slot {
	_Atomic uint32_t state; /* enum sdp_slot_state */
	struct sdp_cmd_args args;
	/* Results, written by the worker before DONE. */
	int32_t status;       /* 0 or -errno */
	uint32_t count;       /* INSTALL, REMOVE, WITHDRAW: 1 if the flow existed; DUMP: flows in buf */
	uint32_t next_cursor; /* DUMP: where the next chunk starts; 0 when the table is done */
	/* Owned by the slot (see the ownership rule). */
	struct sdp_flow *buf;
};

struct sdp_cmd_ring {
	/* Written by the producer, read by the worker. */
	_Atomic uint32_t head __attribute__((aligned(64)));
	/* The worker's own: nothing else reads them except the counters. */
	uint32_t tail __attribute__((aligned(64)));
	uint32_t dump_pos;    /* scan position of the dump at the tail */
	uint8_t dump_started; /* dump_pos belongs to the slot at the tail */
	_Atomic uint64_t done; /* commands completed; counted before the slot leaves POSTED */
	struct sdp_cmd_slot slots[SDP_CMD_SLOTS] __attribute__((aligned(64)));
};

/* Producer side: Go, one poster at a time. */

/* Post a command. Returns the slot index, -EBUSY when the next slot is
 * still in use (the worker is behind, or a waiter has not released it),
 * -EINVAL for a malformed command, -ENOMEM if a dump buffer cannot be had. */
int sdp_cmd_post(struct sdp_cmd_ring *r, const struct sdp_cmd_args *a);

/* The state of slot i (enum sdp_slot_state), with acquire ordering: after
 * DONE the slot's results are visible. */
static inline uint32_t sdp_cmd_slot_state(struct sdp_cmd_ring *r, uint32_t i)
{
	return atomic_load_explicit(&r->slots[i].state, memory_order_acquire);
}

/* The waiter read slot i's results: the slot is FREE again. */
void sdp_cmd_release(struct sdp_cmd_ring *r, uint32_t i);

/* The waiter gives up on slot i. Returns 1 if the slot is now ABANDONED
 * (the worker will free it), 0 if the command had completed meanwhile (the
 * slot is DONE: read it or not, then sdp_cmd_release). */
int sdp_cmd_abandon(struct sdp_cmd_ring *r, uint32_t i);

/* Free the dump buffers. Only once the worker has returned. */
void sdp_cmd_ring_free(struct sdp_cmd_ring *r);

/* Consumer side: the worker. */

/* Whether commands wait: one relaxed load of a line the producer writes
 * only when it posts. */
static inline int sdp_cmd_pending(struct sdp_cmd_ring *r)
{
	return atomic_load_explicit(&r->head, memory_order_relaxed) != r->tail;
}

/* Run pending commands within the per-iteration bounds. Returns the number
 * of commands worked on (completed or advanced), 0 if none. */
uint32_t sdp_cmd_run(struct sdp_cmd_ring *r, struct sdp_classifier *c,
		     uint32_t now_ms);

#endif
