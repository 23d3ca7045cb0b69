package dataplane

import (
	"bytes"
	"fmt"
	"math/rand"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"
)

// A burst is what one classify call gets: up to 32 frames of one
// direction at one instant. own, when not nil, is published first.
type burst struct {
	tap    bool
	at     uint32
	own    *Ownership
	frames [][]byte
}

// ownerships the sequences switch between: a rebalance in miniature.
var ownerships = func() []*Ownership {
	var even, odd, all, none Ownership
	for b := 0; b < 65536; b++ {
		all.Set(uint16(b))
		if b%2 == 0 {
			even.Set(uint16(b))
		} else {
			odd.Set(uint16(b))
		}
	}
	return []*Ownership{&even, &odd, &all, &none}
}()

// trafficGen makes random but TCP-shaped traffic: a few clients whose
// connections go through handshakes, data, half-closes, resets, overlaps
// and strays, plus ICMP, corrupted and foreign frames.
type trafficGen struct {
	t     testing.TB
	rng   *rand.Rand
	now   uint32
	conn  []genConn
	small bool // payloads of at most 16 bytes (the committed corpus)
}

type genConn struct {
	src      netip.Addr
	port     uint16
	cseq     uint32 // client's next sequence number
	sseq     uint32 // our kernel's next sequence number
	synacked bool
}

func newGen(t testing.TB, seed int64) *trafficGen {
	g := &trafficGen{t: t, rng: rand.New(rand.NewSource(seed))}
	for i := 0; i < 12; i++ {
		g.conn = append(g.conn, genConn{
			src:  netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i%3)}),
			port: uint16(20000 + g.rng.Intn(40)),
			cseq: g.rng.Uint32(), sseq: g.rng.Uint32(),
		})
	}
	return g
}

// frame returns one frame and its direction.
func (g *trafficGen) frame() ([]byte, bool) {
	c := &g.conn[g.rng.Intn(len(g.conn))]
	cl := seg{dstMAC: fxClusterMAC, srcMAC: fxClientMAC, src: c.src, dst: fxVIP, sport: c.port, dport: 80}
	kn := seg{dstMAC: fxClientMAC, srcMAC: fxNodeMAC, src: fxVIP, dst: c.src, sport: 80, dport: c.port}
	pay := func() []byte {
		n := []int{0, 0, 1, 100, 1400}[g.rng.Intn(5)]
		if g.small {
			n %= 17
		}
		return make([]byte, n)
	}
	var s seg
	tap := false
	switch k := g.rng.Intn(20); {
	case k < 3: // SYN, sometimes a new connection on the tuple
		if g.rng.Intn(3) == 0 {
			c.cseq, c.sseq, c.synacked = g.rng.Uint32(), g.rng.Uint32(), false
		}
		s = cl
		s.syn, s.seq = true, c.cseq
	case k < 5: // our SYN-ACK
		s, tap = kn, true
		s.syn, s.ack, s.seq, s.ackNum = true, true, c.sseq, c.cseq+1
		c.synacked = true
	case k < 10: // client data or ACK, sometimes acknowledging another node
		s = cl
		s.ack, s.seq, s.ackNum, s.payload = true, c.cseq+1, c.sseq+1, pay()
		if g.rng.Intn(6) == 0 {
			s.ackNum = g.rng.Uint32()
		}
		c.cseq += uint32(len(s.payload))
	case k < 13: // our data
		s, tap = kn, true
		s.ack, s.seq, s.ackNum, s.payload = true, c.sseq+1, c.cseq+1, pay()
		c.sseq += uint32(len(s.payload))
	case k < 15: // a FIN either way
		if g.rng.Intn(2) == 0 {
			s = cl
			s.fin, s.ack, s.seq, s.ackNum = true, true, c.cseq+1, c.sseq+1
			c.cseq++
		} else {
			s, tap = kn, true
			s.fin, s.ack, s.seq, s.ackNum = true, true, c.sseq+1, c.cseq+1
			c.sseq++
		}
	case k < 16: // a RST either way, in or out of the window
		s = cl
		if g.rng.Intn(2) == 0 {
			s, tap = kn, true
			s.ack = g.rng.Intn(2) == 0
		}
		s.rst, s.seq, s.ackNum = true, c.cseq+1-uint32(g.rng.Intn(3))*uint32(g.rng.Intn(1<<17)), c.cseq+1
	case k < 17: // a stray with random numbers
		s = cl
		s.ack, s.seq, s.ackNum = true, g.rng.Uint32(), g.rng.Uint32()
	case k < 18: // ICMP: an echo, or an error quoting the flow
		if g.rng.Intn(2) == 0 {
			return icmpFrame(g.t, c.src, 8, 0, g.rng.Uint32(), []byte("ping")), false
		}
		q := quote(g.t, layers.IPProtocolTCP, c.port, c.sseq+1)
		q[16], q[17], q[18], q[19] = c.src.As4()[0], c.src.As4()[1], c.src.As4()[2], c.src.As4()[3]
		return icmpFrame(g.t, netip.MustParseAddr("198.18.0.1"), []uint8{3, 11}[g.rng.Intn(2)], 4, 1200, q), false
	default: // a corrupted client segment
		s = cl
		s.ack, s.seq, s.ackNum, s.fin = true, c.cseq+1, c.sseq+1, g.rng.Intn(2) == 0
		f := tcpFrame(g.t, s)
		f[14+20+g.rng.Intn(20)] ^= byte(1 << g.rng.Intn(8))
		return f, false
	}
	return tcpFrame(g.t, s), tap
}

