/*
 * C side of package dpdk (github.com/shoal-lb/shoal/cgo).
 *
 * Every helper here does one whole control operation and returns its
 * outcome by value: the DPDK return code, the errno (rte_errno is a
 * thread-local variable, so it must be read in the same C call as the
 * operation that set it) and the DPDK log lines this thread emitted during
 * the call. No helper keeps a pointer to Go memory; strings handed back in
 * a shoal_res (log) are malloc'd and freed by the Go side.
 */
#ifndef SHOAL_DPDK_H
#define SHOAL_DPDK_H

#include <stdint.h>
#include <stdlib.h>

struct rte_mempool;
struct rte_ring;
struct rte_eth_xstat_name;

/* Outcome of an operation that may fail. */
typedef struct {
	int rc;    /* DPDK's return value (negative errno for ethdev calls) */
	int err;   /* positive errno: -rc, or rte_errno when rc carries none */
	int stage; /* which step failed, for multi-step helpers (SHOAL_STAGE_*) */
	int queue; /* queue index for queue setup stages */
	void *ptr; /* object created, if any */
	char *log; /* malloc'd DPDK log text emitted by this thread, or NULL */
} shoal_res;

enum {
	SHOAL_STAGE_NONE = 0,
	SHOAL_STAGE_CONFIGURE,
	SHOAL_STAGE_ADJUST_DESC,
	SHOAL_STAGE_RXQ,
	SHOAL_STAGE_TXQ,
	SHOAL_STAGE_INFO,
	SHOAL_STAGE_STOP,
	SHOAL_STAGE_CLOSE,
	SHOAL_STAGE_REMOVE,
	SHOAL_STAGE_PARSE,
	SHOAL_STAGE_PROBE,
	SHOAL_STAGE_FIND,
};

/* EAL */
shoal_res shoal_eal_init(int argc, char **argv);
shoal_res shoal_eal_cleanup(void);
const char *shoal_runtime_dir(void);
int shoal_next_worker(int prev); /* -1 to start; returns -1 at the end */
unsigned shoal_main_lcore(void);
int shoal_main_socket(void);
int shoal_lcore_is_worker(unsigned lcore);
int shoal_lcore_running(unsigned lcore);
shoal_res shoal_remote_launch(void *fn, void *arg, unsigned lcore);
int shoal_wait_lcore(unsigned lcore);
const char *shoal_strerror(int err);

/* mempool and ring */
shoal_res shoal_pktmbuf_pool_create(const char *name, unsigned n, unsigned cache, uint16_t data_room);
void shoal_mempool_free(struct rte_mempool *mp);
unsigned shoal_mempool_avail(const struct rte_mempool *mp);
unsigned shoal_mempool_in_use(const struct rte_mempool *mp);
shoal_res shoal_ring_create(const char *name, unsigned size, int sp, int sc);
void shoal_ring_free(struct rte_ring *r);
unsigned shoal_ring_count(const struct rte_ring *r);
unsigned shoal_ring_capacity(const struct rte_ring *r);

/* ethdev */
typedef struct {
	shoal_res res;
	uint16_t port;
	char name[64];
} shoal_open_res;

typedef struct {
	int rc;
	uint8_t addr[6];
} shoal_mac;

typedef struct {
	int rc;
	int up;
	int full_duplex;
	uint32_t speed;
} shoal_link;

typedef struct {
	int rc;
	uint64_t ipackets, opackets, ibytes, obytes;
	uint64_t imissed, ierrors, oerrors, rx_nombuf;
} shoal_stats;

typedef struct {
	int rc;
	int n;
	char *names;      /* n names, SHOAL_XSTAT_NAME_LEN bytes each */
	uint64_t *values; /* n values, same order as names */
} shoal_xstats;

#define SHOAL_XSTAT_NAME_LEN 64

shoal_open_res shoal_port_open(const char *devargs);
shoal_res shoal_port_configure(uint16_t port, uint16_t nrxq, uint16_t ntxq,
			       uint16_t nrxd, uint16_t ntxd,
			       struct rte_mempool *mp, uint16_t mtu, int rx_csum,
			       int rx_wait);
/* The driver's name (rte_eth_dev_info.driver_name) into buf; 0 or a
 * negative errno. */
int shoal_port_driver(uint16_t port, char *buf, size_t len);
/* The file descriptor of receive queue q's interrupt (valid once the port
 * started with rx_wait on a driver that has one), or a negative errno. */
int shoal_port_rx_intr_fd(uint16_t port, uint16_t q);
shoal_res shoal_port_start(uint16_t port);
shoal_res shoal_port_stop(uint16_t port);
shoal_res shoal_port_close(uint16_t port);
shoal_mac shoal_port_mac(uint16_t port);
int shoal_port_promisc(uint16_t port, int on);
int shoal_port_allmulti(uint16_t port, int on);
shoal_link shoal_port_link(uint16_t port);
shoal_stats shoal_port_stats(uint16_t port);
shoal_xstats shoal_port_xstats(uint16_t port);
void shoal_xstats_free(shoal_xstats x);

/* self-test (see selftest.go) */
void *shoal_probe_fn(void);
int *shoal_probe_arg_new(int in);
int shoal_probe_arg_lcore(const int *arg);
typedef struct {
	unsigned tx, rx;
} shoal_pump;
shoal_pump shoal_selftest_pump(uint16_t port, struct rte_mempool *mp, unsigned n);
/* Receives one burst from queue 0 of port and frees it; returns its size. */
unsigned shoal_selftest_rx_drop(uint16_t port);

#endif
