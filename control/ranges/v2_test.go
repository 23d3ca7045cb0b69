package ranges

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// randomMembers draws n members with weights uniform in [0.1, 100], IDs
// unique across calls through next.
func randomMembers(r *rand.Rand, n int, next *int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		*next++
		ms[i] = Member{ID: fmt.Sprintf("m%06d", *next), Weight: 0.1 + 99.9*r.Float64()}
	}
	return ms
}

func mustBuild(t testing.TB, version int, seed uint32, ms []Member) *Table {
	t.Helper()
	tb, err := BuildV(version, seed, ms)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// movement is how many buckets change owner between two tables, and the
// least any pair of tables with these counts must move: the buckets the
// members that shrink give up.
func movement(a, b *Table) (moved, minimum int) {
	for i := range a.Owner {
		if a.OwnerOf(uint16(i)) != b.OwnerOf(uint16(i)) {
			moved++
		}
	}
	ca, cb := a.Count(), b.Count()
	for id, c := range ca {
		minimum += max(0, c-cb[id])
	}
	return moved, minimum
}

// sizeClasses are the member counts the property tests draw from.
var sizeClasses = []struct{ lo, hi int }{{1, 4}, {5, 16}, {17, 64}, {65, 256}}

// instances is how many random member sets each property test draws per
// size class.
func instances() int {
	if testing.Short() || raceEnabled {
		return 4
	}
	return 24
}

// TestV2SharesExact: for random member sets of 1 to 256 with weights from
// 0.1 to 100, every member owns exactly its largest-remainder quota, which
// is within one bucket of 65536·w/Σw.
func TestV2SharesExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 16))
	next := 0
	for _, class := range sizeClasses {
		for range instances() {
			ms := randomMembers(r, class.lo+r.IntN(class.hi-class.lo+1), &next)
			tb := mustBuild(t, AlgoV2, r.Uint32(), ms)
			q := Quotas(ms)
			sum := 0.0
			for _, m := range ms {
				sum += m.Weight
			}
			cnt := tb.Count()
			for i, m := range tb.Members {
				if cnt[m.ID] != q[i] {
					t.Fatalf("%d members: %s owns %d buckets, quota %d", len(ms), m.ID, cnt[m.ID], q[i])
				}
				if exact := Buckets * m.Weight / sum; math.Abs(float64(q[i])-exact) >= 1 {
					t.Fatalf("%d members: %s quota %d, exact %.4f", len(ms), m.ID, q[i], exact)
				}
			}
		}
	}
}

// TestV2AnyInputOrder: the table does not depend on the order of the input.
func TestV2AnyInputOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 16))
	next := 0
	for _, n := range []int{2, 17, 100} {
		ms := randomMembers(r, n, &next)
		seed := r.Uint32()
		a := mustBuild(t, AlgoV2, seed, ms)
		for range 3 {
			r.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
			if b := mustBuild(t, AlgoV2, seed, ms); b.Owner != a.Owner || b.Hash != a.Hash {
				t.Fatalf("%d members: table depends on input order", n)
			}
		}
	}
}

// v2MovementBound is the most v2 may move on one change (a weight redrawn,
// a join, a leave), relative to the minimum, summed over the random
// instances of a size class (Σ moved / Σ minimum), keyed by the class's
// largest size: the figures measured for docs/protocol.md with a margin.
// With 24 instances a class they were at worst 1.004, 1.019, 1.108 and
// 1.532; with the 4 of -short and -race, 1.001, 1.024, 1.111 and 1.675.
// (Version 1 moves exactly the minimum but misses the quotas.)
func v2MovementBound(hi int) float64 {
	if instances() < 24 {
		return map[int]float64{4: 1.02, 16: 1.05, 64: 1.2, 256: 1.8}[hi]
	}
	return map[int]float64{4: 1.02, 16: 1.05, 64: 1.15, 256: 1.6}[hi]
}

// v2StepBound is the same for a weight raised by 10%, which moves few
// buckets, so the corrections weigh more: measured 1.021, 1.069, 1.281 and
// 2.503 (24 instances), 1.030, 1.088, 1.321 and 2.565 (4).
func v2StepBound(hi int) float64 {
	if instances() < 24 {
		return map[int]float64{4: 1.05, 16: 1.15, 64: 1.45, 256: 2.8}[hi]
	}
	return map[int]float64{4: 1.05, 16: 1.12, 64: 1.4, 256: 2.8}[hi]
}

