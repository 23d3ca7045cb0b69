package dpbench

import (
	"math"
	"testing"
)

func TestFloodSummary(t *testing.T) {
	r := FloodReport{
		Random:    []float64{4, 5, 2, 4.4, 5},
		Colliding: []float64{3.6, 5, 2.2, 4.4, 4},
	}
	r.summarize()
	near := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	// Ratios within each round: 0.9, 1, 1.1, 1, 0.8.
	near("ratio median", r.RatioMedian, 1)
	near("ratio min", r.RatioMin, 0.8)
	near("ratio max", r.RatioMax, 1.1)
	near("random median", r.RandomMedian, 4.4)
	near("colliding median", r.CollidingMedian, 4)
	near("cost", r.Cost, 0)
	near("goal", r.Goal, 0.1)
	if len(r.Ratios) != 5 {
		t.Fatalf("%d ratios, want 5", len(r.Ratios))
	}
	// An even count takes the mean of the middle two.
	near("even median", median([]float64{3, 1, 4, 2}), 2.5)
}
