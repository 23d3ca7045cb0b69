/* cmd.c: the command channel from Go to one worker (see cmd.h for the
 * protocol and the ownership rule).
 *
 * The worker alone touches its flow table, so commands that change it run
 * on the worker, between bursts, within fixed bounds per loop iteration.
 */
#include <errno.h>
#include <stdlib.h>

#include "cmd.h"
#include "flows.h"

/* A dump buffer with every page already mapped: the page faults of its
 * first use (a hundred microseconds or more for 512 KiB) fall on the
 * producer, not on the worker's loop. */
static struct sdp_flow *dump_buf_alloc(void)
{
	const size_t size = SDP_CMD_DUMP_MAX * sizeof(struct sdp_flow);
	void *p = NULL;
	if (posix_memalign(&p, 4096, size) != 0)
		return NULL;
	volatile uint8_t *b = p;
	for (size_t off = 0; off < size; off += 4096)
		b[off] = 0;
	return p;
}

int sdp_cmd_post(struct sdp_cmd_ring *r, const struct sdp_cmd_args *a)
{
	switch (a->op) {
	case SDP_CMD_INSTALL:
		if (a->state != SDP_SYN_RCVD && a->state != SDP_ESTABLISHED)
			return -EINVAL;
		break;
	case SDP_CMD_REMOVE:
	case SDP_CMD_WITHDRAW:
		break;
	case SDP_CMD_DUMP:
		if (a->max == 0 || a->max > SDP_CMD_DUMP_MAX)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}
	/* Only the producer writes head: a plain load of our own value. */
	uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint32_t i = head % SDP_CMD_SLOTS;
	struct sdp_cmd_slot *s = &r->slots[i];
	/* FREE, seen with acquire: the worker and the last waiter are done
	 * with the slot, and its buffer is ours to fill in. */
	if (atomic_load_explicit(&s->state, memory_order_acquire) != SDP_SLOT_FREE)
		return -EBUSY;
	if (a->op == SDP_CMD_DUMP && s->buf == NULL) {
		s->buf = dump_buf_alloc();
		if (s->buf == NULL)
			return -ENOMEM;
	}
	s->args = *a;
	s->status = 0;
	s->count = 0;
	s->next_cursor = 0;
	atomic_store_explicit(&s->state, SDP_SLOT_POSTED, memory_order_relaxed);
	/* Release: the worker that sees the new head sees the slot. */
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
	return (int)i;
}

void sdp_cmd_release(struct sdp_cmd_ring *r, uint32_t i)
{
	atomic_store_explicit(&r->slots[i].state, SDP_SLOT_FREE,
			      memory_order_release);
}

int sdp_cmd_abandon(struct sdp_cmd_ring *r, uint32_t i)
{
	uint32_t want = SDP_SLOT_POSTED;
	return atomic_compare_exchange_strong_explicit(
		&r->slots[i].state, &want, SDP_SLOT_ABANDONED,
		memory_order_acq_rel, memory_order_acquire);
}

void sdp_cmd_ring_free(struct sdp_cmd_ring *r)
{
	for (uint32_t i = 0; i < SDP_CMD_SLOTS; i++) {
		free(r->slots[i].buf);
		r->slots[i].buf = NULL;
	}
}

static struct sdp_flow *cmd_find(struct sdp_classifier *c,
				 const struct sdp_cmd_args *a,
				 struct sdp_key *k, uint32_t *hash)
{
	k->saddr = a->saddr;
	k->daddr = a->daddr;
	k->sport = a->sport;
	k->dport = a->dport;
	/* The slot is the table's keyed hash; the bucket (fast-drop counts)
	 * is the connection value's low 16 bits. */
	*hash = sdp_slot_hash(c->flows.key, k);
	return sdp_flows_find(&c->flows, k, *hash);
}

static uint16_t cmd_bucket(const struct sdp_classifier *c,
			   const struct sdp_cmd_args *a)
{
	return (uint16_t)sdp_conn_value(c->seed, a->saddr, a->daddr, a->sport,
					a->dport);
}

/* Insert or overwrite: a flow adopted from another node (connection
 * handoff) replaces whatever this worker held for the tuple, a tombstone
 * included. The timer restarts as if the flow had just been seen. */
static int32_t cmd_install(struct sdp_classifier *c, struct sdp_cmd_slot *s,
			   uint32_t now_ms)
{
	const struct sdp_cmd_args *a = &s->args;
	struct sdp_flow_table *t = &c->flows;
	struct sdp_key k;
	uint32_t hash;
	struct sdp_flow *f = cmd_find(c, a, &k, &hash);
	if (a->state == SDP_SYN_RCVD &&
	    (f == NULL || f->state != SDP_SYN_RCVD) &&
	    t->by_state[SDP_SYN_RCVD] >= t->max_half_open)
		return -ENOSPC;
	if (f == NULL) {
		if (t->count >= t->max_flows)
			return -ENOSPC;
		f = sdp_flows_insert(t, &k, hash, cmd_bucket(c, a), a->state);
	} else {
		sdp_flows_set_state(t, f, a->state);
		s->count = 1;
	}
	f->isn = a->isn;
	f->flags = a->flags & SDP_F_ISN_KNOWN;
	f->cnxt = a->cnxt;
	f->cfin = 0;
	f->expire_ms = now_ms + (a->state == SDP_ESTABLISHED
					 ? c->timers.idle_ms
					 : c->timers.half_open_ms);
	return 0;
}

