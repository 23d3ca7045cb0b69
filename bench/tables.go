package bench

// Range tables: build time, share error and movement of every table
// algorithm side by side, on the same member sets in the same run. Pure
// computation (no root, no network, seconds); `shoal bench tables` prints
// it and `shoal bench converge` prints the same rows beside its lab and
// simulation figures.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/control/ranges"
)

// Goals printed beside the table figures (issue 16).
const (
	GoalBuild    = "goal < 5 ms at 256 members, one core"
	GoalShare    = "goal ≤ 1 bucket off the exact quota"
	GoalMovement = "goal ≤ 1.1× the minimum"
)

// TableSizes are the member counts `shoal bench tables` reports by default.
var TableSizes = []int{3, 16, 64, 256}

// TablesOptions drive RunTables.
type TablesOptions struct {
	Sizes    []int // member counts (TableSizes)
	Versions []int // table algorithms (every one this build knows)
	Builds   int   // timed builds per size and version (5)
	Changes  int   // random changes of each kind per size (8)
	Log      func(format string, a ...any)
}

// Change kinds measured: one member's weight redrawn, one member's weight
// raised by 10% (an availability step), a member joining, a member leaving.
var changeKinds = []string{"weight", "step", "join", "leave"}

var changeNames = map[string]string{"weight": "one weight redrawn", "step": "one weight +10%",
	"join": "a member joins", "leave": "a member leaves"}

// TableResult is what one algorithm did at one member count.
type TableResult struct {
	Version int
	Members int
	BuildMs []float64 // one build each, random weights, a new seed each
	// BuildCPUMs is the CPU time of the building thread for the same
	// builds: what "on one core" means, and what a machine shared with
	// other work leaves nearly alone (wall time counts the time others
	// held the core).
	BuildCPUMs []float64
	// Share error over every table built: per table, the largest
	// |buckets − 65536·w/Σw| (in buckets) and the largest relative error
	// |buckets − 65536·w/Σw| / (65536·w/Σw).
	ErrBuckets, ErrRelative []float64
	// Per change kind: buckets moved and the minimum the two tables'
	// counts force (Σ over members of max(0, before − after)), summed over
	// the changes, and each change's moved/minimum.
	Moved, Minimum map[string]int
	Ratios         map[string][]float64
}

// MaxTableMembers bounds a member count (version 1 at 1024 members takes
// seconds a build).
const MaxTableMembers = 1024

func (o *TablesOptions) setDefaults() {
	if o.Sizes == nil {
		o.Sizes = TableSizes
	}
	if o.Versions == nil {
		for v := ranges.AlgoV1; v <= ranges.AlgoLatest; v++ {
			o.Versions = append(o.Versions, v)
		}
	}
	if o.Builds <= 0 {
		o.Builds = 5
	}
	if o.Changes <= 0 {
		o.Changes = 8
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

// RunTables measures every version at every size. The member sets are the
// same for every version: weights uniform in [1, 4] (the spread of node
// capacities; control/ranges's property tests cover 0.1 to 100) from a
// fixed random source, so runs are comparable.
func RunTables(o TablesOptions) ([]TableResult, error) {
	o.setDefaults()
	for _, n := range o.Sizes {
		if n < 2 || n > MaxTableMembers {
			return nil, fmt.Errorf("bench tables: member count %d must be between 2 and %d", n, MaxTableMembers)
		}
	}
	for _, v := range o.Versions {
		if v < ranges.AlgoV1 || v > ranges.AlgoLatest {
			return nil, fmt.Errorf("bench tables: table algorithm %d unknown: this build knows %d to %d", v, ranges.AlgoV1, ranges.AlgoLatest)
		}
		// The first build of a version pays one-time set-up (version 2's
		// time table); it is not what a node pays on a change.
		if _, err := ranges.BuildV(v, 0, []ranges.Member{{ID: "warm-up", Weight: 1}}); err != nil {
			return nil, err
		}
	}
	var out []TableResult
	for _, n := range o.Sizes {
		for _, v := range o.Versions {
			r, err := measureTables(v, n, o)
			if err != nil {
				return out, err
			}
			o.Log("tables: v%d, %d members: build %.2f ms of CPU median, share off by %.2f buckets at most, movement %.3f× / %.3f× / %.3f× / %.3f× (weight redrawn, +10%%, join, leave)",
				v, n, Percentile(r.BuildCPUMs, 0.5), slices.Max(r.ErrBuckets), r.aggregate("weight"), r.aggregate("step"), r.aggregate("join"), r.aggregate("leave"))
			out = append(out, r)
		}
	}
	return out, nil
}

func (r TableResult) aggregate(kind string) float64 {
	if r.Minimum[kind] == 0 {
		return math.NaN()
	}
	return float64(r.Moved[kind]) / float64(r.Minimum[kind])
}

func randomTableMembers(rng *rand.Rand, n int, next *int) []ranges.Member {
	ms := make([]ranges.Member, n)
	for i := range ms {
		*next++
		ms[i] = ranges.Member{ID: fmt.Sprintf("m%05d", *next), Weight: randomWeight(rng)}
	}
	return ms
}

func randomWeight(rng *rand.Rand) float64 { return 1 + 3*rng.Float64() }

func measureTables(v, n int, o TablesOptions) (TableResult, error) {
	r := TableResult{Version: v, Members: n, Moved: map[string]int{}, Minimum: map[string]int{}, Ratios: map[string][]float64{}}
	// The same random sources for every version: the same member sets,
	// and the changes do not depend on how many builds are timed.
	rng := rand.New(rand.NewPCG(uint64(n), 0x7ab1e5))
	timing := rand.New(rand.NewPCG(uint64(n), 0x7ab1e6))
	next := 0
	build := func(seed uint32, ms []ranges.Member) (*ranges.Table, error) {
		t, err := ranges.BuildV(v, seed, ms)
		if err == nil {
			r.addShareError(t, ms)
		}
		return t, err
	}
	timed := randomTableMembers(timing, n, &next)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range o.Builds {
		seed := timing.Uint32()
		t0, c0 := time.Now(), threadCPUMs()
		if _, err := ranges.BuildV(v, seed, timed); err != nil {
			return r, err
		}
		r.BuildCPUMs = append(r.BuildCPUMs, threadCPUMs()-c0)
		r.BuildMs = append(r.BuildMs, msSince(t0))
	}
	for range o.Changes {
		base := randomTableMembers(rng, n, &next)
		seed := rng.Uint32()
		before, err := build(seed, base)
		if err != nil {
			return r, err
		}
		reweighted := slices.Clone(base)
		reweighted[rng.IntN(n)].Weight = randomWeight(rng)
		stepped := slices.Clone(base)
		stepped[rng.IntN(n)].Weight *= 1.1
		k := rng.IntN(n)
		changed := map[string][]ranges.Member{
			"weight": reweighted,
			"step":   stepped,
			"join":   append(slices.Clone(base), randomTableMembers(rng, 1, &next)...),
			"leave":  append(slices.Clone(base[:k]), base[k+1:]...),
		}
		for _, kind := range changeKinds {
			after, err := build(seed, changed[kind])
			if err != nil {
				return r, err
			}
			moved, minimum := Movement(before, after)
			r.Moved[kind] += moved
			r.Minimum[kind] += minimum
			if minimum > 0 {
				r.Ratios[kind] = append(r.Ratios[kind], float64(moved)/float64(minimum))
			}
		}
	}
	return r, nil
}

// threadCPUMs is the calling thread's CPU time (user and system) in ms;
// the caller holds its OS thread.
func threadCPUMs() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return math.NaN()
	}
	return float64(ts.Nano()) / 1e6
}

