package dataplane

import (
	"encoding/binary"
	"math/bits"
	"math/rand"
	"net/netip"
	"testing"

	"github.com/shoal-lb/shoal/dataplane/collide"
)

// sipHash is SipHash-c-d written from the paper (Aumasson and Bernstein,
// 2012): c compression rounds per 8-byte block, d finalization rounds. The
// paper's vectors check it at 2-4; the C slot hash is checked against it at
// 1-3, the rounds of Rust's default hasher and CPython's str hash.
func sipHash(c, d int, k0, k1 uint64, m []byte) uint64 {
	v0, v1 := k0^0x736f6d6570736575, k1^0x646f72616e646f6d
	v2, v3 := k0^0x6c7967656e657261, k1^0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	compress := func(w uint64) {
		v3 ^= w
		for i := 0; i < c; i++ {
			round()
		}
		v0 ^= w
	}
	n := len(m)
	for ; len(m) >= 8; m = m[8:] {
		compress(binary.LittleEndian.Uint64(m))
	}
	var last [8]byte
	copy(last[:], m)
	last[7] = byte(n)
	compress(binary.LittleEndian.Uint64(last[:]))
	v2 ^= 0xff
	for i := 0; i < d; i++ {
		round()
	}
	return v0 ^ v1 ^ v2 ^ v3
}

func TestSipHashVectors(t *testing.T) {
	var key [16]byte
	for i := range key {
		key[i] = byte(i)
	}
	k0, k1 := binary.LittleEndian.Uint64(key[0:]), binary.LittleEndian.Uint64(key[8:])
	msg := make([]byte, 15)
	for i := range msg {
		msg[i] = byte(i)
	}
	// The paper's Appendix A, and the first of the reference vectors.
	if got := sipHash(2, 4, k0, k1, msg); got != 0xa129ca6149be45e5 {
		t.Fatalf("SipHash-2-4 of the paper's example: %#x", got)
	}
	if got := sipHash(2, 4, k0, k1, nil); got != 0x726fdb47dd0e0e31 {
		t.Fatalf("SipHash-2-4 of the empty message: %#x", got)
	}
}

// The C slot hash is SipHash-1-3 of the 12-byte key, truncated to 32 bits.
func TestSlotHashIsSipHash13(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 1000; i++ {
		key := [2]uint64{rng.Uint64(), rng.Uint64()}
		var a, b [4]byte
		binary.LittleEndian.PutUint32(a[:], rng.Uint32())
		binary.LittleEndian.PutUint32(b[:], rng.Uint32())
		src, dst := netip.AddrFrom4(a), netip.AddrFrom4(b)
		sp, dp := uint16(rng.Uint32()), uint16(rng.Uint32())
		tp := collide.Tuple{Src: src, Dst: dst, SrcPort: sp, DstPort: dp}
		k := tp.Key()
		want := uint32(sipHash(1, 3, key[0], key[1], k[:]))
		if got := slotHashC(key, src, dst, sp, dp); got != want {
			t.Fatalf("slot hash of %+v under %x: C %#x, SipHash-1-3 %#x", tp, key, got, want)
		}
	}
}

// collidingSYNs inserts n SYN_RCVD flows whose tuples share one connection
// value (so one bucket, owned here) into a fresh C classifier.
func collidingSYNs(t *testing.T, n int, maxFlows uint32) (*CClassifier, []collide.Tuple) {
	t.Helper()
	base := collide.Tuple{Src: netip.MustParseAddr("198.19.0.1"), Dst: fxVIP, SrcPort: 40000, DstPort: 80}
	ts, err := collide.Tuples(base, collide.Free(32, 16, 0), n, func(tp collide.Tuple) bool { return tp.SrcPort != 0 })
	if err != nil {
		t.Fatal(err)
	}
	cfg := fxConfig()
	cfg.MaxFlows, cfg.MaxHalfOpen = maxFlows, maxFlows
	cc, err := NewCClassifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var own Ownership
	own.Set(Bucket(ConnValue(fxSeed, base.Src, base.Dst, base.SrcPort, base.DstPort)))
	cc.SetOwnership(&own)
	var frames [][]byte
	for _, tp := range ts {
		s := seg{dstMAC: fxClusterMAC, srcMAC: fxClientMAC, src: tp.Src, dst: tp.Dst, sport: tp.SrcPort, dport: tp.DstPort, syn: true, seq: 1}
		frames = append(frames, tcpFrame(t, s))
		if len(frames) == 256 {
			cc.ClassifyRX(frames, 0)
			frames = frames[:0]
		}
	}
	cc.ClassifyRX(frames, 0)
	if got := cc.Counters().SynAccepted; got != uint64(n) {
		t.Fatalf("%d SYNs accepted, want %d", got, n)
	}
	return cc, ts
}

// Tuples with one connection value spread over the table: the longest probe
// run stays short, as for random tuples. With the connection value as the
// slot index they formed one run of n.
func TestCollidingTuplesSpread(t *testing.T) {
	const n = 20000
	cc, _ := collidingSYNs(t, n, 65536)
	defer cc.Close()
	// 20000 flows in 131072 slots: random keys give runs of a few tens at
	// most (a run of r has probability about n·0.15^r).
	if run := cc.LongestRun(); run > 40 {
		t.Fatalf("longest probe run %d for %d colliding flows", run, n)
	}
}

// A sweep call touches no more than its budget plus one deletion's backward
// shift, even when every flow expires at once; repeated calls remove all.
func TestSweepBounded(t *testing.T) {
	const n, budget = 20000, 64
	cc, _ := collidingSYNs(t, n, 65536)
	defer cc.Close()
	run := cc.LongestRun()
	now := uint32(10_000) // the half-open timer
	removed, calls := 0, 0
	for removed < n {
		r, work := cc.SweepBudget(now, budget)
		if work > budget+run {
			t.Fatalf("one sweep call touched %d slots; budget %d, longest run %d", work, budget, run)
		}
		removed += r
		calls++
		if calls > 10*131072/budget {
			t.Fatalf("%d calls removed only %d of %d flows", calls, removed, n)
		}
	}
	if f := cc.Flows(); f.SynRcvd != 0 {
		t.Fatalf("%d flows left", f.SynRcvd)
	}
}
