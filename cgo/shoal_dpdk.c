/*
 * C side of package dpdk. See shoal_dpdk.h for the conventions.
 */
#define _GNU_SOURCE
/* rte_devargs_reset() is still marked experimental in 22.11. */
#define ALLOW_EXPERIMENTAL_API
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rte_common.h>
#include <rte_dev.h>
#include <rte_devargs.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

#include "shoal_dpdk.h"

_Static_assert(sizeof(((shoal_open_res *)0)->name) >= RTE_ETH_NAME_MAX_LEN,
	       "shoal_open_res.name too small");

/*
 * Log capture. DPDK writes its log through one FILE*. We install a
 * fopencookie stream that copies every line to stderr or, while the
 * current thread is inside a helper below, also into a thread-local buffer
 * so the error returned to Go can carry DPDK's own explanation. Only the
 * calling thread's lines are captured, so concurrent helpers on other
 * threads (and DPDK's own threads) do not mix into each other's errors.
 */
#define CAP_MAX 2048
static __thread char cap_buf[CAP_MAX];
static __thread size_t cap_len;
static __thread int cap_on;

static ssize_t
log_write(void *cookie, const char *buf, size_t size)
{
	size_t off = 0;

	(void)cookie;
	/* Lines captured for a helper's result are not echoed here: a failed
	 * call returns them inside its error (one message, not a log spray),
	 * and a successful one has Go echo them (freeLog). */
	while (!cap_on && off < size) {
		ssize_t n = write(STDERR_FILENO, buf + off, size - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (cap_on && cap_len < CAP_MAX - 1) {
		size_t n = size;
		if (n > CAP_MAX - 1 - cap_len)
			n = CAP_MAX - 1 - cap_len;
		memcpy(cap_buf + cap_len, buf, n);
		cap_len += n;
	}
	return (ssize_t)size;
}

static void
log_stream_install(void)
{
	static FILE *f;
	cookie_io_functions_t io = { .write = log_write };

	if (f != NULL)
		return;
	f = fopencookie(NULL, "w", io);
	if (f == NULL)
		return; /* keep DPDK's default stream */
	setvbuf(f, NULL, _IOLBF, 0);
	rte_openlog_stream(f);
}

static void
cap_begin(void)
{
	cap_len = 0;
	cap_on = 1;
}

static char *
cap_end(void)
{
	char *s = NULL;

	cap_on = 0;
	if (cap_len > 0) {
		s = malloc(cap_len + 1);
		if (s != NULL) {
			memcpy(s, cap_buf, cap_len);
			s[cap_len] = '\0';
		}
	}
	cap_len = 0;
	return s;
}

/* fail fills res for a failed call; rc < 0 is taken as -errno. */
static void
fail(shoal_res *res, int rc, int stage)
{
	res->rc = rc;
	res->stage = stage;
	if (rc < 0 && rc != -1)
		res->err = -rc;
	else
		res->err = rte_errno;
	if (res->err == 0)
		res->err = EIO;
}

const char *
shoal_strerror(int err)
{
	return rte_strerror(err);
}

/* ---- EAL ---- */

shoal_res
shoal_eal_init(int argc, char **argv)
{
	shoal_res res = { 0 };
	int rc;

	log_stream_install();
	cap_begin();
	rc = rte_eal_init(argc, argv);
	if (rc < 0)
		fail(&res, -1, SHOAL_STAGE_NONE); /* rte_eal_init sets rte_errno */
	else
		res.rc = rc;
	res.log = cap_end();
	return res;
}

const char *
shoal_runtime_dir(void)
{
	return rte_eal_get_runtime_dir();
}

shoal_res
shoal_eal_cleanup(void)
{
	shoal_res res = { 0 };
	int rc;

	cap_begin();
	rc = rte_eal_cleanup();
	if (rc < 0)
		fail(&res, rc, SHOAL_STAGE_NONE);
	res.log = cap_end();
	return res;
}

int
shoal_next_worker(int prev)
{
	unsigned i = rte_get_next_lcore(prev < 0 ? (unsigned)-1 : (unsigned)prev, 1, 0);

	return i >= RTE_MAX_LCORE ? -1 : (int)i;
}

unsigned
shoal_main_lcore(void)
{
	return rte_get_main_lcore();
}

int
shoal_main_socket(void)
{
	return (int)rte_lcore_to_socket_id(rte_get_main_lcore());
}

int
shoal_lcore_is_worker(unsigned lcore)
{
	return lcore < RTE_MAX_LCORE && rte_lcore_is_enabled(lcore) &&
	       lcore != rte_get_main_lcore();
}

int
shoal_lcore_running(unsigned lcore)
{
	return rte_eal_get_lcore_state(lcore) == RUNNING;
}

shoal_res
shoal_remote_launch(void *fn, void *arg, unsigned lcore)
{
	shoal_res res = { 0 };
	int rc;

	cap_begin();
	rc = rte_eal_remote_launch((lcore_function_t *)fn, arg, lcore);
	if (rc < 0)
		fail(&res, rc, SHOAL_STAGE_NONE);
	res.log = cap_end();
	return res;
}

int
shoal_wait_lcore(unsigned lcore)
{
	return rte_eal_wait_lcore(lcore);
}

/* ---- mempool and ring ---- */

shoal_res
shoal_pktmbuf_pool_create(const char *name, unsigned n, unsigned cache, uint16_t data_room)
{
	shoal_res res = { 0 };

	cap_begin();
	res.ptr = rte_pktmbuf_pool_create(name, n, cache, 0, data_room, SOCKET_ID_ANY);
	if (res.ptr == NULL)
		fail(&res, -1, SHOAL_STAGE_NONE);
	res.log = cap_end();
	return res;
}

void
shoal_mempool_free(struct rte_mempool *mp)
{
	rte_mempool_free(mp);
}

unsigned
shoal_mempool_avail(const struct rte_mempool *mp)
{
	return rte_mempool_avail_count(mp);
}

unsigned
shoal_mempool_in_use(const struct rte_mempool *mp)
{
	return rte_mempool_in_use_count(mp);
}

shoal_res
shoal_ring_create(const char *name, unsigned size, int sp, int sc)
{
	shoal_res res = { 0 };
	unsigned flags = 0;

	if (sp)
		flags |= RING_F_SP_ENQ;
	if (sc)
		flags |= RING_F_SC_DEQ;
	cap_begin();
	res.ptr = rte_ring_create(name, size, SOCKET_ID_ANY, flags);
	if (res.ptr == NULL)
		fail(&res, -1, SHOAL_STAGE_NONE);
	res.log = cap_end();
	return res;
}

void
shoal_ring_free(struct rte_ring *r)
{
	rte_ring_free(r);
}

unsigned
shoal_ring_count(const struct rte_ring *r)
{
	return rte_ring_count(r);
}

unsigned
shoal_ring_capacity(const struct rte_ring *r)
{
	return rte_ring_get_capacity(r);
}

/* ---- ethdev ---- */

/*
 * Find the first ethdev port whose rte_device is called name. The device
 * name comes from rte_devargs_parse, so a short PCI address ("03:00.0")
 * is matched in its canonical form ("0000:03:00.0").
 */
static int
port_of_device(const char *name, uint16_t *port)
{
	uint16_t p;

	RTE_ETH_FOREACH_DEV(p) {
		struct rte_eth_dev_info info;

		if (rte_eth_dev_info_get(p, &info) != 0 || info.device == NULL)
			continue;
		if (strcmp(rte_dev_name(info.device), name) == 0) {
			*port = p;
			return 0;
		}
	}
	return -ENODEV;
}

shoal_open_res
shoal_port_open(const char *devargs)
{
	shoal_open_res out = { 0 };
	struct rte_devargs da;
	int rc;

	memset(&da, 0, sizeof(da));
	cap_begin();
	rc = rte_devargs_parse(&da, devargs);
	if (rc < 0) {
		fail(&out.res, rc, SHOAL_STAGE_PARSE);
		goto done;
	}
	/* A device already probed (e.g. given to the EAL as --vdev) is
	 * adopted; probing it again would fail with EEXIST. */
	if (port_of_device(da.name, &out.port) == 0)
		goto found;
	rc = rte_dev_probe(devargs);
	if (rc < 0 && rc != -EEXIST) {
		fail(&out.res, rc, SHOAL_STAGE_PROBE);
		goto done;
	}
	rc = port_of_device(da.name, &out.port);
	if (rc < 0) {
		fail(&out.res, rc, SHOAL_STAGE_FIND);
		goto done;
	}
found:
	if (rte_eth_dev_get_name_by_port(out.port, out.name) != 0)
		snprintf(out.name, sizeof(out.name), "%s", da.name);
done:
	rte_devargs_reset(&da);
	out.res.log = cap_end();
	return out;
}

shoal_res
shoal_port_configure(uint16_t port, uint16_t nrxq, uint16_t ntxq,
		     uint16_t nrxd, uint16_t ntxd,
		     struct rte_mempool *mp, uint16_t mtu, int rx_csum,
		     int rx_wait)
{
	shoal_res res = { 0 };
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	const uint64_t csum = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM |
			      RTE_ETH_RX_OFFLOAD_TCP_CKSUM;
	int socket;
	int rc;
	uint16_t q;

	memset(&conf, 0, sizeof(conf));
	if (mtu != 0)
		conf.rxmode.mtu = mtu;
	memset(&info, 0, sizeof(info));
	rte_eth_dev_info_get(port, &info);
	if (rx_csum && (info.rx_offload_capa & csum) == csum)
		conf.rxmode.offloads |= csum;
	/* Receive-queue interrupts only where the interrupt's file descriptor
	 * is the queue itself, readable while it holds packets: net_tap's
	 * queue fds. A hardware PMD's interrupt is an eventfd that must be
	 * armed before each wait and drained after it; nothing here does
	 * that yet, so it is not asked for. */
	if (rx_wait && info.driver_name != NULL &&
	    strcmp(info.driver_name, "net_tap") == 0)
		conf.intr_conf.rxq = 1;
	cap_begin();
	rc = rte_eth_dev_configure(port, nrxq, ntxq, &conf);
	if (rc < 0) {
		fail(&res, rc, SHOAL_STAGE_CONFIGURE);
		goto done;
	}
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrxd, &ntxd);
	if (rc < 0) {
		fail(&res, rc, SHOAL_STAGE_ADJUST_DESC);
		goto done;
	}
	socket = rte_eth_dev_socket_id(port);
	if (socket < 0)
		socket = SOCKET_ID_ANY;
	for (q = 0; q < nrxq; q++) {
		rc = rte_eth_rx_queue_setup(port, q, nrxd, socket, NULL, mp);
		if (rc < 0) {
			fail(&res, rc, SHOAL_STAGE_RXQ);
			res.queue = q;
			goto done;
		}
	}
	for (q = 0; q < ntxq; q++) {
		rc = rte_eth_tx_queue_setup(port, q, ntxd, socket, NULL);
		if (rc < 0) {
			fail(&res, rc, SHOAL_STAGE_TXQ);
			res.queue = q;
			goto done;
		}
	}
done:
	res.log = cap_end();
	return res;
}

int
shoal_port_driver(uint16_t port, char *buf, size_t len)
{
	struct rte_eth_dev_info info;
	int rc;

	memset(&info, 0, sizeof(info));
	rc = rte_eth_dev_info_get(port, &info);
	if (rc < 0)
		return rc;
	snprintf(buf, len, "%s", info.driver_name ? info.driver_name : "");
	return 0;
}

int
shoal_port_rx_intr_fd(uint16_t port, uint16_t q)
{
	return rte_eth_dev_rx_intr_ctl_q_get_fd(port, q);
}

shoal_res
shoal_port_start(uint16_t port)
{
	shoal_res res = { 0 };
	int rc;

	cap_begin();
	rc = rte_eth_dev_start(port);
	if (rc < 0)
		fail(&res, rc, SHOAL_STAGE_NONE);
	res.log = cap_end();
	return res;
}

shoal_res
shoal_port_stop(uint16_t port)
{
	shoal_res res = { 0 };
	int rc;

	cap_begin();
	rc = rte_eth_dev_stop(port);
	if (rc < 0)
		fail(&res, rc, SHOAL_STAGE_STOP);
	res.log = cap_end();
	return res;
}

/*
 * Stop, close and remove the port's device. Removing the rte_device is what
 * makes hot-plugged vdevs go away for good (a net_tap's kernel interface,
 * an af_packet socket) and frees the name for a later OpenPort.
 */
shoal_res
shoal_port_close(uint16_t port)
{
	shoal_res res = { 0 };
	struct rte_eth_dev_info info;
	struct rte_device *dev;
	uint16_t p;
	int rc;

	cap_begin();
	rc = rte_eth_dev_info_get(port, &info);
	if (rc < 0) {
		fail(&res, rc, SHOAL_STAGE_INFO);
		goto done;
	}
	dev = info.device;
	rc = rte_eth_dev_stop(port);
	if (rc < 0 && rc != -ENOTSUP) {
		fail(&res, rc, SHOAL_STAGE_STOP);
		goto done;
	}
	rc = rte_eth_dev_close(port);
	if (rc < 0) {
		fail(&res, rc, SHOAL_STAGE_CLOSE);
		goto done;
	}
	/* Keep the device if it still has other ports (multi-port NICs). */
	RTE_ETH_FOREACH_DEV_OF(p, dev)
		goto done;
	rc = rte_dev_remove(dev);
	if (rc < 0)
		fail(&res, rc, SHOAL_STAGE_REMOVE);
done:
	res.log = cap_end();
	return res;
}

shoal_mac
shoal_port_mac(uint16_t port)
{
	shoal_mac out = { 0 };
	struct rte_ether_addr a;

	out.rc = rte_eth_macaddr_get(port, &a);
	if (out.rc == 0)
		memcpy(out.addr, a.addr_bytes, sizeof(out.addr));
	return out;
}

int
shoal_port_promisc(uint16_t port, int on)
{
	return on ? rte_eth_promiscuous_enable(port) : rte_eth_promiscuous_disable(port);
}

int
shoal_port_allmulti(uint16_t port, int on)
{
	return on ? rte_eth_allmulticast_enable(port) : rte_eth_allmulticast_disable(port);
}

shoal_link
shoal_port_link(uint16_t port)
{
	shoal_link out = { 0 };
	struct rte_eth_link l;

	memset(&l, 0, sizeof(l));
	out.rc = rte_eth_link_get_nowait(port, &l);
	if (out.rc == 0) {
		out.up = l.link_status == RTE_ETH_LINK_UP;
		out.full_duplex = l.link_duplex == RTE_ETH_LINK_FULL_DUPLEX;
		out.speed = l.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN ? 0 : l.link_speed;
	}
	return out;
}

shoal_stats
shoal_port_stats(uint16_t port)
{
	shoal_stats out = { 0 };
	struct rte_eth_stats s;

	out.rc = rte_eth_stats_get(port, &s);
	if (out.rc == 0) {
		out.ipackets = s.ipackets;
		out.opackets = s.opackets;
		out.ibytes = s.ibytes;
		out.obytes = s.obytes;
		out.imissed = s.imissed;
		out.ierrors = s.ierrors;
		out.oerrors = s.oerrors;
		out.rx_nombuf = s.rx_nombuf;
	}
	return out;
}

shoal_xstats
shoal_port_xstats(uint16_t port)
{
	shoal_xstats out = { 0 };
	struct rte_eth_xstat_name *names = NULL;
	struct rte_eth_xstat *vals = NULL;
	int n, got, i, try;

	RTE_BUILD_BUG_ON(SHOAL_XSTAT_NAME_LEN != RTE_ETH_XSTATS_NAME_SIZE);
	/* The count can change between calls (queues reconfigured): retry. */
	for (try = 0; try < 4; try++) {
		n = rte_eth_xstats_get_names(port, NULL, 0);
		if (n < 0) {
			out.rc = n;
			return out;
		}
		if (n == 0)
			return out;
		free(names);
		free(vals);
		names = calloc((size_t)n, sizeof(*names));
		vals = calloc((size_t)n, sizeof(*vals));
		if (names == NULL || vals == NULL) {
			out.rc = -ENOMEM;
			goto fail;
		}
		got = rte_eth_xstats_get_names(port, names, (unsigned)n);
		if (got < 0) {
			out.rc = got;
			goto fail;
		}
		if (got > n)
			continue;
		got = rte_eth_xstats_get(port, vals, (unsigned)n);
		if (got < 0) {
			out.rc = got;
			goto fail;
		}
		if (got > n)
			continue;
		out.names = (char *)names;
		out.values = malloc((size_t)n * sizeof(uint64_t));
		if (out.values == NULL) {
			out.rc = -ENOMEM;
			out.names = NULL;
			goto fail;
		}
		/* Order values like names; xstats[i].id indexes the names. */
		for (i = 0; i < n; i++)
			out.values[i] = 0;
		for (i = 0; i < got; i++)
			if (vals[i].id < (uint64_t)n)
				out.values[vals[i].id] = vals[i].value;
		out.n = n;
		free(vals);
		return out;
	}
	out.rc = -EAGAIN;
fail:
	free(names);
	free(vals);
	return out;
}

void
shoal_xstats_free(shoal_xstats x)
{
	free(x.names);
	free(x.values);
}

/* ---- self-test ---- */

/*
 * shoal_probe is the smallest lcore function: arg points to two ints
 * {in, lcore}; it stores the lcore it ran on and returns in + 1.
 */
static int
shoal_probe(void *arg)
{
	int *a = arg;

	a[1] = (int)rte_lcore_id();
	return a[0] + 1;
}

void *
shoal_probe_fn(void)
{
	return (void *)shoal_probe;
}

int *
shoal_probe_arg_new(int in)
{
	int *a = malloc(2 * sizeof(int));

	if (a != NULL) {
		a[0] = in;
		a[1] = -1;
	}
	return a;
}

int
shoal_probe_arg_lcore(const int *arg)
{
	return arg[1];
}

/*
 * shoal_selftest_pump sends n 64-byte frames from mp on queue 0 of port,
 * then receives until n frames came back or 1000 empty polls, freeing all.
 * Used by the tests on net_ring (loopback) and net_null (sink and source).
 */
shoal_pump
shoal_selftest_pump(uint16_t port, struct rte_mempool *mp, unsigned n)
{
	shoal_pump out = { 0 };
	struct rte_mbuf *b[32];
	unsigned idle = 0;

	while (out.tx < n) {
		unsigned k = n - out.tx < 32 ? n - out.tx : 32, i;
		uint16_t sent;

		if (rte_pktmbuf_alloc_bulk(mp, b, k) != 0)
			break;
		for (i = 0; i < k; i++) {
			char *p = rte_pktmbuf_append(b[i], 64);
			memset(p, 0, 64);
		}
		sent = rte_eth_tx_burst(port, 0, b, (uint16_t)k);
		for (i = sent; i < k; i++)
			rte_pktmbuf_free(b[i]);
		out.tx += sent;
		if (sent == 0)
			break;
	}
	while (out.rx < n && idle < 1000) {
		uint16_t got = rte_eth_rx_burst(port, 0, b,
				n - out.rx < 32 ? (uint16_t)(n - out.rx) : 32);
		if (got == 0) {
			idle++;
			continue;
		}
		out.rx += got;
		rte_pktmbuf_free_bulk(b, got);
	}
	return out;
}

unsigned
shoal_selftest_rx_drop(uint16_t port)
{
	struct rte_mbuf *b[32];
	uint16_t got = rte_eth_rx_burst(port, 0, b, 32);

	if (got)
		rte_pktmbuf_free_bulk(b, got);
	return got;
}
