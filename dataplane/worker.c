/* worker.c: the poll loop of one worker lcore.
 *
 * NIC RX -> classify -> tap TX (accepted flows) or NIC TX (ARP replies);
 * tap RX -> classify -> NIC TX (replies leave directly). The worker never
 * calls Go and never locks: it loads the published ownership table once per
 * iteration, which is also its quiescent point, runs the commands Go posted
 * (cmd.h) within a fixed budget per iteration, and sleeps when idle so
 * that a quiet node does not eat a core: on the devices' receive file
 * descriptors where it has them (until a packet comes), else in short
 * timed sleeps.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* gettid */
#endif
#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

#include "wanted.h"
#include "worker.h"

/* After the last packet the worker keeps polling for this long before its
 * first sleep, so a conversation's next packet (a reply through the tap, a
 * client's next segment) rarely meets a sleeping worker. It does so only
 * while spinning pays: when the last quiet spell ended within this window
 * (sdp_spin_next).
 * Sparse traffic (gossip, health checks, a lightly loaded node) would
 * otherwise cost 50 us of polling for every packet, more than the sleeps
 * and wake-ups the next packet meets instead (issue 14). */
#define IDLE_SPIN_US 50
/* The first idle sleep. A nanosleep costs the thread ~2 us of CPU on bare
 * metal and ~14 us in a VM whatever its length: sleeping for less than
 * that saves nothing over polling. */
#define IDLE_FIRST_SLEEP_US 16
/* The sweep's budget per loop iteration (see sdp_flows_sweep): 64 slots
 * while traffic leaves time, 8 when the NIC fills whole bursts. At 10 Mpps
 * that still sweeps 2.5 M slots a second (a 1 M-flow table, 2 M slots,
 * every 0.8 s), at an eighth of the memory traffic. */
#define SWEEP_SLOTS_PER_ITER 64
#define SWEEP_SLOTS_BUSY 8

/* Before deciding a burst from the tap, the worker empties the NIC's
 * receive queue, up to this many bursts: 2048 frames, more than the RX ring
 * holds (1024 descriptors as the node configures it; net_af_packet's ring
 * is 512 frames), so every frame received before the tap was read is
 * decided first. Under a flood that refills the ring as fast as it is
 * read, the tap still gets its turn after this many. */
#define SDP_NIC_DRAIN_BURSTS 64

/* Set once by sdp_clock_init before any worker starts, read-only after:
 * the lcore launch orders the writes before every worker's reads. Until
 * then the clock reads 0 instead of dividing by zero. */
uint64_t sdp_clock_start;
uint64_t sdp_clock_per_ms = UINT64_MAX;

int sdp_clock_init(void)
{
	if (sdp_clock_per_ms != UINT64_MAX)
		return 0;
	uint64_t hz = rte_get_tsc_hz();
	if (hz < 1000)
		return -EAGAIN;
	sdp_clock_start = rte_get_tsc_cycles();
	sdp_clock_per_ms = hz / 1000;
	return 0;
}

uint32_t sdp_now_ms(void)
{
	return sdp_clock_ms(rte_get_tsc_cycles());
}

uint64_t sdp_tsc_hz(void)
{
	return rte_get_tsc_hz();
}

struct sdp_worker *sdp_worker_alloc(void)
{
	struct sdp_worker *w = aligned_alloc(64, sizeof(*w));
	if (w != NULL) {
		memset(w, 0, sizeof(*w));
		w->nic_fd = -1;
		w->tap_fd = -1;
	}
	return w;
}

struct sdp_owner_table *sdp_publish(struct sdp_shared *s,
				    struct sdp_owner_table *t)
{
	return atomic_exchange_explicit(&s->table, t, memory_order_acq_rel);
}

int sdp_quiescent(struct sdp_worker **ws, uint32_t n, uint64_t epoch)
{
	for (uint32_t i = 0; i < n; i++) {
		if (!atomic_load_explicit(&ws[i]->running, memory_order_acquire))
			continue;
		if (atomic_load_explicit(&ws[i]->seen_epoch,
					 memory_order_acquire) < epoch)
			return 0;
	}
	return 1;
}

