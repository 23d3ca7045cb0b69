package dataplane

/*
#include <stdlib.h>
#include <string.h>
#include "wanted.h"
#include "worker.h"

static void *sdp_worker_fn(void) { return (void *)sdp_worker_main; }
*/
import "C"

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/dataplane/report"
)

// MbufCache is the per-lcore cache of the node's packet pool (mbufs): a
// worker's frees (the drop path's in bulk, net_tap's one at a time) and its
// receives go through it instead of the pool's shared ring. The benchmark's
// replay pools free through a cache of the same size (ReplayPool).
const MbufCache = 256

// RuntimeConfig wires workers to devices.
type RuntimeConfig struct {
	Classifier ClassifierConfig
	NIC, Tap   *dpdk.Port
	// Lcores run one worker each. Each worker polls queue i of the NIC
	// and of the tap. A flow's packets in both directions must meet the
	// same worker, which one queue pair per device guarantees; this
	// release runs one worker per node.
	Lcores []uint
	// IdleSleepMax caps the worker's sleep when idle.
	IdleSleepMax time.Duration
	// Wanted, if not nil, is the in-kernel prefilter's bucket bitmap
	// (package prefilter, Filter.Wanted): memory outside the Go heap that
	// the worker keeps equal to owned | used buckets (wanted.h). It must
	// stay mapped until Free returns.
	Wanted *[WantedWords]uint64
}

// WantedWords is the size of the prefilter's bitmap in 64-bit words: one
// bit per bucket.
const WantedWords = 65536 / 64

// Runtime is the running data plane of a node: C workers on their lcores,
// an ownership table published by pointer swap, counters read from C
// memory. Its methods are safe for concurrent use.
type Runtime struct {
	mu      sync.Mutex
	shared  *C.struct_sdp_shared
	workers []*C.struct_sdp_worker
	lcores  []uint
	epoch   uint64
	started bool
	vip     netip.Addr
	tscHz   float64
	idle    []string // per worker: how it waits when idle (IdleWait)

	// use is held shared by every command from post to completion and
	// exclusively by Free, so no waiter outlives the rings it reads.
	use   sync.RWMutex
	posts []sync.Mutex // one per worker: its ring has a single producer
	freed bool
}

// clockOnce starts the worker clock (sdp_clock_init) once per process,
// before the first worker: flow deadlines are in that clock, so it must
// never restart while any runtime lives.
var (
	clockOnce sync.Once
	clockErr  error
)

func initClock() error {
	clockOnce.Do(func() {
		if rc := C.sdp_clock_init(); rc != 0 {
			clockErr = fmt.Errorf("dataplane: worker clock: the EAL reports no TSC rate (error %d); initialise the EAL first", -rc)
		}
	})
	return clockErr
}

// NewRuntime allocates the workers and their flow tables in C memory.
func NewRuntime(cfg RuntimeConfig) (*Runtime, error) {
	if err := cfg.Classifier.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Lcores) != 1 {
		return nil, fmt.Errorf("dataplane: %d worker lcores given; this release runs exactly one worker per node", len(cfg.Lcores))
	}
	if err := initClock(); err != nil {
		return nil, err
	}
	r := &Runtime{lcores: cfg.Lcores, vip: cfg.Classifier.VIP, tscHz: float64(C.sdp_tsc_hz())}
	r.posts = make([]sync.Mutex, len(cfg.Lcores))
	r.shared = (*C.struct_sdp_shared)(C.calloc(1, C.sizeof_struct_sdp_shared))
	for i := range cfg.Lcores {
		w := C.sdp_worker_alloc()
		if w == nil {
			r.Free()
			return nil, fmt.Errorf("dataplane: worker %d: out of memory", i)
		}
		fillClassifier(&w.cls, cfg.Classifier)
		if rc := C.sdp_classifier_init(&w.cls, C.uint32_t(cfg.Classifier.MaxFlows), C.uint32_t(cfg.Classifier.MaxHalfOpen)); rc != 0 {
			C.free(unsafe.Pointer(w))
			r.Free()
			return nil, fmt.Errorf("dataplane: flow table of %d flows: error %d", cfg.Classifier.MaxFlows, -rc)
		}
		if cfg.Wanted != nil {
			w.cls.flows.wanted = newWanted(cfg.Wanted)
		}
		w.shared = r.shared
		w.nic_port = C.uint16_t(cfg.NIC.ID)
		w.tap_port = C.uint16_t(cfg.Tap.ID)
		w.nic_queue = C.uint16_t(i)
		w.tap_queue = C.uint16_t(i)
		us := cfg.IdleSleepMax.Microseconds()
		if us < 1 {
			us = 1
		}
		w.idle_sleep_max_us = C.uint32_t(us)
		r.idle = append(r.idle, setWaitFDs(w, cfg.NIC, cfg.Tap, uint16(i)))
		r.workers = append(r.workers, w)
	}
	return r, nil
}

// setWaitFDs gives worker w the file descriptors of its two receive
// queues when both devices have one (the ports must have started), and
// returns how the worker will wait when idle: "fds" (until a packet comes,
// at most the cap) or "timed: <why>" (sleeps of fixed length).
func setWaitFDs(w *C.struct_sdp_worker, nic, tap *dpdk.Port, q uint16) string {
	if nic == nil || tap == nil {
		return "timed: no ports"
	}
	nfd, err := nic.RxWaitFD(q)
	if err != nil {
		return "timed: NIC: " + err.Error()
	}
	tfd, err := tap.RxWaitFD(q)
	if err != nil {
		return "timed: tap: " + err.Error()
	}
	w.nic_fd, w.tap_fd = C.int(nfd), C.int(tfd)
	return IdleWaitFDs
}