// TestV2Movement: one member's weight change (redrawn, or raised by 10%),
// a join and a leave move close to the minimum the quotas force
// (docs/protocol.md has the figures), and a rebuild with nothing changed
// moves nothing.
func TestV2Movement(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 16))
	next := 0
	for _, class := range sizeClasses {
		moved := map[string]int{}
		minimum := map[string]int{}
		worst := map[string]float64{}
		for range instances() {
			n := class.lo + r.IntN(class.hi-class.lo+1)
			base := randomMembers(r, n, &next)
			seed := r.Uint32()
			a := mustBuild(t, AlgoV2, seed, base)
			if again := mustBuild(t, AlgoV2, seed, base); again.Owner != a.Owner {
				t.Fatal("same input, different table")
			}
			changes := map[string][]Member{}
			w := slices.Clone(base)
			w[r.IntN(n)].Weight = 0.1 + 99.9*r.Float64()
			changes["weight"] = w
			step := slices.Clone(base)
			step[r.IntN(n)].Weight *= 1.1
			changes["weight+10%"] = step
			changes["join"] = append(slices.Clone(base), randomMembers(r, 1, &next)...)
			if n > 1 {
				k := r.IntN(n)
				changes["leave"] = append(slices.Clone(base[:k]), base[k+1:]...)
			}
			for kind, ms := range changes {
				mv, mn := movement(a, mustBuild(t, AlgoV2, seed, ms))
				if mv < mn {
					t.Fatalf("%s: moved %d below the minimum %d: counting is broken", kind, mv, mn)
				}
				moved[kind] += mv
				minimum[kind] += mn
				if mn > 0 {
					worst[kind] = max(worst[kind], float64(mv)/float64(mn))
				}
			}
		}
		bound := v2MovementBound(class.hi)
		for _, kind := range []string{"weight", "weight+10%", "join", "leave"} {
			if minimum[kind] == 0 {
				continue
			}
			bound := bound
			if kind == "weight+10%" {
				bound = v2StepBound(class.hi)
			}
			ratio := float64(moved[kind]) / float64(minimum[kind])
			t.Logf("%d-%d members, %-10s: moved %6d, minimum %6d: %.3f× (worst instance %.2f×)",
				class.lo, class.hi, kind, moved[kind], minimum[kind], ratio, worst[kind])
			if ratio > bound {
				t.Errorf("%d-%d members, %s: moved %.3f× the minimum, bound %.2f×", class.lo, class.hi, kind, ratio, bound)
			}
		}
	}
}

// TestV2Edges: zero, negative, NaN and infinite weights own nothing;
// weights above MaxWeightV2 count as MaxWeightV2; a weight below 2^-21
// rounds to zero; with no positive weight no bucket has an owner.
func TestV2Edges(t *testing.T) {
	one := mustBuild(t, AlgoV2, 1, []Member{{"a", 3}})
	if one.Count()["a"] != Buckets {
		t.Fatalf("a single member owns %d buckets", one.Count()["a"])
	}
	tb := mustBuild(t, AlgoV2, 1, []Member{{"a", 0}, {"b", -1}, {"c", math.NaN()}, {"d", math.Inf(1)}, {"e", 1e-7}, {"f", 2}, {"g", 6}})
	cnt := tb.Count()
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		if cnt[id] != 0 {
			t.Errorf("%s owns %d buckets", id, cnt[id])
		}
	}
	if cnt["f"] != Buckets/4 || cnt["g"] != 3*Buckets/4 {
		t.Errorf("f, g own %d, %d; want a quarter and three quarters", cnt["f"], cnt["g"])
	}
	huge := mustBuild(t, AlgoV2, 1, []Member{{"a", 1e30}, {"b", MaxWeightV2}})
	if c := huge.Count(); c["a"] != Buckets/2 || c["b"] != Buckets/2 {
		t.Errorf("weights above MaxWeightV2: %v, want an even split", c)
	}
	none := mustBuild(t, AlgoV2, 1, []Member{{"a", 0}, {"b", math.NaN()}})
	for b := range none.Owner {
		if none.Owner[b] != NoOwner {
			t.Fatalf("bucket %d owned with no positive weight", b)
		}
	}
	if _, err := BuildV(AlgoV2, 1, []Member{{"a", 1}, {"a", 2}}); err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("duplicate: err = %v", err)
	}
	if _, err := BuildV(3, 1, nil); err == nil || !strings.Contains(err.Error(), "version 3") {
		t.Errorf("version 3: err = %v", err)
	}
	if Quotas([]Member{{"a", 1}, {"a", 1}}) != nil {
		t.Error("Quotas accepted a duplicate")
	}
}

