package bench

import (
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/control/ranges"
)

// TestRunTables: both algorithms on small member sets, the same sets for
// both. Version 1 moves exactly the minimum and misses the quotas by many
// buckets; version 2 hits them and moves a little more (bounds from the
// ranges package's own tests, loosened for two changes of each kind).
func TestRunTables(t *testing.T) {
	res, err := RunTables(TablesOptions{Sizes: []int{3, 16}, Builds: 2, Changes: 2, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("%d results, want 2 sizes × 2 versions", len(res))
	}
	for _, r := range res {
		if len(r.BuildMs) != 2 || r.BuildMs[0] <= 0 || len(r.BuildCPUMs) != 2 || !(r.BuildCPUMs[0] > 0) || len(r.ErrBuckets) != 2*5 {
			t.Fatalf("v%d, %d members: builds %v (CPU %v), %d share samples", r.Version, r.Members, r.BuildMs, r.BuildCPUMs, len(r.ErrBuckets))
		}
		// The CPU time is the thread's own: never more than the wall
		// clock (a microsecond's slack for the two clocks' reads).
		for i := range r.BuildMs {
			if r.BuildCPUMs[i] > r.BuildMs[i]+0.001 {
				t.Errorf("v%d, %d members: build %d took %.3f ms of CPU in %.3f ms", r.Version, r.Members, i, r.BuildCPUMs[i], r.BuildMs[i])
			}
		}
		for _, kind := range changeKinds {
			if r.Minimum[kind] <= 0 || r.Moved[kind] < r.Minimum[kind] || len(r.Ratios[kind]) != 2 {
				t.Fatalf("v%d, %d members, %s: moved %d, minimum %d, ratios %v", r.Version, r.Members, kind, r.Moved[kind], r.Minimum[kind], r.Ratios[kind])
			}
		}
		switch r.Version {
		case ranges.AlgoV1:
			if r.aggregate("leave") != 1 || maxOf(r.ErrBuckets) < 5 {
				t.Errorf("v1, %d members: leave moved %.3f× the minimum, shares off by %.1f buckets", r.Members, r.aggregate("leave"), maxOf(r.ErrBuckets))
			}
		case ranges.AlgoV2:
			if maxOf(r.ErrBuckets) >= 1 {
				t.Errorf("v2, %d members: a share is %.2f buckets off", r.Members, maxOf(r.ErrBuckets))
			}
			for _, kind := range changeKinds {
				if a := r.aggregate(kind); a > 1.2 {
					t.Errorf("v2, %d members, %s: %.3f× the minimum", r.Members, kind, a)
				}
			}
		}
	}
	figs := TableFigures(res)
	if len(figs) != 2*2*8 {
		t.Fatalf("%d figures", len(figs))
	}
	if !strings.HasPrefix(figs[0].Metric, "v1 build") || !strings.HasPrefix(figs[1].Metric, "v2 build") || figs[0].Members != 3 {
		t.Errorf("first rows %q, %q: want the versions side by side", figs[0].Metric, figs[1].Metric)
	}
	if _, err := RunTables(TablesOptions{Sizes: []int{1}}); err == nil {
		t.Error("1 member accepted")
	}
	if _, err := RunTables(TablesOptions{Sizes: []int{3}, Versions: []int{7}}); err == nil {
		t.Error("version 7 accepted")
	}
}

func maxOf(xs []float64) float64 { return Percentile(xs, 1) }