/* Send what the classifier kept; free what the device refused. */
static void send_burst(struct sdp_worker *w, uint16_t port, uint16_t queue,
		       struct rte_mbuf **pkts, uint16_t n)
{
	if (n == 0)
		return;
	uint16_t sent = rte_eth_tx_burst(port, queue, pkts, n);
	if (sent < n) {
		w->cls.ctr.tx_failed += (uint64_t)(n - sent);
		rte_pktmbuf_free_bulk(pkts + sent, n - sent);
	}
}

/* The NIC's checksum verdict, when its driver gives one (the port was
 * configured with RX checksum offload where the device has it); otherwise
 * the classifier verifies the checksums itself. "NONE" means the data's
 * integrity was verified though the field is not filled in. */
static inline uint8_t rx_hint(uint64_t ol)
{
	uint64_t l3 = ol & RTE_MBUF_F_RX_IP_CKSUM_MASK;
	uint64_t l4 = ol & RTE_MBUF_F_RX_L4_CKSUM_MASK;
	if (l3 == RTE_MBUF_F_RX_IP_CKSUM_BAD || l4 == RTE_MBUF_F_RX_L4_CKSUM_BAD)
		return SDP_RX_CSUM_BAD;
	if ((l3 == RTE_MBUF_F_RX_IP_CKSUM_GOOD || l3 == RTE_MBUF_F_RX_IP_CKSUM_NONE) &&
	    (l4 == RTE_MBUF_F_RX_L4_CKSUM_GOOD || l4 == RTE_MBUF_F_RX_L4_CKSUM_NONE))
		return SDP_RX_CSUM_GOOD;
	return SDP_RX_CSUM_UNKNOWN;
}

/* Classify one burst and dispatch it. from_tap selects the direction. */
static void handle_burst(struct sdp_worker *w, struct rte_mbuf **pkts,
			 uint16_t n, int from_tap, uint32_t now)
{
	uint8_t *frames[SDP_BURST];
	uint16_t lens[SDP_BURST];
	uint8_t verdicts[SDP_BURST];
	struct rte_mbuf *to_tap[SDP_BURST], *to_nic[SDP_BURST],
		*drop[SDP_BURST];
	uint16_t ntap = 0, nnic = 0, ndrop = 0;

	uint8_t hints[SDP_BURST];
	for (uint16_t i = 0; i < n; i++) {
		frames[i] = rte_pktmbuf_mtod(pkts[i], uint8_t *);
		/* A chained mbuf is cut to its first segment's view: the
		 * classifier's bounds checks then reject what is missing. */
		lens[i] = rte_pktmbuf_data_len(pkts[i]);
		hints[i] = rx_hint(pkts[i]->ol_flags);
	}
	if (from_tap)
		sdp_classify_tap(&w->cls, frames, lens, n, now, verdicts);
	else
		sdp_classify_rx(&w->cls, frames, lens, n, now, hints, verdicts);
	for (uint16_t i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		if (lens[i] != rte_pktmbuf_data_len(m) && m->nb_segs == 1) {
			m->data_len = lens[i];
			m->pkt_len = lens[i];
		}
		switch (verdicts[i]) {
		case SDP_TO_KERNEL:
			to_tap[ntap++] = m;
			break;
		case SDP_TO_NIC:
			to_nic[nnic++] = m;
			break;
		default:
			drop[ndrop++] = m;
		}
	}
	send_burst(w, w->tap_port, w->tap_queue, to_tap, ntap);
	send_burst(w, w->nic_port, w->nic_queue, to_nic, nnic);
	if (ndrop)
		rte_pktmbuf_free_bulk(drop, ndrop);
}

