/* cmdtest.c: the command channel (cmd.c) over a real flow table and
 * classifier (flows.c, classify.c), as a plain C program with no DPDK
 * runtime, built by TestCommandChannelASan with AddressSanitizer and
 * UndefinedBehaviorSanitizer (and TestCommandChannelTSan with
 * ThreadSanitizer). The producer side follows runtime's Go waiter step by
 * step: post, poll the slot until DONE or the deadline, then read and
 * release, or abandon.
 *
 *   cmdtest          every check below; exit 0 when all pass
 *   cmdtest legacy   the flow dump as it was before the channel: the
 *                    caller frees its buffer when its wait times out and
 *                    the slow worker writes into it afterwards. The
 *                    sanitizer must report a heap-use-after-free: this
 *                    proves that the build catches the bug the channel's
 *                    ownership rule prevents.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "flows.h"

static int failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__,        \
				__LINE__, #cond);                            \
			fprintf(stderr, __VA_ARGS__);                        \
			fprintf(stderr, "\n");                               \
			failures++;                                          \
		}                                                            \
	} while (0)

static const uint8_t cluster_mac[6] = {0x01, 0x00, 0x5e, 0x75, 0xc9, 0x3e};
static const uint8_t node_mac[6] = {0x02, 0, 0, 0, 0, 0x01};
static const uint8_t client_mac[6] = {0x02, 0, 0, 0, 0, 0x0a};

/* Network-order values held in memory order, as the flow table keeps them. */
static uint32_t ip4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	uint8_t x[4] = {a, b, c, d};
	uint32_t v;
	memcpy(&v, x, 4);
	return v;
}

static uint16_t nport(uint16_t p)
{
	uint8_t x[2] = {(uint8_t)(p >> 8), (uint8_t)p};
	uint16_t v;
	memcpy(&v, x, 2);
	return v;
}

static uint32_t vip;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	nanosleep(&ts, NULL);
}

static struct sdp_classifier *new_classifier(uint32_t max_flows,
					     uint32_t max_half_open)
{
	struct sdp_classifier *c = calloc(1, sizeof(*c));
	c->vip = vip;
	c->seed = 0x5eed;
	memcpy(c->cluster_mac, cluster_mac, 6);
	memcpy(c->node_mac, node_mac, 6);
	c->timers.half_open_ms = 10000;
	c->timers.idle_ms = 900000;
	c->timers.closing_ms = 30000;
	int rc = sdp_classifier_init(c, max_flows, max_half_open);
	CHECK(rc == 0, "sdp_classifier_init: %d", rc);
	return c;
}

static void free_classifier(struct sdp_classifier *c)
{
	sdp_classifier_free(c);
	free(c);
}

static struct sdp_cmd_ring *new_ring(void)
{
	struct sdp_cmd_ring *r = aligned_alloc(64, sizeof(*r));
	memset(r, 0, sizeof(*r));
	return r;
}

static void free_ring(struct sdp_cmd_ring *r)
{
	sdp_cmd_ring_free(r);
	free(r);
}

/* The client-side key of test flow i. */
static struct sdp_cmd_args key_args(uint32_t op, uint32_t i)
{
	struct sdp_cmd_args a = {0};
	a.op = op;
	a.saddr = ip4(198, 19, (uint8_t)(i >> 8), (uint8_t)i);
	a.daddr = vip;
	a.sport = nport((uint16_t)(1024 + (i >> 16)));
	a.dport = nport(80);
	return a;
}

static int state_of(struct sdp_classifier *c, uint32_t i, uint32_t now)
{
	struct sdp_cmd_args a = key_args(0, i);
	return sdp_flows_state(c, a.saddr, a.daddr, a.sport, a.dport, now);
}

/* Run the worker side until the ring is empty. */
static void drain(struct sdp_cmd_ring *r, struct sdp_classifier *c,
		  uint32_t now)
{
	while (sdp_cmd_pending(r))
		sdp_cmd_run(r, c, now);
}