// addShareError records how far t's shares are from 65536·w/Σw.
func (r *TableResult) addShareError(t *ranges.Table, ms []ranges.Member) {
	sum := 0.0
	for _, m := range ms {
		sum += m.Weight
	}
	cnt := t.Count()
	worst, worstRel := 0.0, 0.0
	for _, m := range ms {
		exact := ranges.Buckets * m.Weight / sum
		d := math.Abs(float64(cnt[m.ID]) - exact)
		worst = math.Max(worst, d)
		worstRel = math.Max(worstRel, d/exact)
	}
	r.ErrBuckets = append(r.ErrBuckets, worst)
	r.ErrRelative = append(r.ErrRelative, 100*worstRel)
}

// Movement is how many buckets change owner from a to b, and the fewest
// any two tables with these counts must move: the buckets the members that
// shrink give up, Σ max(0, before − after) (a member absent from a table
// counts zero there).
func Movement(a, b *ranges.Table) (moved, minimum int) {
	for i := range a.Owner {
		if a.OwnerOf(uint16(i)) != b.OwnerOf(uint16(i)) {
			moved++
		}
	}
	after := b.Count()
	for id, c := range a.Count() {
		minimum += max(0, c-after[id])
	}
	return moved, minimum
}

// TableFigures turns the results into figures, the versions of one member
// count side by side.
func TableFigures(res []TableResult) []Figure {
	var figs []Figure
	add := func(r TableResult, metric, unit string, samples []float64, anchor, note string) {
		figs = append(figs, newFigure("tables", "table-build", r.Members, fmt.Sprintf("v%d %s", r.Version, metric), unit, samples, 0, anchor, note))
	}
	rows := []func(TableResult){
		func(r TableResult) {
			add(r, "build time, CPU", "ms", r.BuildCPUMs, GoalBuild, fmt.Sprintf("least %.1f ms; the building thread's CPU time", slices.Min(r.BuildCPUMs)))
		},
		func(r TableResult) {
			add(r, "build time, wall clock", "ms", r.BuildMs, "", fmt.Sprintf("fastest %.1f ms (the least disturbed on a shared machine)", slices.Min(r.BuildMs)))
		},
		func(r TableResult) {
			add(r, "largest share error, buckets", "buckets", r.ErrBuckets, GoalShare, "per table")
		},
		func(r TableResult) {
			add(r, "largest relative share error", "%", r.ErrRelative, "", "per table")
		},
	}
	for _, kind := range changeKinds {
		rows = append(rows, func(r TableResult) {
			add(r, "movement, "+changeNames[kind],
				"× minimum", r.Ratios[kind], GoalMovement,
				fmt.Sprintf("all changes: %.3f× (%d / %d buckets)", r.aggregate(kind), r.Moved[kind], r.Minimum[kind]))
		})
	}
	for i := 0; i < len(res); {
		j := i
		for j < len(res) && res[j].Members == res[i].Members {
			j++
		}
		for _, row := range rows {
			for _, r := range res[i:j] {
				row(r)
			}
		}
		i = j
	}
	return figs
}