static int32_t cmd_remove(struct sdp_classifier *c, struct sdp_cmd_slot *s)
{
	struct sdp_key k;
	uint32_t hash;
	struct sdp_flow *f = cmd_find(c, &s->args, &k, &hash);
	if (f != NULL) {
		sdp_flows_delete(&c->flows, f);
		s->count = 1;
	}
	return 0;
}

/* The same tombstone the overlap guard leaves (classify.c): the client's
 * later packets are dropped as foreign, our kernel's packets of the tuple
 * are dropped, and a SYN-ACK of it is turned into the client's RST. A tuple
 * without a flow gets a tombstone too, so that a socket the kernel still
 * holds for it can never answer the client. */
static int32_t cmd_withdraw(struct sdp_classifier *c, struct sdp_cmd_slot *s,
			    uint32_t now_ms)
{
	struct sdp_flow_table *t = &c->flows;
	struct sdp_key k;
	uint32_t hash;
	struct sdp_flow *f = cmd_find(c, &s->args, &k, &hash);
	if (f == NULL) {
		if (t->count >= t->max_flows)
			return -ENOSPC;
		f = sdp_flows_insert(t, &k, hash, cmd_bucket(c, &s->args), SDP_WITHDRAWN);
	} else {
		sdp_flows_set_state(t, f, SDP_WITHDRAWN);
		s->count = 1;
	}
	f->expire_ms = now_ms + SDP_TOMBSTONE_MS;
	return 0;
}

/* Scan at most *budget slots from r->dump_pos into the slot's buffer.
 * Returns 1 when the chunk is complete (buffer full or table done). */
static int cmd_dump_step(struct sdp_cmd_ring *r, struct sdp_classifier *c,
			 struct sdp_cmd_slot *s, uint32_t *budget)
{
	const struct sdp_flow_table *t = &c->flows;
	uint64_t cap = (uint64_t)t->mask + 1;
	uint64_t pos = r->dump_pos;
	uint32_t n = s->count, max = s->args.max;
	uint32_t left = *budget;
	while (pos < cap && n < max && left > 0) {
		if (t->slots[pos].state != SDP_EMPTY)
			s->buf[n++] = t->slots[pos];
		pos++;
		left--;
	}
	*budget = left;
	s->count = n;
	r->dump_pos = (uint32_t)pos;
	if (pos >= cap) {
		s->next_cursor = 0;
		return 1;
	}
	if (n == max) {
		s->next_cursor = (uint32_t)pos;
		return 1;
	}
	return 0;
}

/* The worker is done with slot s: hand it to its waiter, or free it if the
 * waiter gave up. */
static void cmd_complete(struct sdp_cmd_ring *r, struct sdp_cmd_slot *s)
{
	/* Counted before the slot is handed over: whoever sees the slot DONE
	 * or FREE (acquire) also sees the command counted. */
	atomic_fetch_add_explicit(&r->done, 1, memory_order_relaxed);
	uint32_t want = SDP_SLOT_POSTED;
	if (!atomic_compare_exchange_strong_explicit(&s->state, &want,
						     SDP_SLOT_DONE,
						     memory_order_acq_rel,
						     memory_order_acquire))
		atomic_store_explicit(&s->state, SDP_SLOT_FREE,
				      memory_order_release);
	r->tail++;
	r->dump_started = 0;
}

uint32_t sdp_cmd_run(struct sdp_cmd_ring *r, struct sdp_classifier *c,
		     uint32_t now_ms)
{
	uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);
	uint32_t budget = SDP_CMD_SCAN_SLOTS;
	uint32_t worked = 0;
	while (r->tail != head && worked < SDP_CMD_PER_ITER) {
		struct sdp_cmd_slot *s = &r->slots[r->tail % SDP_CMD_SLOTS];
		worked++;
		switch (s->args.op) {
		case SDP_CMD_INSTALL:
			s->status = cmd_install(c, s, now_ms);
			break;
		case SDP_CMD_REMOVE:
			s->status = cmd_remove(c, s);
			break;
		case SDP_CMD_WITHDRAW:
			s->status = cmd_withdraw(c, s, now_ms);
			break;
		case SDP_CMD_DUMP:
			if (!r->dump_started) {
				r->dump_pos = s->args.cursor;
				r->dump_started = 1;
			}
			if (!cmd_dump_step(r, c, s, &budget))
				return worked; /* the scan budget is spent */
			break;
		default:
			s->status = -EINVAL;
		}
		cmd_complete(r, s);
	}
	return worked;
}