/* Post, run, read the results and release the slot: a command on a worker
 * that answers at once. Returns the status; *count gets the count. */
static int sync_cmd(struct sdp_cmd_ring *r, struct sdp_classifier *c,
		    struct sdp_cmd_args a, uint32_t now, uint32_t *count)
{
	int i = sdp_cmd_post(r, &a);
	if (i < 0)
		return i;
	drain(r, c, now);
	CHECK(sdp_cmd_slot_state(r, (uint32_t)i) == SDP_SLOT_DONE,
	      "slot %d not DONE after drain", i);
	int st = r->slots[i].status;
	if (count)
		*count = r->slots[i].count;
	sdp_cmd_release(r, (uint32_t)i);
	return st;
}

/* A TCP frame of flow i from the client (rx) or from our kernel (tap). */
static uint16_t frame(uint8_t *f, uint32_t i, int from_kernel, uint8_t flags,
		      uint32_t seq, uint32_t ack)
{
	struct sdp_cmd_args a = key_args(0, i);
	memset(f, 0, 64);
	memcpy(f, from_kernel ? client_mac : cluster_mac, 6);
	memcpy(f + 6, from_kernel ? node_mac : client_mac, 6);
	f[12] = 0x08;
	uint8_t *ip = f + 14, *tcp = ip + 20;
	ip[0] = 0x45;
	ip[3] = 40;
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, from_kernel ? &a.daddr : &a.saddr, 4);
	memcpy(ip + 16, from_kernel ? &a.saddr : &a.daddr, 4);
	memcpy(tcp, from_kernel ? &a.dport : &a.sport, 2);
	memcpy(tcp + 2, from_kernel ? &a.sport : &a.dport, 2);
	for (int k = 0; k < 4; k++) {
		tcp[4 + k] = (uint8_t)(seq >> (24 - 8 * k));
		tcp[8 + k] = (uint8_t)(ack >> (24 - 8 * k));
	}
	tcp[12] = 5 << 4;
	tcp[13] = flags;
	tcp[14] = 0x10;
	/* Valid checksums: the classifier drops a segment whose checksums it
	 * cannot vouch for before it changes any flow. */
	uint32_t sum = 0;
	for (int k = 0; k < 20; k += 2)
		sum += (uint32_t)(ip[k] << 8 | ip[k + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	ip[10] = (uint8_t)(~sum >> 8);
	ip[11] = (uint8_t)~sum;
	sum = 6 + 20; /* pseudo-header: protocol and TCP length */
	for (int k = 12; k < 20; k += 2)
		sum += (uint32_t)(ip[k] << 8 | ip[k + 1]);
	for (int k = 0; k < 20; k += 2)
		sum += (uint32_t)(tcp[k] << 8 | tcp[k + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	tcp[16] = (uint8_t)(~sum >> 8);
	tcp[17] = (uint8_t)~sum;
	return 54;
}

static uint8_t classify(struct sdp_classifier *c, uint32_t i, int from_kernel,
			uint8_t flags, uint32_t seq, uint32_t ack, uint32_t now)
{
	uint8_t buf[64], *f = buf, v = 0xff;
	uint16_t len = frame(buf, i, from_kernel, flags, seq, ack);
	if (from_kernel)
		sdp_classify_tap(c, &f, &len, 1, now, &v);
	else
		sdp_classify_rx(c, &f, &len, 1, now, NULL, &v);
	return v;
}

#define ACK 0x10
#define SYNACK 0x12

/* Install, remove and withdraw do what the classifier then sees. */
static void test_commands(void)
{
	struct sdp_classifier *c = new_classifier(1024, 256);
	struct sdp_cmd_ring *r = new_ring();
	const uint32_t now = 1000;
	uint32_t n = 99;

	/* An adopted established flow: its packets go to our kernel. */
	struct sdp_cmd_args a = key_args(SDP_CMD_INSTALL, 1);
	a.state = SDP_ESTABLISHED;
	CHECK(sync_cmd(r, c, a, now, &n) == 0 && n == 0, "install: count %u", n);
	CHECK(state_of(c, 1, now) == SDP_ESTABLISHED, "state %d", state_of(c, 1, now));
	CHECK(c->flows.count == 1 && c->flows.by_state[SDP_ESTABLISHED] == 1,
	      "count %u", c->flows.count);
	CHECK(classify(c, 1, 0, ACK, 5, 6, now) == SDP_TO_KERNEL, "ACK of an installed flow not delivered");
	CHECK(classify(c, 2, 0, ACK, 5, 6, now) == SDP_DROP, "ACK of another flow delivered");
	CHECK(state_of(c, 1, now + 900000) == SDP_EMPTY, "installed flow outlives the idle timer");

	/* Overwriting: SYN_RCVD with a known ISN; the client's ACK of
	 * ISN+1 makes it ESTABLISHED, as for a flow the SYN created. */
	a.state = SDP_SYN_RCVD;
	a.isn = 0x80000000u;
	a.flags = SDP_F_ISN_KNOWN;
	CHECK(sync_cmd(r, c, a, now, &n) == 0 && n == 1, "reinstall: count %u", n);
	CHECK(c->flows.count == 1 && c->flows.by_state[SDP_SYN_RCVD] == 1, "count %u", c->flows.count);
	CHECK(classify(c, 1, 0, ACK, 5, 0x80000001u, now) == SDP_TO_KERNEL, "ACK of ISN+1 not delivered");
	CHECK(state_of(c, 1, now) == SDP_ESTABLISHED, "state %d after the ACK", state_of(c, 1, now));

	/* Withdraw: a tombstone; the client's packets are foreign, our
	 * kernel's are dropped. */
	a = key_args(SDP_CMD_WITHDRAW, 1);
	CHECK(sync_cmd(r, c, a, now, &n) == 0 && n == 1, "withdraw: count %u", n);
	CHECK(state_of(c, 1, now) == SDP_WITHDRAWN, "state %d", state_of(c, 1, now));
	uint64_t kd = c->ctr.kernel_withdrawn_dropped;
	CHECK(classify(c, 1, 1, ACK, 6, 6, now) == SDP_DROP && c->ctr.kernel_withdrawn_dropped == kd + 1,
	      "kernel packet of a withdrawn flow not dropped");
	CHECK(classify(c, 1, 0, ACK, 6, 6, now) == SDP_DROP, "client packet of a withdrawn flow delivered");
	CHECK(state_of(c, 1, now + SDP_TOMBSTONE_MS) == SDP_EMPTY, "tombstone outlives its timer");
	/* A tuple without a flow gets a tombstone as well. */
	a = key_args(SDP_CMD_WITHDRAW, 3);
	CHECK(sync_cmd(r, c, a, now, &n) == 0 && n == 0, "withdraw absent: count %u", n);
	CHECK(state_of(c, 3, now) == SDP_WITHDRAWN, "state %d", state_of(c, 3, now));
	CHECK(classify(c, 3, 1, SYNACK, 7, 8, now) == SDP_TO_KERNEL,
	      "SYN-ACK of a withdrawn tuple not turned into the client's RST");

	/* Remove. */
	a = key_args(SDP_CMD_REMOVE, 1);
	CHECK(sync_cmd(r, c, a, now, &n) == 0 && n == 1, "remove: count %u", n);
	CHECK(state_of(c, 1, now) == SDP_EMPTY, "state %d after remove", state_of(c, 1, now));
	CHECK(sync_cmd(r, c, a, now, &n) == 0 && n == 0, "remove again: count %u", n);
	CHECK(c->flows.count == 1 && c->flows.by_state[SDP_WITHDRAWN] == 1, "count %u", c->flows.count);
	uint32_t total = 0;
	for (uint32_t b = 0; b < SDP_BUCKETS; b++)
		total += c->flows.bucket_flows[b];
	CHECK(total == 1, "bucket counts sum to %u", total);

	/* Malformed commands are refused at the post. */
	a = key_args(SDP_CMD_INSTALL, 4);
	a.state = SDP_CLOSING;
	CHECK(sdp_cmd_post(r, &a) == -EINVAL, "install CLOSING accepted");
	a = key_args(SDP_CMD_DUMP, 0);
	CHECK(sdp_cmd_post(r, &a) == -EINVAL, "dump of 0 flows accepted");
	a.max = SDP_CMD_DUMP_MAX + 1;
	CHECK(sdp_cmd_post(r, &a) == -EINVAL, "dump over SDP_CMD_DUMP_MAX accepted");
	a.op = 99;
	CHECK(sdp_cmd_post(r, &a) == -EINVAL, "op 99 accepted");

	/* The ring holds SDP_CMD_SLOTS commands; a slot is free again only
	 * once its waiter released it. */
	int slots[SDP_CMD_SLOTS];
	for (uint32_t k = 0; k < SDP_CMD_SLOTS; k++) {
		a = key_args(SDP_CMD_REMOVE, 100 + k);
		slots[k] = sdp_cmd_post(r, &a);
		CHECK(slots[k] >= 0, "post %u: %d", k, slots[k]);
	}
	CHECK(sdp_cmd_post(r, &a) == -EBUSY, "post into a full ring");
	CHECK(sdp_cmd_run(r, c, now) <= SDP_CMD_PER_ITER, "more than SDP_CMD_PER_ITER commands in one iteration");
	drain(r, c, now);
	CHECK(sdp_cmd_post(r, &a) == -EBUSY, "post into a slot its waiter has not released");
	for (uint32_t k = 0; k < SDP_CMD_SLOTS; k++)
		sdp_cmd_release(r, (uint32_t)slots[k]);
	CHECK(sync_cmd(r, c, a, now, NULL) == 0, "post after release");

	free_ring(r);
	free_classifier(c);

	/* A full table refuses installs and tombstones; the half-open share
	 * bounds SYN_RCVD installs. */
	c = new_classifier(4, 2);
	r = new_ring();
	for (uint32_t k = 0; k < 2; k++) {
		a = key_args(SDP_CMD_INSTALL, k);
		a.state = SDP_SYN_RCVD;
		CHECK(sync_cmd(r, c, a, now, NULL) == 0, "half-open install %u", k);
	}
	a = key_args(SDP_CMD_INSTALL, 2);
	a.state = SDP_SYN_RCVD;
	CHECK(sync_cmd(r, c, a, now, NULL) == -ENOSPC, "third half-open install accepted");
	for (uint32_t k = 2; k < 4; k++) {
		a = key_args(SDP_CMD_INSTALL, k);
		a.state = SDP_ESTABLISHED;
		CHECK(sync_cmd(r, c, a, now, NULL) == 0, "install %u", k);
	}
	a = key_args(SDP_CMD_INSTALL, 4);
	a.state = SDP_ESTABLISHED;
	CHECK(sync_cmd(r, c, a, now, NULL) == -ENOSPC, "install into a full table accepted");
	a = key_args(SDP_CMD_WITHDRAW, 4);
	CHECK(sync_cmd(r, c, a, now, NULL) == -ENOSPC, "tombstone in a full table accepted");
	a = key_args(SDP_CMD_WITHDRAW, 3);
	CHECK(sync_cmd(r, c, a, now, NULL) == 0, "withdraw of a held flow in a full table");
	CHECK(c->flows.count == 4, "count %u", c->flows.count);
	free_ring(r);
	free_classifier(c);
}

/* Fill c with n established flows 0..n-1, expiring far in the future. */
static void preload(struct sdp_classifier *c, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct sdp_cmd_args a = key_args(0, i);
		struct sdp_key k = {a.saddr, a.daddr, a.sport, a.dport};
		uint32_t h = sdp_conn_value(c->seed, a.saddr, a.daddr, a.sport, a.dport);
		struct sdp_flow *f = sdp_flows_insert(&c->flows, &k, h, (uint16_t)h, SDP_ESTABLISHED);
		f->expire_ms = 0x7fffffffu;
	}
}

static uint32_t index_of(const struct sdp_flow *f)
{
	const uint8_t *s = (const uint8_t *)&f->saddr;
	const uint8_t *p = (const uint8_t *)&f->sport;
	uint32_t port = (uint32_t)p[0] << 8 | p[1];
	return (port - 1024) << 16 | (uint32_t)s[2] << 8 | s[3];
}

/* A dump returns every flow exactly once, in chunks of at most
 * SDP_CMD_DUMP_MAX flows, scanning at most SDP_CMD_SCAN_SLOTS slots per
 * iteration. */
static void test_dump_chunks(void)
{
	const uint32_t nflows = 300000;
	struct sdp_classifier *c = new_classifier(nflows, nflows);
	struct sdp_cmd_ring *r = new_ring();
	preload(c, nflows);
	uint8_t *seen = calloc(nflows, 1);
	uint32_t cursor = 0, got = 0, chunks = 0, iters = 0, worst = 0;
	const uint32_t cap = c->flows.mask + 1;
	do {
		struct sdp_cmd_args a = {.op = SDP_CMD_DUMP, .cursor = cursor, .max = SDP_CMD_DUMP_MAX};
		int i = sdp_cmd_post(r, &a);
		CHECK(i >= 0, "post dump: %d", i);
		if (i < 0)
			break;
		uint32_t pos = cursor;
		while (sdp_cmd_slot_state(r, (uint32_t)i) != SDP_SLOT_DONE) {
			sdp_cmd_run(r, c, 1000);
			uint32_t end = r->dump_pos; /* where this iteration's scan stopped */
			if (end - pos > worst)
				worst = end - pos;
			pos = end;
			iters++;
		}
		struct sdp_cmd_slot *s = &r->slots[i];
		CHECK(s->status == 0 && s->count <= SDP_CMD_DUMP_MAX, "chunk: status %d count %u", s->status, s->count);
		for (uint32_t k = 0; k < s->count; k++) {
			uint32_t x = index_of(&s->buf[k]);
			CHECK(x < nflows && !seen[x], "flow %u out of range or seen twice", x);
			if (x < nflows)
				seen[x] = 1;
		}
		got += s->count;
		cursor = s->next_cursor;
		CHECK(cursor == 0 || s->count == SDP_CMD_DUMP_MAX, "chunk of %u flows ends before the table", s->count);
		sdp_cmd_release(r, (uint32_t)i);
		chunks++;
	} while (cursor != 0);
	CHECK(got == nflows, "dumped %u flows, want %u", got, nflows);
	CHECK(worst <= SDP_CMD_SCAN_SLOTS, "one iteration scanned %u slots", worst);
	CHECK(iters >= cap / SDP_CMD_SCAN_SLOTS, "%u iterations for %u slots", iters, cap);
	fprintf(stderr, "dump: %u flows in %u chunks, %u iterations, at most %u slots per iteration\n",
		got, chunks, iters, worst);
	free(seen);
	free_ring(r);
	free_classifier(c);
}

/* A worker thread: runs iterations until told to stop, pausing while
 * paused is set, sleeping a little between iterations when slow is set. */
struct worker {
	struct sdp_cmd_ring *r;
	struct sdp_classifier *c;
	sem_t resume;
	_Atomic int paused, slow, stop;
	_Atomic int parked; /* the worker waits on resume */
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	unsigned seed = 1;
	while (!atomic_load(&w->stop)) {
		if (atomic_load(&w->paused)) {
			atomic_store(&w->parked, 1);
			sem_wait(&w->resume);
			atomic_store(&w->parked, 0);
			continue;
		}
		if (sdp_cmd_pending(w->r))
			sdp_cmd_run(w->r, w->c, 1000);
		if (atomic_load(&w->slow))
			sleep_us(rand_r(&seed) % 50);
	}
	drain(w->r, w->c, 1000);
	return NULL;
}

/* The Go waiter: 1 and the slot released if the command completed by the
 * deadline, 0 if abandoned (the worker frees the slot later). */
static int wait_or_abandon(struct sdp_cmd_ring *r, uint32_t i,
			   uint64_t timeout_ns, uint32_t *count)
{
	uint64_t deadline = now_ns() + timeout_ns;
	while (sdp_cmd_slot_state(r, i) != SDP_SLOT_DONE) {
		if (now_ns() >= deadline) {
			if (sdp_cmd_abandon(r, i))
				return 0;
			break; /* completed meanwhile */
		}
		sleep_us(20);
	}
	if (count)
		*count = r->slots[i].count;
	/* Read what the worker wrote, as Go copies the flows out. */
	if (r->slots[i].args.op == SDP_CMD_DUMP)
		for (uint32_t k = 0; k < r->slots[i].count; k++)
			CHECK(r->slots[i].buf[k].state != SDP_EMPTY && r->slots[i].buf[k].state < SDP_NSTATES,
			      "dumped flow %u in state %d",
			      k, r->slots[i].buf[k].state);
	sdp_cmd_release(r, i);
	return 1;
}

/* The waiter of a dump times out while the worker is stalled; the worker
 * then completes the dump into the slot's buffer. Then waiters with random
 * deadlines race a running worker. */
static void test_abandon(void)
{
	const uint32_t nflows = 100000;
	struct worker w = {0};
	w.c = new_classifier(nflows + 1024, 1024);
	w.r = new_ring();
	preload(w.c, nflows);
	sem_init(&w.resume, 0, 0);
	atomic_store(&w.paused, 1);
	pthread_t th;
	pthread_create(&th, NULL, worker_main, &w);
	while (!atomic_load(&w.parked))
		sleep_us(100);

	/* The worker is stalled: the waiter gives up after 20 ms. */
	struct sdp_cmd_args a = {.op = SDP_CMD_DUMP, .cursor = 0, .max = SDP_CMD_DUMP_MAX};
	int i = sdp_cmd_post(w.r, &a);
	CHECK(i >= 0, "post: %d", i);
	CHECK(wait_or_abandon(w.r, (uint32_t)i, 20000000, NULL) == 0, "a stalled worker completed the dump");
	CHECK(sdp_cmd_slot_state(w.r, (uint32_t)i) == SDP_SLOT_ABANDONED, "slot not ABANDONED");
	uint64_t done = atomic_load(&w.r->done);

	/* The worker comes back, finishes the dump (16384 flows written into
	 * the slot's buffer) and frees the slot nobody waits for. */
	atomic_store(&w.paused, 0);
	sem_post(&w.resume);
	uint64_t deadline = now_ns() + 10000000000ull;
	while (sdp_cmd_slot_state(w.r, (uint32_t)i) != SDP_SLOT_FREE && now_ns() < deadline)
		sleep_us(100);
	CHECK(sdp_cmd_slot_state(w.r, (uint32_t)i) == SDP_SLOT_FREE, "abandoned slot not freed by the worker");
	CHECK(atomic_load(&w.r->done) == done + 1, "done %llu", (unsigned long long)atomic_load(&w.r->done));
	CHECK(w.r->slots[i].count == SDP_CMD_DUMP_MAX, "abandoned dump wrote %u flows", w.r->slots[i].count);

	/* The next dump is answered normally. */
	uint32_t n = 0;
	i = sdp_cmd_post(w.r, &a);
	CHECK(i >= 0 && wait_or_abandon(w.r, (uint32_t)i, 10000000000ull, &n) == 1 && n == SDP_CMD_DUMP_MAX,
	      "dump after the abandoned one: slot %d, %u flows", i, n);

	/* Races: a slow worker, waiters with deadlines of 0 to 300 µs,
	 * every kind of command. */
	atomic_store(&w.slow, 1);
	unsigned seed = 7;
	uint32_t posted = 0, completed = 0, abandoned = 0, busy = 0;
	for (int k = 0; k < 3000; k++) {
		uint32_t op = 1 + (uint32_t)(rand_r(&seed) % 4);
		a = key_args(op, nflows + (uint32_t)(rand_r(&seed) % 64));
		a.state = SDP_ESTABLISHED;
		a.max = 1 + (uint32_t)(rand_r(&seed) % SDP_CMD_DUMP_MAX);
		a.cursor = (uint32_t)(rand_r(&seed) % (w.c->flows.mask + 1));
		i = sdp_cmd_post(w.r, &a);
		if (i == -EBUSY) {
			busy++;
			sleep_us(200);
			continue;
		}
		CHECK(i >= 0, "post: %d", i);
		if (i < 0)
			continue;
		posted++;
		if (wait_or_abandon(w.r, (uint32_t)i, (uint64_t)(rand_r(&seed) % 300) * 1000, NULL)) {
			completed++;
			/* The worker runs commands in order: this one and every
			 * one before it are counted once its answer is seen. */
			CHECK(atomic_load(&w.r->done) >= done + 2 + posted, "answer seen, done %llu < %llu",
			      (unsigned long long)atomic_load(&w.r->done), (unsigned long long)(done + 2 + posted));
		} else
			abandoned++;
	}
	atomic_store(&w.stop, 1);
	pthread_join(th, NULL);
	CHECK(atomic_load(&w.r->done) == done + 2 + posted, "done %llu, posted %u",
	      (unsigned long long)atomic_load(&w.r->done), posted);
	for (uint32_t k = 0; k < SDP_CMD_SLOTS; k++)
		CHECK(sdp_cmd_slot_state(w.r, k) == SDP_SLOT_FREE, "slot %u left in state %u", k,
		      sdp_cmd_slot_state(w.r, k));
	CHECK(abandoned > 0 && completed > 0, "no race exercised: %u completed, %u abandoned", completed, abandoned);
	fprintf(stderr, "abandon: %u commands, %u completed in time, %u abandoned, %u posts refused (ring full)\n",
		posted, completed, abandoned, busy);
	sem_destroy(&w.resume);
	free_ring(w.r);
	free_classifier(w.c);
}

/* The dump before the channel (runtime.go until this change): the caller's
 * buffer, freed when the wait times out, written by a worker that was late.
 * The sanitizer must stop the program at the worker's write. */
struct legacy {
	struct sdp_classifier *c;
	struct sdp_flow *_Atomic buf;
	_Atomic int req;
};

static void *legacy_worker(void *arg)
{
	struct legacy *l = arg;
	while (!atomic_load(&l->req))
		sleep_us(100);
	sleep_us(50000); /* slow: the caller gives up meanwhile */
	const struct sdp_flow_table *t = &l->c->flows;
	struct sdp_flow *out = atomic_load(&l->buf);
	uint32_t n = 0;
	for (uint32_t i = 0; i <= t->mask && n < 16; i++)
		if (t->slots[i].state != SDP_EMPTY)
			out[n++] = t->slots[i];
	return NULL;
}

static int legacy(void)
{
	struct legacy l = {0};
	l.c = new_classifier(1024, 256);
	preload(l.c, 100);
	pthread_t th;
	pthread_create(&th, NULL, legacy_worker, &l);
	struct sdp_flow *buf = calloc(16, sizeof(*buf));
	atomic_store(&l.buf, buf);
	atomic_store(&l.req, 1);
	sleep_us(10000); /* the 2 s deadline, shortened */
	free(buf);       /* defer C.free(buf) on the timeout path */
	pthread_join(th, NULL);
	free_classifier(l.c);
	fprintf(stderr, "legacy: the worker wrote into freed memory unnoticed\n");
	return 0;
}

int main(int argc, char **argv)
{
	vip = ip4(198, 18, 0, 100);
	if (argc > 1 && strcmp(argv[1], "legacy") == 0)
		return legacy();
	test_commands();
	test_dump_chunks();
	test_abandon();
	if (failures) {
		fprintf(stderr, "%d checks failed\n", failures);
		return 1;
	}
	fprintf(stderr, "cmdtest: all checks passed\n");
	return 0;
}