// bursts makes n bursts of 1 to 32 frames, with time moving on by up to
// 40 s between them and the ownership changing now and then.
func (g *trafficGen) bursts(n int) []burst {
	var out []burst
	for i := 0; i < n; i++ {
		g.now += uint32([]int{0, 1, 5, 1000, 12000, 40000}[g.rng.Intn(6)])
		b := burst{at: g.now}
		if g.rng.Intn(8) == 0 {
			b.own = ownerships[g.rng.Intn(len(ownerships))]
		}
		want := 1 + g.rng.Intn(32)
		dir := g.rng.Intn(2) == 0
		for len(b.frames) < want {
			f, tap := g.frame()
			if len(b.frames) == 0 {
				dir = tap
			}
			if tap != dir {
				continue
			}
			b.frames = append(b.frames, f)
		}
		b.tap = dir
		out = append(out, b)
	}
	return out
}

// agree runs bursts through both classifiers, each burst in one call, and
// fails at the first difference.
func agree(t testing.TB, cfg ClassifierConfig, bs []burst, tuples [][2]uint16) {
	cc, err := NewCClassifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ref, _ := NewReference(cfg)
	own := ownerships[0]
	cc.SetOwnership(own)
	ref.SetOwnership(own)
	for i, b := range bs {
		if b.own != nil {
			cc.SetOwnership(b.own)
			ref.SetOwnership(b.own)
		}
		f1 := make([][]byte, len(b.frames))
		f2 := make([][]byte, len(b.frames))
		for j, f := range b.frames {
			f1[j] = append([]byte(nil), f...)
			f2[j] = append([]byte(nil), f...)
		}
		var v1, v2 []Verdict
		var l1, l2 []int
		if b.tap {
			v1, l1 = cc.ClassifyTap(f1, b.at)
			v2, l2 = ref.ClassifyTap(f2, b.at)
		} else {
			v1, l1 = cc.ClassifyRX(f1, b.at)
			v2, l2 = ref.ClassifyRX(f2, b.at)
		}
		for j := range b.frames {
			if v1[j] != v2[j] || !bytes.Equal(f1[j][:l1[j]], f2[j][:l2[j]]) {
				t.Fatalf("burst %d (tap %v, %d frames, at %d) frame %d %x: C %v %x, Go %v %x",
					i, b.tap, len(b.frames), b.at, j, b.frames[j], v1[j], f1[j][:l1[j]], v2[j], f2[j][:l2[j]])
			}
		}
		if cc.Counters() != ref.Counters() || cc.Flows() != ref.Flows() {
			t.Fatalf("after burst %d:\n C %+v %+v\nGo %+v %+v", i, cc.Counters(), cc.Flows(), ref.Counters(), ref.Flows())
		}
	}
	now := bs[len(bs)-1].at
	for _, tp := range tuples {
		for s := 10; s < 13; s++ {
			src := netip.AddrFrom4([4]byte{198, 18, 0, byte(s)})
			if a, b := cc.FlowState(src, fxVIP, tp[0], tp[1], now), ref.FlowState(src, fxVIP, tp[0], tp[1], now); a != b {
				t.Fatalf("flow %v:%d: C %v, Go %v", src, tp[0], a, b)
			}
		}
	}
	if a, b := cc.Sweep(now+1_000_000), ref.Sweep(now+1_000_000); a != b {
		t.Fatalf("sweep removed %d in C, %d in Go", a, b)
	}
}

// TestDifferentialBursts: random TCP-shaped sequences in bursts of 1 to 32
// frames, with ownership changes between bursts, give the same verdicts,
// frames, counters, flow counts and flow states in C (one call per burst,
// prefetching across it) and in Go.
func TestDifferentialBursts(t *testing.T) {
	var tuples [][2]uint16
	for p := 20000; p < 20040; p++ {
		tuples = append(tuples, [2]uint16{uint16(p), 80})
	}
	for seed := int64(1); seed <= 60; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			cfg := fxConfig()
			if seed%3 == 0 {
				cfg.MaxFlows, cfg.MaxHalfOpen = 16, 4 // the bounds in play
			}
			agree(t, cfg, newGen(t, seed).bursts(300), tuples)
		})
	}
}

// TestDifferentialFixtureBursts: every fixture's frames in one sequence,
// cut into bursts of every size from 1 to 32.
func TestDifferentialFixtureBursts(t *testing.T) {
	for size := 1; size <= 32; size++ {
		var bs []burst
		var at uint32
		for _, fx := range fixtures {
			if fx.cfg != nil {
				continue
			}
			for _, s := range fx.steps(t) {
				if len(bs) == 0 || bs[len(bs)-1].tap != s.tap || len(bs[len(bs)-1].frames) == size {
					bs = append(bs, burst{tap: s.tap, at: at})
				}
				bs[len(bs)-1].frames = append(bs[len(bs)-1].frames, s.in)
			}
			at += 1000
		}
		agree(t, fxConfig(), bs, nil)
	}
}