// TestHashNamesTheVersion: the same members make tables of different
// versions with different hashes, and version 1's hash is unchanged.
func TestHashNamesTheVersion(t *testing.T) {
	ms := members(1, 1)
	v1, v2 := mustBuild(t, AlgoV1, 0, ms), mustBuild(t, AlgoV2, 0, ms)
	if v1.Hash == v2.Hash || v1.Algorithm != AlgoV1 || v2.Algorithm != AlgoV2 {
		t.Fatalf("v1 %s (%d), v2 %s (%d)", v1.Hash, v1.Algorithm, v2.Hash, v2.Algorithm)
	}
	v2.Owner = v1.Owner
	if v2.contentHashV2() == v1.Hash {
		t.Fatal("equal owners hash equally across versions")
	}
}

func TestNegotiate(t *testing.T) {
	for _, c := range []struct {
		in   []int
		want int
	}{
		{nil, AlgoV1},
		{[]int{2}, 2},
		{[]int{2, 2, 2}, 2},
		{[]int{2, 1, 2}, 1},
		{[]int{2, 0}, 1},  // a meta without the field
		{[]int{2, 9}, 2},  // a newer member: the most this code builds
		{[]int{-3, 2}, 1}, // nonsense counts as the oldest
	} {
		if got := Negotiate(c.in); got != c.want {
			t.Errorf("Negotiate(%v) = %d, want %d", c.in, got, c.want)
		}
	}
}

// TestOrderIsPermutation: a member's order visits every bucket once, and
// rank inverts bucket.
func TestOrderIsPermutation(t *testing.T) {
	for key := range uint64(8) {
		o := newOrder(splitmix64(key))
		var seen [Buckets]bool
		for k := range Buckets {
			b := o.bucket(k)
			if seen[b] || o.rank(b) != k {
				t.Fatalf("key %d: rank %d -> bucket %d -> rank %d (seen %v)", key, k, b, o.rank(b), seen[b])
			}
			seen[b] = true
		}
	}
}

// TestProposalOrders: the heap and the walk yield the same sequence.
// TestMatchIsGreedyInPairOrder: the merged walks give every pool bucket
// to the member the definition names: (bucket, member) pairs taken in order
// of (arrival time, member index), a pair assigned when the bucket is still
// free and the member below quota. The reference ranks every pair.
func TestMatchIsGreedyInPairOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 16))
	for trial := range 40 {
		n := 1 + r.IntN(300)
		ms := make([]Member, n)
		for i := range ms {
			ms[i] = Member{ID: fmt.Sprintf("m%d-%d", trial, i), Weight: 0.1 + 99.9*r.Float64()}
		}
		s, err := sortedMembers(ms)
		if err != nil {
			t.Fatal(err)
		}
		var tb Table
		bd := &builder{orders: make([]order, n), inv: make([]float64, n), times: unitTimes(), owner: &tb.Owner, rank: make([]int32, Buckets)}
		wq := make([]uint64, n)
		var sum uint64
		for i, m := range s {
			wq[i] = quantize(m.Weight)
			sum += wq[i]
			bd.active = append(bd.active, i)
			bd.orders[i] = newOrder(memberSeed(uint32(trial), m.ID))
			bd.inv[i] = 1 / float64(wq[i])
		}
		bd.quota = quotas(wq)
		pool, count := bd.release(bd.race(sum))
		type pair struct {
			at   float64
			i, k int
		}
		inPool := map[uint16]bool{}
		for _, b := range pool {
			inPool[b] = true
		}
		var pairs []pair
		need := map[int]int{}
		for _, i := range bd.active {
			if d := bd.quota[i] - count[i]; d > 0 {
				need[i] = d
				for _, b := range pool {
					k := bd.orders[i].rank(b)
					pairs = append(pairs, pair{bd.arrival(i, k), i, k})
				}
			}
		}
		slices.SortFunc(pairs, func(a, b pair) int {
			if c := cmp.Compare(a.at, b.at); c != 0 {
				return c
			}
			return cmp.Compare(a.i, b.i)
		})
		want := map[uint16]int{}
		for _, p := range pairs {
			b := bd.orders[p.i].bucket(p.k)
			if _, taken := want[b]; !taken && need[p.i] > 0 {
				want[b] = p.i
				need[p.i]--
			}
		}
		bd.match(pool, count)
		for _, b := range pool {
			if w, ok := want[b]; !ok || int(tb.Owner[b]) != w {
				t.Fatalf("trial %d (%d members, pool %d): bucket %d to member %d, the pair order gives %d (%v)", trial, n, len(pool), b, tb.Owner[b], w, ok)
			}
		}
	}
}

