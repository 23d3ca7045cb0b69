package dpbench

import (
	"fmt"
	"sort"

	"github.com/shoal-lb/shoal/dataplane"
)

// FloodGoal is issue 18's bound on what a SYN flood whose tuples all share
// one connection value may cost legitimate traffic beyond a random flood
// of the same size: under 10 %.
const FloodGoal = 0.10

// FloodReport compares the two SYN floods beside established traffic over
// several rounds, alternated in one run, so that the machine's drift
// reaches both alike. Each round runs both floods (in turn first), each a
// fresh worker with the same million established flows, for the run's
// duration. The legitimate rate is the established ACKs the worker
// decided per second of its CPU time: half the frames, since the replayed
// pool interleaves one ACK with one flood SYN.
type FloodReport struct {
	Rounds int `json:"rounds"`
	// Legitimate Mpps per CPU second, one entry per round.
	Random    []float64 `json:"random_legit_cpu_mpps"`
	Colliding []float64 `json:"colliding_legit_cpu_mpps"`
	// Colliding over random, within each round.
	Ratios []float64 `json:"colliding_over_random"`
	// Medians and the extremes over the rounds.
	RandomMedian    float64 `json:"random_median"`
	CollidingMedian float64 `json:"colliding_median"`
	RatioMedian     float64 `json:"ratio_median"`
	RatioMin        float64 `json:"ratio_min"`
	RatioMax        float64 `json:"ratio_max"`
	// Cost is 1 - RatioMedian: what the colliding flood takes from
	// legitimate traffic beyond the random one; Goal is FloodGoal.
	Cost  float64 `json:"colliding_cost"`
	Goal  float64 `json:"goal"`
	Check string  `json:"check"` // "ok", or the first run whose verdicts were off
}

// median of xs (not modified).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(xs []float64) (lo, hi float64) {
	for i, x := range xs {
		if i == 0 || x < lo {
			lo = x
		}
		if i == 0 || x > hi {
			hi = x
		}
	}
	return lo, hi
}

// summarize fills the medians, ratios and cost from the per-round rates.
func (r *FloodReport) summarize() {
	r.Ratios = r.Ratios[:0]
	for i := range r.Random {
		if i < len(r.Colliding) && r.Random[i] > 0 {
			r.Ratios = append(r.Ratios, r.Colliding[i]/r.Random[i])
		}
	}
	r.RandomMedian, r.CollidingMedian = median(r.Random), median(r.Colliding)
	r.RatioMedian = median(r.Ratios)
	r.RatioMin, r.RatioMax = minMax(r.Ratios)
	r.Cost = 1 - r.RatioMedian
	r.Goal = FloodGoal
}

// floodRounds runs the random and the colliding flood mixes alternately,
// rounds times each, with the worker alone (no limit loops).
func (b *bench) floodRounds(rounds int, mixes map[string][][]byte, n node) (FloodReport, error) {
	rep := FloodReport{Rounds: rounds, Check: "ok"}
	check := func(c dataplane.Counters) string { return share("to_kernel", c.ToKernel, c.RX, 1) }
	for r := 0; r < rounds; r++ {
		order := []string{"random", "colliding"}
		if r%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, kind := range order {
			s, err := b.worker(fmt.Sprintf("%s SYN flood, round %d of %d", kind, r+1, rounds), mixes[kind], n, check)
			if err != nil {
				return rep, err
			}
			if s.Check != "ok" && rep.Check == "ok" {
				rep.Check = s.Scenario + ": " + s.Check
			}
			legit := s.CPUMpps / 2
			if kind == "random" {
				rep.Random = append(rep.Random, legit)
			} else {
				rep.Colliding = append(rep.Colliding, legit)
			}
		}
	}
	rep.summarize()
	return rep, nil
}
