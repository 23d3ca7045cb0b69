package prefilter

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

var (
	tVIP        = netip.MustParseAddr("198.18.0.100")
	tClusterMAC = [6]byte{0x01, 0x00, 0x5e, 0x75, 0xc9, 0x3e}
	tNodeMAC    = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	tOtherMAC   = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x09}
	tSeed       = uint32(0x5eed1234)
)

// loadT loads the filter or skips the test with the reason.
func loadT(t *testing.T, returnHash bool) *Filter {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading a BPF program needs root (CAP_BPF)")
	}
	f, err := load(Config{Seed: tSeed, VIP: tVIP, ClusterMAC: tClusterMAC, NodeMAC: tNodeMAC, Ports: []uint16{80, 443}}, returnHash)
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skip("kernel without what the filter needs:", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// seg is a TCP segment's fields; frame builds it.
type seg struct {
	dst          [6]byte
	src, daddr   netip.Addr
	sport, dport uint16
	flags        byte
	payload      int
}

func (s seg) frame() []byte {
	tot := 40 + s.payload
	b := make([]byte, 14+tot)
	copy(b[0:6], s.dst[:])
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 0x10})
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(tot))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = 6
	sa, da := s.src.As4(), s.daddr.As4()
	copy(ip[12:], sa[:])
	copy(ip[16:], da[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], s.sport)
	binary.BigEndian.PutUint16(tcp[2:], s.dport)
	tcp[12] = 5 << 4
	tcp[13] = s.flags
	return b
}

// refValue is the connection value as docs/protocol.md defines it (the
// dataplane package's ConnValue; dataplane/prefilter_test.go compares the
// program with that one and with the C classifier).
func refValue(src, dst netip.Addr, sport, dport uint16) uint32 {
	var b [12]byte
	s, d := src.As4(), dst.As4()
	copy(b[0:], s[:])
	copy(b[4:], d[:])
	binary.BigEndian.PutUint16(b[8:], sport)
	binary.BigEndian.PutUint16(b[10:], dport)
	return ^crc32.Update(^tSeed, crc32.MakeTable(crc32.Castagnoli), b[:])
}

// run runs the program on frame as its packet socket would see it
// (testRunInput) and returns what it returned.
func run(t *testing.T, f *Filter, frame []byte) uint32 {
	t.Helper()
	ret, err := f.prog.Run(&ebpf.RunOptions{Data: testRunInput(frame)})
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

// TestConnValue: the program's CRC32C equals the frozen connection value,
// all 32 bits, over random tuples.
func TestConnValue(t *testing.T) {
	f := loadT(t, true)
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], rng.Uint32())
		s := seg{dst: tClusterMAC, src: netip.AddrFrom4(a), daddr: tVIP,
			sport: uint16(rng.Uint32()), dport: uint16(rng.Uint32()), flags: 0x10}
		if got, want := run(t, f, s.frame()), refValue(s.src, s.daddr, s.sport, s.dport); got != want {
			t.Fatalf("%v:%d -> %d: program %#08x, connection value %#08x", s.src, s.sport, s.dport, got, want)
		}
	}
}

// TestDropsUnwanted: a segment to the VIP is dropped exactly when its
// bucket's bit is clear, and counted as the worker counts: SYNs apart, by
// whether their port is served.
func TestDropsUnwanted(t *testing.T) {
	f := loadT(t, false)
	w := f.Wanted()
	rng := rand.New(rand.NewSource(2))
	var want Drops
	for i := 0; i < 500; i++ {
		src := netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i%5)})
		s := seg{dst: [][6]byte{tClusterMAC, tNodeMAC}[i%2], src: src, daddr: tVIP, sport: uint16(1024 + rng.Intn(60000)), dport: []uint16{80, 443, 8080, 1}[i%4],
			flags: []byte{0x02, 0x10, 0x18, 0x11, 0x04, 0x12}[i%6], payload: i % 3 * 100}
		b := uint16(refValue(s.src, s.daddr, s.sport, s.dport))
		set := rng.Intn(2) == 0
		for j := range w {
			w[j] = rng.Uint64() // neighbours' bits must not matter
		}
		if set {
			w[b>>6] |= 1 << (b & 63)
		} else {
			w[b>>6] &^= 1 << (b & 63)
		}
		ret := run(t, f, s.frame())
		if set && ret == 0 || !set && ret != 0 {
			t.Fatalf("bucket %d wanted %v, flags %#x: program returned %#x", b, set, s.flags, ret)
		}
		if !set {
			switch {
			case s.flags != 0x02:
				want.ForeignDropped++
			case s.dport == 80 || s.dport == 443:
				want.SynNotOurs++
			default:
				want.SynPortDropped++
			}
		}
	}
	got, err := f.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("counted %+v, want %+v", got, want)
	}
}

