package dataplane

/*
#include <stdlib.h>
#include <string.h>
#include "sdp.h"
#include "wanted.h"

// Run one burst over frames packed back to back in buf, each given room of
// stride bytes; lens in, lens out.
// hint < 0: no rx_hints; else every frame gets that hint.
static void sdp_run_packed(struct sdp_classifier *c, uint8_t *buf,
			   uint32_t stride, uint16_t *lens, uint16_t n,
			   uint32_t now, uint8_t *verdicts, int tap, int hint)
{
	uint8_t *frames[SDP_BURST];
	uint8_t hints[SDP_BURST];
	memset(hints, hint < 0 ? 0 : hint, sizeof(hints));
	while (n > 0) {
		uint16_t m = n < SDP_BURST ? n : SDP_BURST;
		for (uint16_t i = 0; i < m; i++)
			frames[i] = buf + (size_t)i * stride;
		if (tap)
			sdp_classify_tap(c, frames, lens, m, now, verdicts);
		else
			sdp_classify_rx(c, frames, lens, m, now,
					hint < 0 ? NULL : hints, verdicts);
		buf += (size_t)m * stride;
		lens += m;
		verdicts += m;
		n -= m;
	}
}
*/
import "C"

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"
)

// CClassifier runs the workers' C classifier over frames held in Go byte
// slices, with no device: the tests, the fuzz target and the benchmarks
// drive it. Frames are copied into C memory and back, one cgo call per
// burst.
type CClassifier struct {
	c     *C.struct_sdp_classifier
	owner *C.struct_sdp_owner_table
}

// NewCClassifier allocates the C classifier and its flow table.
func NewCClassifier(cfg ClassifierConfig) (*CClassifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := (*C.struct_sdp_classifier)(C.calloc(1, C.sizeof_struct_sdp_classifier))
	fillClassifier(c, cfg)
	if rc := C.sdp_classifier_init(c, C.uint32_t(cfg.MaxFlows), C.uint32_t(cfg.MaxHalfOpen)); rc != 0 {
		C.free(unsafe.Pointer(c))
		return nil, fmt.Errorf("dataplane: flow table of %d flows: error %d", cfg.MaxFlows, -rc)
	}
	return &CClassifier{c: c}, nil
}

// fillClassifier copies the configuration into a C classifier, with a
// fresh random slot key: no one outside this process can predict which
// tuples share a probe run.
func fillClassifier(c *C.struct_sdp_classifier, cfg ClassifierConfig) {
	vip := cfg.VIP.As4()
	c.vip = C.uint32_t(binary.LittleEndian.Uint32(vip[:])) // memory order = wire order
	c.seed = C.uint32_t(cfg.Seed)
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		panic("dataplane: no randomness for the flow-table key: " + err.Error())
	}
	c.slot_key[0] = C.uint64_t(binary.LittleEndian.Uint64(key[0:]))
	c.slot_key[1] = C.uint64_t(binary.LittleEndian.Uint64(key[8:]))
	for i := 0; i < 6; i++ {
		c.cluster_mac[i] = C.uint8_t(cfg.ClusterMAC[i])
		c.node_mac[i] = C.uint8_t(cfg.NodeMAC[i])
	}
	for _, p := range cfg.Ports {
		c.ports[p>>6] |= 1 << (p & 63)
	}
	c.timers.half_open_ms = C.uint32_t(cfg.HalfOpen.Milliseconds())
	c.timers.idle_ms = C.uint32_t(cfg.Idle.Milliseconds())
	c.timers.closing_ms = C.uint32_t(cfg.Closing.Milliseconds())
}

const maxFrame = 2048

// RXHint is what a NIC says of a frame's checksums (enum sdp_rx_hint).
type RXHint int

const (
	NoHint      RXHint = -1 // the classifier is given no hints at all
	CsumUnknown RXHint = 0
	CsumGood    RXHint = 1
	CsumBad     RXHint = 2
)

// ClassifyRXHinted is ClassifyRX with the NIC's checksum verdict on every
// frame, as the worker passes it from the mbufs' offload flags.
func (cc *CClassifier) ClassifyRXHinted(frames [][]byte, now uint32, h RXHint) ([]Verdict, []int) {
	return cc.run(frames, now, false, h)
}

