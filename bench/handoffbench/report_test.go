package handoffbench

import (
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/api"
)

// lat builds an api.Latency from per-bucket counts (the last one the
// overflow) over bounds 50, 100, 500 µs.
func lat(counts [4]uint64, meanUS, maxUS float64) api.Latency {
	l := api.Latency{MeanUS: meanUS, MaxUS: maxUS}
	var cum uint64
	for i, b := range []float64{50, 100, 500} {
		cum += counts[i]
		l.Buckets = append(l.Buckets, api.LatencyBucket{LeUS: b, Count: cum})
	}
	l.Count = cum + counts[3]
	return l
}

// TestLatencyBetween: the window's histogram is after − before per origin,
// summed over the origins, the destination's own histogram left out; the
// quantiles are bucket bounds, the overflow bucket reports the maximum.
func TestLatencyBetween(t *testing.T) {
	before := map[string]api.Handoffs{
		"n1": {Latency: lat([4]uint64{10, 0, 0, 0}, 40, 45)},
		"n3": {Latency: lat([4]uint64{0, 5, 0, 0}, 80, 90)},
	}
	after := map[string]api.Handoffs{
		"n1": {Latency: lat([4]uint64{10, 0, 98, 0}, (10*40+98*300)/108.0, 450)},
		"n3": {Latency: lat([4]uint64{0, 5, 0, 2}, (5*80+2*900)/7.0, 900)},
		"n2": {Latency: lat([4]uint64{0, 0, 0, 1000}, 5000, 9000)}, // the destination: ignored
	}
	f := latencyBetween("x", before, after)
	if f.Count != 100 {
		t.Fatalf("count %d, want 100 (98 + 2)", f.Count)
	}
	if f.P50US != 500 || f.P99US != 900 || !f.Over {
		t.Errorf("p50 %v, p99 %v (over %v); want 500 and the maximum 900 beyond the last bucket", f.P50US, f.P99US, f.Over)
	}
	if want := (98*300 + 2*900) / 100.0; f.MeanUS < want-0.01 || f.MeanUS > want+0.01 {
		t.Errorf("mean %v, want %v", f.MeanUS, want)
	}
	if f.Ratio != f.P99US/GoalP99US {
		t.Errorf("ratio %v", f.Ratio)
	}
}

// TestStepsBetween: steps from every node, differenced and in the order of
// a handoff.
func TestStepsBetween(t *testing.T) {
	before := map[string]api.Handoffs{"n1": {Steps: map[string]api.Latency{"origin_freeze": lat([4]uint64{3, 0, 0, 0}, 20, 30)}}}
	after := map[string]api.Handoffs{
		"n1": {Steps: map[string]api.Latency{"origin_freeze": lat([4]uint64{3, 4, 0, 0}, (3*20+4*70)/7.0, 90),
			"origin_commit": lat([4]uint64{0, 0, 4, 0}, 400, 480)}},
		"n2": {Steps: map[string]api.Latency{"dest_commit": lat([4]uint64{0, 0, 4, 0}, 300, 380), "dest_adopt": lat([4]uint64{4, 0, 0, 0}, 10, 12)}},
	}
	got := stepsBetween(before, after)
	var names []string
	for _, s := range got {
		names = append(names, s.Step)
	}
	if strings.Join(names, " ") != "origin_freeze dest_adopt dest_commit origin_commit" {
		t.Fatalf("steps %v", names)
	}
	if got[0].Count != 4 || got[0].P50US != 100 || got[0].MeanUS < 69.99 || got[0].MeanUS > 70.01 {
		t.Errorf("origin_freeze %+v; want 4 moves, p50 ≤ 100, mean 70", got[0])
	}
}

// TestGoals: the 1 MiB handoff ÷ relay ratio is held against its goal.
func TestGoals(t *testing.T) {
	r := &Report{Concurrency: 8, Runs: []RunResult{
		{Mode: "handoff", Object: "1m", Concurrency: 8, MBps: 150},
		{Mode: "relay", Object: "1m", Concurrency: 8, MBps: 30},
		{Mode: "local", Object: "1m", Concurrency: 8, MBps: 300},
		{Mode: "handoff", Object: "1m", Concurrency: 1, MBps: 1}, // the latency run: not a throughput figure
	}}
	var found bool
	for _, g := range r.Goals() {
		if g.Name == "handoff_to_relay_mbps_1m" {
			found = true
			if g.Value != 5 || g.Goal != GoalRelayRatio1M || g.Ratio != 2.5 {
				t.Errorf("%+v", g)
			}
		}
	}
	if !found {
		t.Error("no handoff_to_relay_mbps_1m figure")
	}
}