// IdleWaitFDs is IdleWait's answer for a worker that sleeps on its
// devices' file descriptors.
const IdleWaitFDs = "fds"

// IdleWait says, per worker, how it sleeps when idle: IdleWaitFDs, or
// "timed: " and the reason the devices gave no file descriptor.
func (r *Runtime) IdleWait() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.idle...)
}

// Publish swaps in a new ownership table and frees the old one once every
// running worker has passed a quiescent point (loaded the new pointer).
// It returns the new epoch.
func (r *Runtime) Publish(o *Ownership) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.epoch++
	t := (*C.struct_sdp_owner_table)(C.calloc(1, C.sizeof_struct_sdp_owner_table))
	t.epoch = C.uint64_t(r.epoch)
	copy(unsafe.Slice((*uint64)(unsafe.Pointer(&t.bits[0])), len(o)), o[:])
	old := C.sdp_publish(r.shared, t)
	if old != nil {
		for C.sdp_quiescent(&r.workers[0], C.uint32_t(len(r.workers)), C.uint64_t(r.epoch)) == 0 {
			time.Sleep(50 * time.Microsecond)
		}
		C.free(unsafe.Pointer(old))
	}
	return r.epoch
}

// Epoch is the epoch of the last published table.
func (r *Runtime) Epoch() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch
}

// Start launches the workers.
func (r *Runtime) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, w := range r.workers {
		// Marked running before the launch, so that a table swap racing
		// with the worker's first iteration waits for it.
		C.sdp_worker_set_running(w, 1)
		C.sdp_worker_set_stop(w, 0)
		if err := dpdk.LaunchOnLcore(r.lcores[i], C.sdp_worker_fn(), unsafe.Pointer(w)); err != nil {
			C.sdp_worker_set_running(w, 0)
			r.stopLocked()
			return fmt.Errorf("dataplane: worker %d: %w", i, err)
		}
	}
	r.started = true
	return nil
}

// Stop asks every worker to return and waits for it.
func (r *Runtime) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
}

func (r *Runtime) stopLocked() {
	for _, w := range r.workers {
		C.sdp_worker_set_stop(w, 1)
	}
	for i, w := range r.workers {
		if C.sdp_worker_running(w) != 0 || r.started {
			dpdk.WaitLcore(r.lcores[i])
		}
	}
	r.started = false
}

// Free releases the workers' memory, their command rings included; call
// after Stop. It waits for commands still waiting on a ring (they return
// at once once the workers are stopped).
func (r *Runtime) Free() {
	r.use.Lock()
	defer r.use.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		C.sdp_cmd_ring_free(&w.cmds)
		C.free(unsafe.Pointer(w.cls.flows.wanted))
		C.sdp_classifier_free(&w.cls)
		C.free(unsafe.Pointer(w))
	}
	r.workers = nil
	r.freed = true
	if r.shared != nil {
		C.free(unsafe.Pointer(C.sdp_publish(r.shared, nil)))
		C.free(unsafe.Pointer(r.shared))
		r.shared = nil
	}
}

// WorkerStats is one worker's counters and flow counts (see package
// report).
type WorkerStats = report.WorkerStats

// Stats reads every worker's counters. Reads race benignly with the
// workers' writes: each 64-bit counter is read whole on the platforms DPDK
// supports, and a total may lag by a burst.
func (r *Runtime) Stats() []WorkerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]WorkerStats, len(r.workers))
	for i, w := range r.workers {
		out[i] = WorkerStats{
			Lcore:      r.lcores[i],
			Counters:   countersOf(&w.cls.ctr),
			Flows:      flowCountsOf(&w.cls.flows),
			Polls:      uint64(w.polls),
			IdleSleeps: uint64(w.idle_sleeps),
			SleptUS:    uint64(w.sleep_us),
			EmptyWakes: uint64(w.empty_wakes),
			IdleWait:   r.idle[i],
			Epoch:      uint64(C.sdp_worker_epoch(w)),
			MaxIterUS:  float64(C.sdp_worker_max_iter(w)) / r.tscHz * 1e6,
			Commands:   uint64(C.sdp_worker_cmds_done(w)),
			ThreadID:   int(C.sdp_worker_tid(w)),
		}
	}
	return out
}

// Totals sums the workers' stats.
func Totals(ws []WorkerStats) (Counters, FlowCounts) {
	var c Counters
	var f FlowCounts
	for _, w := range ws {
		c.Add(w.Counters)
		f.Add(w.Flows)
	}
	return c, f
}

// ResetMaxIter returns each worker's longest loop iteration so far, in
// microseconds, and starts measuring afresh. An iteration running across
// the reset may still be counted after it.
func (r *Runtime) ResetMaxIter() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]float64, len(r.workers))
	for i, w := range r.workers {
		out[i] = float64(C.sdp_worker_take_max_iter(w)) / r.tscHz * 1e6
	}
	return out
}

// addrOf turns a network-order address held in a little-endian word back
// into an address.
func addrOf(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)})
}

func ntohs(v uint16) uint16 { return v<<8 | v>>8 }

// spinNext is the worker's spin decision (sdp_spin_next, worker.h), for
// its test: whether the next quiet spell starts with spinUS of polling.
func spinNext(spin bool, sleptUS, spinUS uint64) bool {
	s := C.int(0)
	if spin {
		s = 1
	}
	return C.sdp_spin_next(s, C.uint64_t(sleptUS), C.uint64_t(spinUS)) != 0
}
