package dataplane

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	dpdk "github.com/shoal-lb/shoal/cgo"

	"github.com/shoal-lb/shoal/prefilter"
)

// The in-kernel prefilter (package prefilter) against the worker: the
// loaded program, run by BPF_PROG_TEST_RUN, must drop exactly the frames
// the C classifier's first pass drops without a probe, computing the
// connection value as ConnValue does, while the C classifier keeps the
// filter's bitmap (wanted.h) equal to owned | used after every frame.

func loadPrefilter(t *testing.T, cfg ClassifierConfig) *prefilter.Filter {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading a BPF program needs root (CAP_BPF)")
	}
	var pc prefilter.Config
	pc.Seed, pc.VIP = cfg.Seed, cfg.VIP
	copy(pc.ClusterMAC[:], cfg.ClusterMAC)
	copy(pc.NodeMAC[:], cfg.NodeMAC)
	pc.Ports = cfg.Ports
	f, err := prefilter.Load(pc)
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skip("kernel without what the prefilter needs:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// filterKeeps runs the loaded program on a frame as the af_packet socket
// would (prefilter.Filter.Keeps).
func filterKeeps(t *testing.T, f *prefilter.Filter, frame []byte) bool {
	t.Helper()
	keep, err := f.Keeps(frame)
	if err != nil {
		t.Fatal(err)
	}
	return keep
}

// frameBucket is the bucket of an IPv4 TCP frame without options.
func frameBucket(f []byte) (uint16, bool) {
	if len(f) < 14+24 || f[12] != 8 || f[13] != 0 || f[14] != 0x45 || f[14+9] != 6 {
		return 0, false
	}
	src, _ := netip.AddrFromSlice(f[26:30])
	dst, _ := netip.AddrFromSlice(f[30:34])
	return Bucket(ConnValue(fxSeed, src, dst, binary.BigEndian.Uint16(f[34:]), binary.BigEndian.Uint16(f[36:]))), true
}

// prefilterStep runs one step through the filter (NIC frames) and the C
// classifier, and checks the two agree and the bitmap holds.
func prefilterStep(t *testing.T, f *prefilter.Filter, cc *CClassifier, own *Ownership, tap bool, at uint32, frame []byte) {
	t.Helper()
	w := f.Wanted()
	used := cc.usedBits()
	for i := range w {
		if want := own[i] | used[i]; w[i] != want {
			t.Fatalf("wanted word %d = %#x, owned | used = %#x", i, w[i], want)
		}
	}
	fr := append([]byte(nil), frame...)
	if tap {
		cc.ClassifyTap([][]byte{fr}, at)
		return
	}
	d0, err := f.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	keep := filterKeeps(t, f, frame)
	d1, err := f.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	c0, fl0 := cc.Counters(), cc.Flows()
	vs, _ := cc.ClassifyRX([][]byte{fr}, at)
	c1, fl1 := cc.Counters(), cc.Flows()
	fast := c1.FastDropped - c0.FastDropped
	syn := c1.SynNotOurs - c0.SynNotOurs + c1.SynPortDropped - c0.SynPortDropped
	if !keep {
		// Dropped in the kernel: the worker would have dropped it in its
		// first pass, counted foreign (and fast) or as a SYN not ours, and
		// changed nothing else.
		rest := c1
		rest.RX = c0.RX
		rest.FastDropped, rest.ForeignDropped = c0.FastDropped, c0.ForeignDropped
		rest.SynNotOurs, rest.SynPortDropped = c0.SynNotOurs, c0.SynPortDropped
		if vs[0] != Drop || fast+syn != 1 || c1.ForeignDropped-c0.ForeignDropped != fast || rest != c0 || fl1 != fl0 {
			t.Fatalf("the filter dropped %x; the worker: %v, counters %+v -> %+v", frame, vs[0], c0, c1)
		}
		// The filter counted it under the worker's name for it.
		got := prefilter.Drops{ForeignDropped: d1.ForeignDropped - d0.ForeignDropped,
			SynNotOurs: d1.SynNotOurs - d0.SynNotOurs, SynPortDropped: d1.SynPortDropped - d0.SynPortDropped}
		want := prefilter.Drops{ForeignDropped: fast, SynNotOurs: c1.SynNotOurs - c0.SynNotOurs,
			SynPortDropped: c1.SynPortDropped - c0.SynPortDropped}
		if got != want {
			t.Fatalf("the filter counted %x as %+v, the worker as %+v", frame, got, want)
		}
		return
	}
	if d1 != d0 {
		t.Fatalf("the filter kept %x but counted a drop: %+v -> %+v", frame, d0, d1)
	}
	if fast != 0 {
		// The second pass also drops a segment without a probe where the
		// bucket holds no flow but is ours (classify_segment); the filter
		// keeps those, as the first pass does.
		b, ok := frameBucket(frame)
		if !ok || own[b>>6]>>(b&63)&1 == 0 || used[b>>6]>>(b&63)&1 != 0 {
			t.Fatalf("the filter kept %x, which the worker fast-dropped in a bucket not ours or used", frame)
		}
	}
	if syn != 0 {
		// A SYN the worker refused: it must have looked at a bucket it
		// owns or where it has flows, not decided it in the first pass.
		b, ok := frameBucket(frame)
		if ok && (own[b>>6]|used[b>>6])>>(b&63)&1 == 0 {
			t.Fatalf("the filter kept SYN %x in bucket %d, neither owned nor used", frame, b)
		}
	}
}

// TestPrefilterFixtures: every step of every classifier fixture.
func TestPrefilterFixtures(t *testing.T) {
	for _, fx := range fixtures {
		t.Run(fx.name, func(t *testing.T) {
			cfg := fxConfig()
			if fx.cfg != nil {
				fx.cfg(&cfg)
			}
			f := loadPrefilter(t, cfg)
			cc, err := NewCClassifier(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			own := fxOwnership()
			cc.SetOwnership(own)
			cc.AttachWanted(f.Wanted())
			for _, s := range fx.steps(t) {
				prefilterStep(t, f, cc, own, s.tap, s.at, s.in)
			}
		})
	}
}

// TestPrefilterDifferential: random TCP-shaped traffic with the ownership
// changing (even, odd, all, none buckets), frame by frame, so flows live on
// in buckets the node lost and the bitmap must follow every 0 <-> 1 change.
func TestPrefilterDifferential(t *testing.T) {
	cfg := fxConfig()
	f := loadPrefilter(t, cfg)
	for seed := int64(1); seed <= 4; seed++ {
		cc, err := NewCClassifier(cfg)
		if err != nil {
			t.Fatal(err)
		}
		own := ownerships[0]
		cc.SetOwnership(own)
		cc.AttachWanted(f.Wanted())
		g := newGen(t, seed)
		kept, dropped := 0, 0
		for _, b := range g.bursts(200) {
			if b.own != nil {
				own = b.own
				cc.SetOwnership(own)
			}
			for _, fr := range b.frames {
				if !b.tap {
					if filterKeeps(t, f, fr) {
						kept++
					} else {
						dropped++
					}
				}
				prefilterStep(t, f, cc, own, b.tap, b.at, fr)
			}
		}
		cc.Close()
		if kept < 100 || dropped < 100 {
			t.Fatalf("seed %d: %d frames kept, %d dropped: the traffic no longer tests both sides", seed, kept, dropped)
		}
	}
}

// TestPrefilterConnValue: over random tuples, the filter keeps a segment
// when only its bucket (Bucket(ConnValue)) is wanted and drops it when
// every bucket but that one is.
func TestPrefilterConnValue(t *testing.T) {
	cfg := fxConfig()
	f := loadPrefilter(t, cfg)
	w := f.Wanted()
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 1000; i++ {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], rng.Uint32())
		s := seg{dstMAC: fxClusterMAC, srcMAC: fxClientMAC, src: netip.AddrFrom4(a), dst: fxVIP,
			sport: uint16(rng.Uint32()), dport: uint16(rng.Uint32()), ack: true, seq: 1, ackNum: 1}
		fr := tcpFrame(t, s)
		b := Bucket(ConnValue(fxSeed, s.src, s.dst, s.sport, s.dport))
		for j := range w {
			w[j] = 0
		}
		w[b>>6] = 1 << (b & 63)
		if !filterKeeps(t, f, fr) {
			t.Fatalf("%v:%d -> %d: dropped with only its bucket %d wanted", s.src, s.sport, s.dport, b)
		}
		for j := range w {
			w[j] = ^uint64(0)
		}
		w[b>>6] &^= 1 << (b & 63)
		if filterKeeps(t, f, fr) {
			t.Fatalf("%v:%d -> %d: kept with all but its bucket %d wanted", s.src, s.sport, s.dport, b)
		}
	}
}