// TestPassesOthers: with nothing wanted, every frame the worker decides
// otherwise than by the fast drop passes whole.
func TestPassesOthers(t *testing.T) {
	f := loadT(t, false)
	base := seg{dst: tClusterMAC, src: netip.MustParseAddr("198.18.0.10"), daddr: tVIP, sport: 40000, dport: 80, flags: 0x10}
	mod := func(m func(b []byte) []byte) []byte { return m(base.frame()) }
	if ret := run(t, f, base.frame()); ret != 0 {
		t.Fatalf("the base segment passed (%#x) with nothing wanted", ret)
	}
	cases := map[string][]byte{
		"other MAC":       func() []byte { s := base; s.dst = tOtherMAC; return s.frame() }(),
		"not the VIP":     func() []byte { s := base; s.daddr = netip.MustParseAddr("198.18.0.101"); return s.frame() }(),
		"SYN with RST":    func() []byte { s := base; s.flags = 0x06; return s.frame() }(),
		"SYN with FIN":    func() []byte { s := base; s.flags = 0x03; return s.frame() }(),
		"ICMP":            mod(func(b []byte) []byte { b[14+9] = 1; return b }),
		"UDP":             mod(func(b []byte) []byte { b[14+9] = 17; return b }),
		"IP options":      mod(func(b []byte) []byte { b[14] = 0x46; return b }),
		"IPv6 version":    mod(func(b []byte) []byte { b[14] = 0x65; return b }),
		"fragment":        mod(func(b []byte) []byte { b[14+6] = 0x20; return b }),
		"fragment offset": mod(func(b []byte) []byte { b[14+7] = 1; return b }),
		"VLAN":            mod(func(b []byte) []byte { b[12], b[13] = 0x81, 0x00; return b }),
		"ARP":             mod(func(b []byte) []byte { b[12], b[13] = 0x08, 0x06; return b }),
		"length short":    mod(func(b []byte) []byte { binary.BigEndian.PutUint16(b[14+2:], 39); return b }),
		"length long":     mod(func(b []byte) []byte { binary.BigEndian.PutUint16(b[14+2:], 41); return b }),
		"data offset 4":   mod(func(b []byte) []byte { b[14+20+12] = 4 << 4; return b }),
		"data offset 6":   mod(func(b []byte) []byte { b[14+20+12] = 6 << 4; return b }),
		"truncated":       base.frame()[:47],
	}
	for name, fr := range cases {
		if ret := run(t, f, fr); ret != 0xffffffff {
			t.Errorf("%s: program returned %#x, want the whole frame kept", name, ret)
		}
	}
	d, err := f.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	if d != (Drops{ForeignDropped: 1}) {
		t.Fatalf("counted %+v, want the base segment's one drop", d)
	}
}

// BenchmarkFilter: the program's own time per frame in the kernel
// (BPF_PROG_TEST_RUN, repeated), for a foreign ACK it drops, one of ours it
// keeps, and a frame not for the VIP it keeps after the first tests.
func BenchmarkFilter(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("loading a BPF program needs root (CAP_BPF)")
	}
	f, err := Load(Config{Seed: tSeed, VIP: tVIP, ClusterMAC: tClusterMAC, NodeMAC: tNodeMAC, Ports: []uint16{80}})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := seg{dst: tClusterMAC, src: netip.MustParseAddr("198.18.0.10"), daddr: tVIP, sport: 40000, dport: 80, flags: 0x10, payload: 100}
	bk := uint16(refValue(s.src, s.daddr, s.sport, s.dport))
	other := s
	other.daddr = netip.MustParseAddr("198.18.0.101")
	for _, c := range []struct {
		name   string
		frame  []byte
		wanted bool
	}{{"foreign-drop", s.frame(), false}, {"ours-keep", s.frame(), true}, {"not-vip", other.frame(), false}} {
		b.Run(c.name, func(b *testing.B) {
			w := f.Wanted()
			w[bk>>6] = 0
			if c.wanted {
				w[bk>>6] = 1 << (bk & 63)
			}
			_, per, err := f.prog.Benchmark(testRunInput(c.frame), b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/frame")
		})
	}
}