func (cc *CClassifier) run(frames [][]byte, now uint32, tap bool, hint RXHint) ([]Verdict, []int) {
	n := len(frames)
	vs := make([]Verdict, n)
	ls := make([]int, n)
	if n == 0 {
		return vs, ls
	}
	buf := (*C.uint8_t)(C.malloc(C.size_t(n * maxFrame)))
	lens := (*C.uint16_t)(C.malloc(C.size_t(n * 2)))
	verd := (*C.uint8_t)(C.malloc(C.size_t(n)))
	defer C.free(unsafe.Pointer(buf))
	defer C.free(unsafe.Pointer(lens))
	defer C.free(unsafe.Pointer(verd))
	b := unsafe.Slice((*byte)(unsafe.Pointer(buf)), n*maxFrame)
	l := unsafe.Slice((*uint16)(unsafe.Pointer(lens)), n)
	for i, f := range frames {
		if len(f) > maxFrame {
			f = f[:maxFrame]
		}
		copy(b[i*maxFrame:], f)
		l[i] = uint16(len(f))
	}
	t := C.int(0)
	if tap {
		t = 1
	}
	C.sdp_run_packed(cc.c, buf, maxFrame, lens, C.uint16_t(n), C.uint32_t(now), verd, t, C.int(hint))
	v := unsafe.Slice((*uint8)(unsafe.Pointer(verd)), n)
	for i, f := range frames {
		vs[i] = Verdict(v[i])
		ls[i] = int(l[i])
		copy(f, b[i*maxFrame:i*maxFrame+min(len(f), maxFrame)])
	}
	return vs, ls
}

func (cc *CClassifier) ClassifyRX(frames [][]byte, now uint32) ([]Verdict, []int) {
	return cc.run(frames, now, false, NoHint)
}

func (cc *CClassifier) ClassifyTap(frames [][]byte, now uint32) ([]Verdict, []int) {
	return cc.run(frames, now, true, NoHint)
}

func (cc *CClassifier) SetOwnership(o *Ownership) {
	if cc.owner == nil {
		cc.owner = (*C.struct_sdp_owner_table)(C.calloc(1, C.sizeof_struct_sdp_owner_table))
	}
	bits := unsafe.Slice((*uint64)(unsafe.Pointer(&cc.owner.bits[0])), len(o))
	copy(bits, o[:])
	cc.c.owner = cc.owner
	if cc.c.flows.wanted != nil {
		// The same table memory with new bits: adopt it again.
		cc.c.flows.wanted.synced = 0
		C.sdp_wanted_adopt(cc.c.flows.wanted, &cc.c.flows, cc.owner)
	}
}

// AttachWanted makes the classifier keep bits as a worker keeps the
// prefilter's bitmap (wanted.h): owned | used, from now on. bits must be
// memory outside the Go heap (Filter.Wanted) and outlive the classifier.
func (cc *CClassifier) AttachWanted(bits *[WantedWords]uint64) {
	if cc.c.flows.wanted == nil {
		cc.c.flows.wanted = newWanted(bits)
	}
	C.sdp_wanted_adopt(cc.c.flows.wanted, &cc.c.flows, cc.c.owner)
}

// usedBits is the flow table's bucket_bits: the buckets holding flows.
func (cc *CClassifier) usedBits() (out [WantedWords]uint64) {
	copy(out[:], unsafe.Slice((*uint64)(unsafe.Pointer(&cc.c.flows.bucket_bits[0])), WantedWords))
	return out
}

// newWanted is a C struct sdp_wanted over bits, not yet built.
func newWanted(bits *[WantedWords]uint64) *C.struct_sdp_wanted {
	wt := (*C.struct_sdp_wanted)(C.calloc(1, C.sizeof_struct_sdp_wanted))
	wt.bits = (*C.uint64_t)(unsafe.Pointer(&bits[0]))
	return wt
}

func (cc *CClassifier) Sweep(now uint32) int {
	return int(C.sdp_flows_sweep(cc.c, C.uint32_t(now), 0))
}

func (cc *CClassifier) FlowState(src, dst netip.Addr, sport, dport uint16, now uint32) State {
	s, d := src.As4(), dst.As4()
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	return State(C.sdp_flows_state(cc.c,
		C.uint32_t(binary.LittleEndian.Uint32(s[:])), C.uint32_t(binary.LittleEndian.Uint32(d[:])),
		C.uint16_t(binary.LittleEndian.Uint16(p[0:])), C.uint16_t(binary.LittleEndian.Uint16(p[2:])),
		C.uint32_t(now)))
}