// unitTimesDigest is SHA-256 over the unit arrival times in rank order, as
// 8-byte big-endian integers: another implementation checks its table
// against it (docs/protocol.md).
func unitTimesDigest() string {
	h := sha256.New()
	var b [8]byte
	times := unitTimes()
	for k := range Buckets {
		binary.BigEndian.PutUint64(b[:], uint64(times[(k&chunkMask)<<chunkBits|k>>rankShift]))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestUnitTimes: the table rises with the rank, matches −log2(1 − (k+½)/65536)
// to within a few units in the last place of its 32 fraction bits, and
// log2Q32 is exact on powers of two.
func TestUnitTimes(t *testing.T) {
	for e := range 17 {
		if got := log2Q32(1 << e); got != uint64(e)<<32 {
			t.Fatalf("log2Q32(2^%d) = %#x", e, got)
		}
	}
	times := unitTimes()
	at := func(k int) float64 { return times[(k&chunkMask)<<chunkBits|k>>rankShift] }
	for k := range Buckets {
		if k > 0 && at(k) <= at(k-1) {
			t.Fatalf("unit time does not rise at rank %d", k)
		}
		want := -math.Log2(1-(float64(k)+0.5)/Buckets) * (1 << 32)
		if math.Abs(at(k)-want) > 8 {
			t.Fatalf("rank %d: %v, want %v", k, at(k), want)
		}
	}
}

// TestGoldenV2 pins version 2: table hashes and first owners for fixed
// inputs, and the digest of the unit arrival times.
func TestGoldenV2(t *testing.T) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "unit times sha256=%s\n", unitTimesDigest())
	many := make([]float64, 64)
	for i := range many {
		many[i] = float64(1 + i%4)
	}
	for _, c := range []struct {
		seed uint32
		ws   []float64
	}{{0, []float64{1}}, {0x5eed, []float64{1, 2, 1}}, {0x5eed, []float64{1, 2, 3}}, {42, []float64{1, 1, 1, 1, 1, 1, 1, 1}},
		{0x5eed, []float64{0.1, 100, 0, 37.5}}, {7, many}} {
		tb := mustBuild(t, AlgoV2, c.seed, members(c.ws...))
		fmt.Fprintf(&sb, "seed=%#x weights=%v hash=%s owners[0:8]=", c.seed, c.ws, tb.Hash)
		for b := range 8 {
			fmt.Fprintf(&sb, "%s,", tb.OwnerOf(uint16(b)))
		}
		sb.WriteString("\n")
	}
	path := "testdata/tables_v2.golden"
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sb.String() != string(want) {
		t.Fatalf("version-2 tables changed:\n%s\nwant\n%s", sb.String(), want)
	}
}

func benchMembers(n int) []Member {
	r := rand.New(rand.NewPCG(uint64(n), 0x5eed))
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("s%04d", i+1), Weight: 0.1 + 99.9*r.Float64()}
	}
	return ms
}

// BenchmarkBuildV2 times a version-2 build (goal: under 5 ms at 256
// members on one core); BenchmarkBuildV1 is the old builder beside it.
func BenchmarkBuildV2(b *testing.B) {
	unitTimes()
	for _, n := range []int{3, 16, 64, 256} {
		ms := benchMembers(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := BuildV(AlgoV2, 7, ms); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBuildV1(b *testing.B) {
	for _, n := range []int{3, 16, 64, 256} {
		ms := benchMembers(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				if _, err := BuildV(AlgoV1, 7, ms); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
