package ranges

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

func members(ws ...float64) []Member {
	var ms []Member
	for i, w := range ws {
		ms = append(ms, Member{ID: fmt.Sprintf("n%d", i+1), Weight: w})
	}
	return ms
}

// TestShares: every share within one percentage point of w/Σw.
func TestShares(t *testing.T) {
	for _, ws := range [][]float64{{1}, {1, 1}, {1, 2, 1}, {1, 2, 3}, {5, 1, 1, 1, 1, 1, 1, 1}, {0.1, 100}} {
		tb, err := Build(0x5eed, members(ws...))
		if err != nil {
			t.Fatal(err)
		}
		sum := 0.0
		for _, w := range ws {
			sum += w
		}
		cnt := tb.Count()
		for i, w := range ws {
			got := float64(cnt[fmt.Sprintf("n%d", i+1)]) / Buckets
			if math.Abs(got-w/sum) > 0.01 {
				t.Errorf("weights %v: n%d share %.4f, want %.4f ± 0.01", ws, i+1, got, w/sum)
			}
		}
	}
}

func TestDeterministicInAnyOrder(t *testing.T) {
	ms := members(1, 2, 3, 4, 5)
	a, _ := Build(7, ms)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5; i++ {
		r.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		b, _ := Build(7, ms)
		if a.Hash != b.Hash || a.Owner != b.Owner {
			t.Fatal("table depends on member order")
		}
	}
}

// TestMinimalMovement: changing one weight moves buckets only to or from
// that member; removing a member moves only its buckets.
func TestMinimalMovement(t *testing.T) {
	base := members(1, 2, 3, 1)
	a, _ := Build(9, base)
	changed := members(1, 2, 3, 1)
	changed[1].Weight = 4
	b, _ := Build(9, changed)
	for i := range a.Owner {
		oa, ob := a.OwnerOf(uint16(i)), b.OwnerOf(uint16(i))
		if oa != ob && oa != "n2" && ob != "n2" {
			t.Fatalf("bucket %d moved %s -> %s on n2's weight change", i, oa, ob)
		}
	}
	removed, _ := Build(9, append(append([]Member{}, base[:2]...), base[3:]...))
	moved := 0
	for i := range a.Owner {
		oa, ob := a.OwnerOf(uint16(i)), removed.OwnerOf(uint16(i))
		if oa != ob {
			moved++
			if oa != "n3" {
				t.Fatalf("bucket %d moved %s -> %s when n3 left", i, oa, ob)
			}
		}
	}
	if moved != a.Count()["n3"] {
		t.Fatalf("moved %d buckets, n3 owned %d", moved, a.Count()["n3"])
	}
}

func TestZeroWeightsOwnNothing(t *testing.T) {
	tb, _ := Build(1, members(0, 1))
	if tb.Count()["n1"] != 0 || tb.Count()["n2"] != Buckets {
		t.Fatalf("counts %v", tb.Count())
	}
	none, _ := Build(1, members(0, math.NaN(), -1))
	if none.OwnerOf(0) != "" {
		t.Fatal("bucket owned with no positive weight")
	}
}

func TestDuplicateMember(t *testing.T) {
	if _, err := Build(1, []Member{{"a", 1}, {"a", 2}}); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestGolden pins the frozen format: hashes of tables for fixed inputs.
func TestGolden(t *testing.T) {
	var sb strings.Builder
	for _, c := range []struct {
		seed uint32
		ws   []float64
	}{{0, []float64{1}}, {0x5eed, []float64{1, 2, 1}}, {0x5eed, []float64{1, 2, 3}}, {42, []float64{1, 1, 1, 1, 1, 1, 1, 1}}} {
		tb, _ := Build(c.seed, members(c.ws...))
		fmt.Fprintf(&sb, "seed=%#x weights=%v hash=%s owners[0:8]=", c.seed, c.ws, tb.Hash)
		for b := 0; b < 8; b++ {
			fmt.Fprintf(&sb, "%s,", tb.OwnerOf(uint16(b)))
		}
		sb.WriteString("\n")
	}
	path := "testdata/tables.golden"
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(path, []byte(sb.String()), 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sb.String() != string(want) {
		t.Fatalf("tables changed:\n%s\nwant\n%s", sb.String(), want)
	}
}

// TestLargestRelativeDeviation reports, beside the absolute bound, how far
// the smallest share strays in relative terms: random hashing cannot keep
// that small for hundreds of members (65536 buckets over 256 members is 256
// buckets each, ±6% at one standard deviation).
func TestLargestRelativeDeviation(t *testing.T) {
	for _, n := range []int{3, 16, 64, 256} {
		ws := make([]float64, n)
		sum := 0.0
		for i := range ws {
			ws[i] = float64(1 + i%4)
			sum += ws[i]
		}
		tb, err := Build(0x5eed, members(ws...))
		if err != nil {
			t.Fatal(err)
		}
		cnt := tb.Count()
		worstAbs, worstRel := 0.0, 0.0
		for i, w := range ws {
			got := float64(cnt[fmt.Sprintf("n%d", i+1)]) / Buckets
			want := w / sum
			worstAbs = math.Max(worstAbs, math.Abs(got-want))
			worstRel = math.Max(worstRel, math.Abs(got-want)/want)
		}
		t.Logf("%3d members (weights 1..4): largest absolute deviation %.4f, largest relative deviation %.1f%%", n, worstAbs, 100*worstRel)
		if worstAbs > 0.01 {
			t.Errorf("%d members: share off by %.4f > 0.01", n, worstAbs)
		}
	}
}