// SweepBudget runs one bounded sweep call, as the worker does once per
// loop iteration, and returns the flows removed and the slots it touched.
func (cc *CClassifier) SweepBudget(now uint32, budget uint32) (removed, work int) {
	removed = int(C.sdp_flows_sweep(cc.c, C.uint32_t(now), C.uint32_t(budget)))
	return removed, int(cc.c.flows.sweep_work)
}

// LongestRun is the longest run of occupied slots in the flow table: the
// most slots a lookup can probe.
func (cc *CClassifier) LongestRun() int { return int(C.sdp_flows_longest_run(cc.c)) }

// slotHashC is the C slot hash of a client-side key, for the tests.
func slotHashC(key [2]uint64, src, dst netip.Addr, sport, dport uint16) uint32 {
	s, d := src.As4(), dst.As4()
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	k := [2]C.uint64_t{C.uint64_t(key[0]), C.uint64_t(key[1])}
	return uint32(C.sdp_slot_hash_of(&k[0],
		C.uint32_t(binary.LittleEndian.Uint32(s[:])), C.uint32_t(binary.LittleEndian.Uint32(d[:])),
		C.uint16_t(binary.LittleEndian.Uint16(p[0:])), C.uint16_t(binary.LittleEndian.Uint16(p[2:]))))
}

func (cc *CClassifier) Counters() Counters { return countersOf(&cc.c.ctr) }

func (cc *CClassifier) Flows() FlowCounts { return flowCountsOf(&cc.c.flows) }

func (cc *CClassifier) Close() {
	if cc.c == nil {
		return
	}
	C.free(unsafe.Pointer(cc.c.flows.wanted))
	C.sdp_classifier_free(cc.c)
	C.free(unsafe.Pointer(cc.c))
	C.free(unsafe.Pointer(cc.owner))
	cc.c, cc.owner = nil, nil
}

// The Go mirror of struct sdp_counters has the C struct's size, checked at
// compile time: the array length is negative (Go larger) or the types differ
// (C larger) unless the sizes are equal. Both are runs of uint64 in the same
// order, so equal sizes leave only a reordering to the fixtures, which
// compare every counter of the two classifiers.
var _ [0]struct{} = [unsafe.Sizeof(Counters{}) - C.sizeof_struct_sdp_counters]struct{}{}

// countersSizeC is the size of struct sdp_counters, for the layout test.
func countersSizeC() int { return C.sizeof_struct_sdp_counters }

// countersOf reads a C counter block; the layouts match field for field.
func countersOf(c *C.struct_sdp_counters) Counters {
	return *(*Counters)(unsafe.Pointer(c))
}

func flowCountsOf(t *C.struct_sdp_flow_table) FlowCounts {
	return FlowCounts{
		SynRcvd:     uint64(t.by_state[C.SDP_SYN_RCVD]),
		Established: uint64(t.by_state[C.SDP_ESTABLISHED]),
		Closing:     uint64(t.by_state[C.SDP_CLOSING]),
		Withdrawn:   uint64(t.by_state[C.SDP_WITHDRAWN]),
	}
}

// ConnValueC is the C implementation of the connection value, for the
// golden and differential tests.
func ConnValueC(seed uint32, src, dst netip.Addr, sport, dport uint16) uint32 {
	var p [4]byte
	binary.BigEndian.PutUint16(p[0:], sport)
	binary.BigEndian.PutUint16(p[2:], dport)
	sp, dp := C.uint16_t(binary.LittleEndian.Uint16(p[0:])), C.uint16_t(binary.LittleEndian.Uint16(p[2:]))
	if src.Is4() && dst.Is4() {
		s, d := src.As4(), dst.As4()
		return uint32(C.sdp_conn_value(C.uint32_t(seed),
			C.uint32_t(binary.LittleEndian.Uint32(s[:])), C.uint32_t(binary.LittleEndian.Uint32(d[:])), sp, dp))
	}
	s, d := src.As16(), dst.As16()
	cs := (*C.uint8_t)(C.CBytes(s[:]))
	cd := (*C.uint8_t)(C.CBytes(d[:]))
	defer C.free(unsafe.Pointer(cs))
	defer C.free(unsafe.Pointer(cd))
	return uint32(C.sdp_conn_value6(C.uint32_t(seed), cs, cd, sp, dp))
}