/* An epoll set of the two receive descriptors, level-triggered, or -1. */
static int open_epoll(int a, int b)
{
	int fd = epoll_create1(EPOLL_CLOEXEC);
	if (fd < 0)
		return -1;
	struct epoll_event ea = {.events = EPOLLIN, .data.u32 = 0};
	struct epoll_event eb = {.events = EPOLLIN, .data.u32 = 1};
	if (epoll_ctl(fd, EPOLL_CTL_ADD, a, &ea) < 0 ||
	    epoll_ctl(fd, EPOLL_CTL_ADD, b, &eb) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int sdp_worker_main(void *arg)
{
	struct sdp_worker *w = arg;
	struct rte_mbuf *pkts[SDP_BURST], *tap_pkts[SDP_BURST];
	const uint64_t first_sleep = w->idle_sleep_max_us < IDLE_FIRST_SLEEP_US
					     ? w->idle_sleep_max_us
					     : IDLE_FIRST_SLEEP_US;
	uint64_t sleep_us = first_sleep;
	uint64_t spin_tsc = rte_get_tsc_hz() / 1000000 * IDLE_SPIN_US;
	uint64_t last_busy = rte_get_tsc_cycles();
	int spin = 1;		 /* the last quiet spell ended within the window */
	int quiet = 0;		 /* an iteration since last_busy found nothing */
	uint64_t spell_slept = 0; /* us asleep since last_busy */
	int woke = 0;		 /* the last iteration ended in a sleep */
	const uint64_t tsc_per_us = rte_get_tsc_hz() / 1000000 ? rte_get_tsc_hz() / 1000000 : 1;
	const int wait_fds = w->nic_fd >= 0 && w->tap_fd >= 0;
	struct pollfd pfd[2] = {
		{.fd = w->nic_fd, .events = POLLIN},
		{.fd = w->tap_fd, .events = POLLIN},
	};
	/* An epoll set keeps the two descriptors registered: ppoll adds
	 * and removes its wait-queue entries on every call, which was a
	 * fifth of a loaded worker's ppoll time. ppoll is the fallback
	 * (no epoll_pwait2 before Linux 5.11). */
	int epfd = wait_fds ? open_epoll(w->nic_fd, w->tap_fd) : -1;
	int tap_ready = 1; /* the next iteration reads the tap */

	/* nanosleep rounds every sleep up by the thread's timer slack, 50 us
	 * by default: the first "1 us" idle sleep took ~55 us. With a slack
	 * of 1 ns a sleep lasts what it asks, and the cap bounds the delay
	 * a packet meets. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	atomic_store_explicit(&w->tid, (int)gettid(), memory_order_relaxed);
	/* Go set running before the launch, so a table swap racing with
	 * our start waits for us. */
	while (!atomic_load_explicit(&w->stop, memory_order_acquire)) {
		uint64_t start = rte_get_tsc_cycles();
		struct sdp_owner_table *t =
			atomic_load_explicit(&w->shared->table, memory_order_acquire);
		/* The prefilter's bitmap follows the table before any frame is
		 * decided under it (wanted.h). */
		if (w->cls.flows.wanted != NULL)
			sdp_wanted_adopt(w->cls.flows.wanted, &w->cls.flows, t);
		w->cls.owner = t;
		atomic_store_explicit(&w->seen_epoch, t ? t->epoch : 0,
				      memory_order_release);
		uint32_t now = sdp_clock_ms(start);
		w->polls++;

		/* The tap is read first and decided last: every frame the NIC
		 * received before this read is decided before the kernel's
		 * frames are. A loser of an overlap must see the client's ACK
		 * for the winner before it decides its kernel's SYN-ACK;
		 * decided after it, behind a backlog the worker met after a
		 * stall, that SYN-ACK went out and reached a client whose
		 * connection had ended (docs/dataplane.md, overlap guard). */
		uint16_t m = 0;
		if (tap_ready)
			m = rte_eth_rx_burst(w->tap_port, w->tap_queue,
					     tap_pkts, SDP_BURST);
		tap_ready = 1;
		uint16_t n = rte_eth_rx_burst(w->nic_port, w->nic_queue, pkts,
					      SDP_BURST);
		if (n)
			handle_burst(w, pkts, n, 0, now);
		uint16_t k = n;
		for (int b = 1; m && k == SDP_BURST && b < SDP_NIC_DRAIN_BURSTS; b++) {
			k = rte_eth_rx_burst(w->nic_port, w->nic_queue, pkts,
					     SDP_BURST);
			if (k)
				handle_burst(w, pkts, k, 0, now);
		}
		if (m)
			handle_burst(w, tap_pkts, m, 1, now);
		/* The sweep runs on iterations that received something and on
		 * the first after a sleep, not on every empty poll of a spin:
		 * there it was a tenth of a loaded worker's time (perf, issue
		 * 14, fourth pass) and bought nothing a later iteration would
		 * not do. An idle worker still sweeps once per wake-up. */
		if (n || m || woke)
			sdp_flows_sweep(&w->cls, now,
					n == SDP_BURST ? SWEEP_SLOTS_BUSY
						       : SWEEP_SLOTS_PER_ITER);
		uint32_t cmds = 0;
		if (sdp_cmd_pending(&w->cmds))
			cmds = sdp_cmd_run(&w->cmds, &w->cls, now);

		uint64_t took = rte_get_tsc_cycles() - start;
		if (took > atomic_load_explicit(&w->max_iter_cycles, memory_order_relaxed))
			atomic_store_explicit(&w->max_iter_cycles, took, memory_order_relaxed);
		if (n || m || cmds) {
			woke = 0;
			if (quiet)
				spin = sdp_spin_next(spin, spell_slept,
						     IDLE_SPIN_US);
			last_busy = rte_get_tsc_cycles();
			quiet = 0;
			spell_slept = 0;
			sleep_us = first_sleep;
			continue;
		}
		if (woke)
			w->empty_wakes++;
		woke = 0;
		quiet = 1;
		if (spin && rte_get_tsc_cycles() - last_busy < spin_tsc)
			continue;
		/* Idle: sleep. With the devices' file descriptors the worker
		 * waits on them and the first packet ends the sleep; the
		 * timeout (the cap) only bounds how long the sweep and the
		 * quiescent report wait. Without them, timed sleeps doubling
		 * up to the cap: the first packet or command after a quiet
		 * spell waits at most that long, plus the host's wake-up
		 * latency. Commands end either sleep with a signal (cmd.h). */
		uint64_t slept;
		if (wait_fds) {
			uint64_t t0 = rte_get_tsc_cycles();
			struct timespec ts = {w->idle_sleep_max_us / 1000000,
					      (long)(w->idle_sleep_max_us % 1000000) * 1000};
			struct epoll_event ev[2];
			int k = epfd < 0 ? -1 : epoll_pwait2(epfd, ev, 2, &ts, NULL);
			if (k > 0) {
				/* The next iteration reads the tap only if it
				 * is readable: a tap read is a readv(2), and
				 * most wake-ups are the NIC's. The NIC is read
				 * on every iteration (a look at its ring): the
				 * frames it received before a tap read must be
				 * decided first (overlap guard, above). */
				tap_ready = 0;
				for (int i = 0; i < k; i++)
					if (ev[i].data.u32 == 1)
						tap_ready = 1;
			} else if (k < 0 && (epfd < 0 || errno == ENOSYS)) {
				if (epfd >= 0) {
					close(epfd);
					epfd = -1;
				}
				ppoll(pfd, 2, &ts, NULL);
			}
			slept = (rte_get_tsc_cycles() - t0) / tsc_per_us;
		} else {
			struct timespec ts = {sleep_us / 1000000,
					      (long)(sleep_us % 1000000) * 1000};
			nanosleep(&ts, NULL);
			slept = sleep_us;
			if (sleep_us < w->idle_sleep_max_us)
				sleep_us = sleep_us * 2 > w->idle_sleep_max_us
						   ? w->idle_sleep_max_us
						   : sleep_us * 2;
		}
		w->idle_sleeps++;
		w->sleep_us += slept;
		spell_slept += slept;
		woke = 1;
	}
	if (epfd >= 0)
		close(epfd);
	atomic_store_explicit(&w->running, 0, memory_order_release);
	return 0;
}
