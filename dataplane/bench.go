package dataplane

/*
#include <stdlib.h>
#include "bench.h"
#include "worker.h"

static void *sdp_bench_fn(void) { return (void *)sdp_bench_main; }
static void *sdp_bench_tx_fn(void) { return (void *)sdp_bench_tx_main; }
*/
import "C"

import (
	"fmt"
	"time"
	"unsafe"

	dpdk "github.com/shoal-lb/shoal/cgo"
)

// BenchResult is one run of the benchmark loop.
type BenchResult struct {
	Packets   uint64
	Seconds   float64
	CPUSecs   float64 // the lcore thread's CPU time over the run
	Delivered uint64  // frames the classifier sent on (tap or NIC)
}

// Mpps is the packet rate in millions per second.
func (r BenchResult) Mpps() float64 { return float64(r.Packets) / r.Seconds / 1e6 }

// CPUMpps is the packet rate in millions per second of the thread's CPU
// time: the time other threads took the CPU from it does not count.
func (r BenchResult) CPUMpps() float64 { return float64(r.Packets) / r.CPUSecs / 1e6 }

// FillPool writes frame templates into every mbuf of pool (len(frames)
// must equal the pool's size, and the pool must have no per-lcore cache),
// so that a net_null port on the pool replays them in order.
func FillPool(pool *dpdk.Mempool, frames [][]byte, frameLen int) error {
	return fillPool(pool, nil, frames, frameLen)
}

func fillPool(pool *dpdk.Mempool, frees *C.struct_rte_mempool, frames [][]byte, frameLen int) error {
	buf := make([]byte, len(frames)*frameLen)
	for i, f := range frames {
		copy(buf[i*frameLen:(i+1)*frameLen], f)
	}
	cbuf := C.CBytes(buf)
	defer C.free(cbuf)
	rc := C.sdp_bench_fill_pool((*C.struct_rte_mempool)(pool.Ptr()), frees, (*C.uint8_t)(cbuf),
		C.uint32_t(len(frames)), C.uint16_t(frameLen))
	if rc != 0 {
		return fmt.Errorf("bench: filling pool %s with %d frames: error %d", pool.Name, len(frames), -rc)
	}
	return nil
}

// ReplayPool holds frame templates that a net_null port on Pool receives
// in order, over and over, and frees them as the node's pool does: into a
// per-lcore cache of Cache mbufs, flushed to Pool's ring in bulk
// (sdp_bench_free_pool in bench.c). Pool itself has no cache, so the port
// still takes every template in turn.
type ReplayPool struct {
	Pool  *dpdk.Mempool
	Cache uint32
	frees *C.struct_rte_mempool
}

// NewReplayPool makes a ReplayPool named name (at most 23 characters) of
// len(frames) mbufs with dataRoom bytes each, holding frames (frameLen
// bytes each). With cache 0, or fewer frames than 1.5 × cache, frees go
// straight to the ring.
func NewReplayPool(name string, frames [][]byte, frameLen int, dataRoom uint16, cache uint32) (*ReplayPool, error) {
	pool, err := dpdk.NewPktMempool(name, uint32(len(frames)), 0, dataRoom)
	if err != nil {
		return nil, err
	}
	p := &ReplayPool{Pool: pool}
	if cache > 0 && uint64(len(frames)) >= uint64(cache)*3/2 {
		cs := C.CString(name + "_f")
		rc := C.sdp_bench_free_pool((*C.struct_rte_mempool)(pool.Ptr()), cs, C.unsigned(cache), &p.frees)
		C.free(unsafe.Pointer(cs))
		if rc != 0 {
			pool.Free()
			return nil, fmt.Errorf("bench: the free side of replay pool %s (cache %d): error %d", name, cache, -rc)
		}
		p.Cache = cache
	}
	if err := fillPool(pool, p.frees, frames, frameLen); err != nil {
		p.Free()
		return nil, err
	}
	return p, nil
}

// Free returns the mbufs the caches hold to Pool and frees both pools. No
// port may use Pool any more, and no lcore may be freeing into it.
func (p *ReplayPool) Free() {
	if p == nil {
		return
	}
	C.sdp_bench_free_pool_release(p.frees)
	p.frees = nil
	p.Pool.Free()
}

// flush returns what the caches hold to Pool (for the tests).
func (p *ReplayPool) flush() { C.sdp_bench_free_pool_flush(p.frees) }

// Preload inserts established flows, given as client-side 4-tuples in
// network byte order packed as 12 bytes each, without packets.
func (cc *CClassifier) Preload(keys []byte) int {
	n := len(keys) / 12
	ck := C.CBytes(keys)
	defer C.free(ck)
	return int(C.sdp_bench_preload(cc.c, (*C.uint32_t)(ck), C.uint32_t(n), 0))
}

// Preload inserts established flows into the first worker's table, as
// CClassifier.Preload does, before Start: for the benchmarks and tests that
// need a full table without a million handshakes.
func (r *Runtime) Preload(keys []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || len(r.workers) == 0 {
		return 0, fmt.Errorf("dataplane: Preload needs an allocated runtime whose workers are not running")
	}
	ck := C.CBytes(keys)
	defer C.free(ck)
	return int(C.sdp_bench_preload(&r.workers[0].cls, (*C.uint32_t)(ck), C.uint32_t(len(keys)/12), C.sdp_now_ms())), nil
}