// TestRuntimePrefilter: a running worker keeps the loaded filter's bitmap
// through what the command ring and table swaps do to it. A segment of a
// flow in another node's bucket is dropped in the kernel until a handoff
// import (Install) puts the flow in the worker's table, passes while the
// flow or its withdrawn entry lives, and is dropped again once the flow is
// removed; a new table's buckets are wanted as soon as Publish returns
// (the worker adopted it) and the buckets it gave away are not.
func TestRuntimePrefilter(t *testing.T) {
	cfg := fxConfig()
	f := loadPrefilter(t, cfg)
	needEAL(t)
	nic, tap := openPort(t, nil), openPort(t, nil)
	cfg.MaxFlows, cfg.MaxHalfOpen = 4096, 1024
	r, err := NewRuntime(RuntimeConfig{Classifier: cfg, NIC: nic, Tap: tap,
		Lcores: dpdk.WorkerLcores()[:1], IdleSleepMax: 100 * time.Microsecond, Wanted: f.Wanted()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Free)
	even := fxOwnership()
	r.Publish(even)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	ctx := context.Background()
	// Tuples in odd buckets (another node's under the even table).
	var odd []Tuple
	for i := 0; len(odd) < 3; i++ {
		tp := rtTuple(i)
		if Bucket(ConnValue(fxSeed, tp.Client.Addr(), fxVIP, tp.Client.Port(), 80))%2 == 1 {
			odd = append(odd, tp)
		}
	}
	ack := func(tp Tuple) []byte {
		return tcpFrame(t, seg{dstMAC: fxClusterMAC, srcMAC: fxClientMAC, src: tp.Client.Addr(), dst: fxVIP,
			sport: tp.Client.Port(), dport: 80, ack: true, seq: 1000, ackNum: 2000})
	}
	keeps := func(tp Tuple) bool { return filterKeeps(t, f, ack(tp)) }
	// The worker adopts the first table at its first iteration.
	for deadline := time.Now().Add(5 * time.Second); r.Stats()[0].Epoch == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the worker did not adopt the table within 5 s")
		}
	}
	if keeps(odd[0]) || keeps(odd[1]) {
		t.Fatal("a segment in another node's bucket passed before any flow of ours was there")
	}
	for _, tp := range odd[:2] {
		if err := r.Install(ctx, FlowSpec{Tuple: tp, State: Established}); err != nil {
			t.Fatal(err)
		}
		if !keeps(tp) {
			t.Fatalf("%v: dropped in the kernel after the import completed", tp)
		}
	}
	if err := r.Withdraw(ctx, odd[0]); err != nil {
		t.Fatal(err)
	}
	if !keeps(odd[0]) {
		t.Fatal("a withdrawn flow's segment was dropped in the kernel: the overlap guard must see it")
	}
	if err := r.Remove(ctx, odd[1]); err != nil {
		t.Fatal(err)
	}
	if keeps(odd[1]) {
		t.Fatal("a removed flow's segment still passes in another node's bucket")
	}
	// Swap to the odd buckets: odd[2] (no flow) is wanted at once; an even
	// bucket with no flow is not.
	var oddOwn Ownership
	for b := 1; b < 65536; b += 2 {
		oddOwn.Set(uint16(b))
	}
	r.Publish(&oddOwn)
	if !keeps(odd[2]) {
		t.Fatal("a bucket of the adopted table is not wanted after Publish returned")
	}
	for i := 0; ; i++ {
		tp := rtTuple(1000 + i)
		if Bucket(ConnValue(fxSeed, tp.Client.Addr(), fxVIP, tp.Client.Port(), 80))%2 == 0 {
			if keeps(tp) {
				t.Fatal("a bucket given away, with no flow, is still wanted")
			}
			break
		}
	}
	// The withdrawn entry's bucket stays wanted whatever the table says.
	r.Publish(even)
	if !keeps(odd[0]) {
		t.Fatal("the withdrawn entry's bucket was dropped by the table swap")
	}
}
