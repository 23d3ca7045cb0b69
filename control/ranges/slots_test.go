package ranges

import (
	"math/rand/v2"
	"testing"
)

// TestSlotsAVX2MatchesGo: the assembly slots equal the pure-Go ones for
// random masks and multipliers at every length, and it writes nothing past
// the length rounded up to a multiple of 16.
func TestSlotsAVX2MatchesGo(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2 version on this CPU or build")
	}
	r := rand.New(rand.NewPCG(5, 16))
	const sentinel = 0xbeef
	for trial := range 3000 {
		in, out := r.Uint32N(chunkSize), r.Uint32N(chunkSize)
		m0, m1, m2 := r.Uint32N(chunkSize)|1, r.Uint32N(chunkSize)|1, r.Uint32N(chunkSize)|1
		n := chunkSize
		if trial%3 != 0 {
			n = r.IntN(chunkSize + 1)
		}
		var want, got [chunkSize]uint16
		for j := range got {
			want[j], got[j] = sentinel, sentinel
		}
		slotsGo(&want, n, in, out, m0, m1, m2)
		slotsAVX2(&got, n, in, out, m0, m1, m2)
		for j := range n {
			if got[j] != want[j] {
				t.Fatalf("in %d out %d m %d,%d,%d n %d: slot %d is %d, want %d", in, out, m0, m1, m2, n, j, got[j], want[j])
			}
		}
		for j := (n + 15) &^ 15; j < chunkSize; j++ {
			if got[j] != sentinel {
				t.Fatalf("n %d: wrote entry %d", n, j)
			}
		}
	}
}

// TestRowAVX2MatchesGo: the assembly rows equal the pure-Go ones, and
// both equal order.bucket, for random orders and rows.
func TestRowAVX2MatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 16))
	for range 3000 {
		o := newOrder(r.Uint64())
		j := r.IntN(Buckets / chunks)
		var want, got [chunks]uint16
		rowGo(&want, &o.in, &o.out, 0, uint32(j), uint32(o.mul[0]), uint32(o.mul[1]), uint32(o.mul[2]))
		for c := range chunks {
			if b := o.bucket(j<<rankShift | c); want[c] != b {
				t.Fatalf("row %d chunk %d: rowGo %d, order.bucket %d", j, c, want[c], b)
			}
		}
		if !useAVX2 {
			continue
		}
		rowAVX2(&got, &o.in, &o.out, uint32(j), uint32(o.mul[0]), uint32(o.mul[1]), uint32(o.mul[2]))
		if got != want {
			t.Fatalf("row %d: rowAVX2 %v, rowGo %v", j, got, want)
		}
	}
}

// TestBuildV2SameWithoutAVX2: whole tables built with and without the
// assembly slots are equal.
func TestBuildV2SameWithoutAVX2(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2 version on this CPU or build")
	}
	defer func() { useAVX2 = true }()
	r := rand.New(rand.NewPCG(6, 16))
	next := 0
	for _, n := range []int{1, 2, 3, 7, 16, 40, 64, 130, 256} {
		ms := randomMembers(r, n, &next)
		seed := r.Uint32()
		useAVX2 = true
		a := mustBuild(t, AlgoV2, seed, ms)
		useAVX2 = false
		b := mustBuild(t, AlgoV2, seed, ms)
		if a.Owner != b.Owner || a.Hash != b.Hash {
			t.Fatalf("%d members: the AVX2 build differs from the pure-Go one", n)
		}
	}
}