// PreloadHalfOpen inserts one half-open flow into the first worker's table
// before Start, as the SYN of t with the client's next sequence number
// clientNext would: for the tests that need the worker to start with a
// handshake open.
func (r *Runtime) PreloadHalfOpen(t Tuple, clientNext uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || len(r.workers) == 0 {
		return fmt.Errorf("dataplane: PreloadHalfOpen needs an allocated runtime whose workers are not running")
	}
	var a C.struct_sdp_cmd_args
	if err := r.key(&a, t); err != nil {
		return err
	}
	if rc := C.sdp_bench_preload_half_open(&r.workers[0].cls, a.saddr, a.daddr, a.sport, a.dport,
		C.uint32_t(clientNext), C.sdp_now_ms()); rc != 0 {
		return fmt.Errorf("dataplane: PreloadHalfOpen %v: error %d", t, -rc)
	}
	return nil
}

// EmptyPollNs is the cost, in nanoseconds, of the check the worker's loop
// makes once per iteration for commands when none wait: n checks in a
// loop minus the same loop without them, on the calling thread, with the
// workers stopped.
func (r *Runtime) EmptyPollNs(n uint64) (float64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || len(r.workers) == 0 {
		return 0, fmt.Errorf("dataplane: EmptyPollNs needs an allocated runtime whose workers are stopped")
	}
	w := r.workers[0]
	C.sdp_bench_cmd_poll(w, C.uint64_t(n/10), 1) // warm up
	with := uint64(C.sdp_bench_cmd_poll(w, C.uint64_t(n), 1))
	without := uint64(C.sdp_bench_cmd_poll(w, C.uint64_t(n), 0))
	if with == 0 {
		return 0, fmt.Errorf("dataplane: EmptyPollNs: the command ring is not empty")
	}
	return (float64(with) - float64(without)) / float64(n) / r.tscHz * 1e9, nil
}

// Limit is one of the benchmark's reference loops (enum sdp_bench_mode).
type Limit int

const (
	BareLoop   Limit = 0 // rx → free
	HeaderLoop Limit = 1 // rx → read Ethernet, IPv4, TCP headers → free
	SYNFloor   Limit = 2 // the header loop, the connection value, the ownership test, owned SYNs → tap (BenchFloor)
)

// BenchLimit runs the bare or the header loop on lcore for d over port.
func BenchLimit(lcore uint, port *dpdk.Port, mode Limit, d time.Duration) (BenchResult, error) {
	if mode == SYNFloor {
		return BenchResult{}, fmt.Errorf("bench: the SYN floor runs through BenchFloor")
	}
	return benchLimit(lcore, port, mode, d, nil)
}

// BenchFloor runs the SYN floor on lcore for d over port: every frame's
// headers read, its connection value (ConnValue under seed) computed and
// its bucket looked up in own; the SYNs of owned buckets go out through
// tap, as the worker sends them to its kernel, the rest are freed. No flow
// table, no checksum: the least the mission demands of a SYN classifier.
// Delivered counts the frames tap took.
func BenchFloor(lcore uint, port, tap *dpdk.Port, seed uint32, own *Ownership, d time.Duration) (BenchResult, error) {
	bits := (*C.uint64_t)(C.malloc(C.size_t(len(own) * 8)))
	defer C.free(unsafe.Pointer(bits))
	copy(unsafe.Slice((*uint64)(unsafe.Pointer(bits)), len(own)), own[:])
	return benchLimit(lcore, port, SYNFloor, d, func(b *C.struct_sdp_bench) {
		b.tx_port = C.uint16_t(tap.ID)
		b.seed = C.uint32_t(seed)
		b.owner = bits
	})
}

func benchLimit(lcore uint, port *dpdk.Port, mode Limit, d time.Duration, set func(*C.struct_sdp_bench)) (BenchResult, error) {
	b := (*C.struct_sdp_bench)(C.calloc(1, C.sizeof_struct_sdp_bench))
	defer C.free(unsafe.Pointer(b))
	b.mode = C.int(mode)
	b.rx_port = C.uint16_t(port.ID)
	b.duration_ms = C.uint64_t(d.Milliseconds())
	if set != nil {
		set(b)
	}
	if err := dpdk.LaunchOnLcore(lcore, C.sdp_bench_fn(), unsafe.Pointer(b)); err != nil {
		return BenchResult{}, err
	}
	dpdk.WaitLcore(lcore)
	return BenchResult{Packets: uint64(b.packets), Seconds: float64(b.cycles) / float64(b.hz),
		CPUSecs: float64(b.cpu_ns) / 1e9, Delivered: uint64(b.delivered)}, nil
}

// BenchSend sends rx's frames (a replay port) out through tx from lcore
// for d, as fast as tx takes them: the load generator of the kernel peer's
// benchmark. It returns the frames tx accepted and those it refused.
func BenchSend(lcore uint, rx, tx *dpdk.Port, d time.Duration) (sent, refused uint64, err error) {
	b := (*C.struct_sdp_bench_tx)(C.calloc(1, C.sizeof_struct_sdp_bench_tx))
	defer C.free(unsafe.Pointer(b))
	b.rx_port, b.tx_port = C.uint16_t(rx.ID), C.uint16_t(tx.ID)
	b.duration_ms = C.uint64_t(d.Milliseconds())
	if err := dpdk.LaunchOnLcore(lcore, C.sdp_bench_tx_fn(), unsafe.Pointer(b)); err != nil {
		return 0, 0, err
	}
	dpdk.WaitLcore(lcore)
	return uint64(b.sent), uint64(b.refused), nil
}
