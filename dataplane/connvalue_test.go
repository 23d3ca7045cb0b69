package dataplane

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

type connVector struct {
	seed         uint32
	src, dst     netip.Addr
	sport, dport uint16
}

var connVectors = []connVector{
	{0, netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("0.0.0.0"), 0, 0},
	{0x5eed, netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.100"), 40000, 80},
	{0x5eed, netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.100"), 40001, 80},
	{0x5eed, netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.100"), 40000, 443},
	{0x5eed, netip.MustParseAddr("198.19.255.254"), netip.MustParseAddr("198.18.0.100"), 65535, 80},
	{0xffffffff, netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.1"), 1234, 8080},
	{0x12345678, netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("1.2.3.4"), 1, 2},
	{0x5eed, netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::100"), 40000, 80},
	{0, netip.MustParseAddr("::1"), netip.MustParseAddr("::2"), 1, 1},
}

// TestCRC32CCheckValue proves the Go side is CRC32C: the standard check
// value of "123456789" with the usual pre- and post-inversion.
func TestCRC32CCheckValue(t *testing.T) {
	if got := ^crcRaw(0xffffffff, []byte("123456789")); got != 0xe3069283 {
		t.Fatalf("CRC32C check value %#x, want 0xe3069283", got)
	}
}

func TestConnValueGolden(t *testing.T) {
	path := "testdata/connvalue.golden"
	if *update {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(f, "# seed src dst sport dport -> value bucket (docs/protocol.md)")
		for _, v := range connVectors {
			cv := ConnValue(v.seed, v.src, v.dst, v.sport, v.dport)
			fmt.Fprintf(f, "%#08x %s %s %d %d %#08x %d\n", v.seed, v.src, v.dst, v.sport, v.dport, cv, Bucket(cv))
		}
		f.Close()
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		fs := strings.Fields(line)
		seed, _ := strconv.ParseUint(fs[0], 0, 32)
		src, dst := netip.MustParseAddr(fs[1]), netip.MustParseAddr(fs[2])
		sp, _ := strconv.Atoi(fs[3])
		dp, _ := strconv.Atoi(fs[4])
		want, _ := strconv.ParseUint(fs[5], 0, 32)
		wantBucket, _ := strconv.Atoi(fs[6])
		goV := ConnValue(uint32(seed), src, dst, uint16(sp), uint16(dp))
		cV := ConnValueC(uint32(seed), src, dst, uint16(sp), uint16(dp))
		if goV != uint32(want) || cV != uint32(want) || int(Bucket(goV)) != wantBucket {
			t.Errorf("%s: Go %#08x, C %#08x, golden %#08x bucket %d", line, goV, cV, want, wantBucket)
		}
		n++
	}
	if n != len(connVectors) {
		t.Errorf("golden file has %d vectors, want %d (run go test -update)", n, len(connVectors))
	}
}

// TestConnValueAgreesRandom compares C and Go over many tuples.
func TestConnValueAgreesRandom(t *testing.T) {
	x := uint64(88172645463325252)
	next := func() uint64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x }
	for i := 0; i < 20000; i++ {
		r := next()
		var a, b [4]byte
		for j := range a {
			a[j], b[j] = byte(r>>(8*j)), byte(r>>(8*j+32))
		}
		s, d := netip.AddrFrom4(a), netip.AddrFrom4(b)
		seed := uint32(next())
		sp, dp := uint16(next()), uint16(next())
		if g, c := ConnValue(seed, s, d, sp, dp), ConnValueC(seed, s, d, sp, dp); g != c {
			t.Fatalf("%v %v %d %d seed %#x: Go %#x C %#x", s, d, sp, dp, seed, g, c)
		}
	}
}
