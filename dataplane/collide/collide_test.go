package collide

import (
	"math/rand"
	"net/netip"
	"testing"

	"github.com/shoal-lb/shoal/dataplane"
)

// Every tuple Tuples returns has the base's connection value under seeds
// it never saw, and differs from the base only in the free bits.
func TestTuplesCollideForEverySeed(t *testing.T) {
	base := Tuple{Src: netip.MustParseAddr("198.19.0.1"), Dst: netip.MustParseAddr("198.18.0.100"), SrcPort: 40000, DstPort: 80}
	free := Free(16, 16, 14)
	ts, err := Tuples(base, free, 4096, func(t Tuple) bool { return t.SrcPort != 0 && t.DstPort != 0 })
	if err != nil {
		t.Fatal(err)
	}
	if got := len(Basis(free)); got < 46-32 {
		t.Fatalf("null space of dimension %d for 46 free bits, want at least 14", got)
	}
	rng := rand.New(rand.NewSource(1))
	seen := map[Tuple]bool{}
	for s := 0; s < 8; s++ {
		seed := rng.Uint32()
		want := dataplane.ConnValue(seed, base.Src, base.Dst, base.SrcPort, base.DstPort)
		for _, tp := range ts {
			if got := dataplane.ConnValue(seed, tp.Src, tp.Dst, tp.SrcPort, tp.DstPort); got != want {
				t.Fatalf("seed %#x: %+v has value %#x, base %#x", seed, tp, got, want)
			}
			if s == 0 {
				if seen[tp] {
					t.Fatalf("%+v twice", tp)
				}
				seen[tp] = true
				bk, k := base.Key(), tp.Key()
				for i := range k {
					if (k[i]^bk[i])&^free[i] != 0 {
						t.Fatalf("%+v changes bits outside the free mask", tp)
					}
				}
			}
		}
	}
}

// With 32 free bits or fewer the map is usually injective: no collision.
func TestTooFewFreeBits(t *testing.T) {
	base := Tuple{Src: netip.MustParseAddr("198.19.0.1"), Dst: netip.MustParseAddr("198.18.0.100"), SrcPort: 40000, DstPort: 80}
	if _, err := Tuples(base, Free(8, 16, 0), 2, nil); err == nil {
		t.Fatal("24 free bits gave a collision; CRC32C is full rank on them")
	}
}
