package bench

// Convergence: how long the cluster takes to agree again after a member
// goes, in the lab (crash and graceful leave under load, figures per run)
// and, beyond this machine, in a simulation of larger clusters (table build
// time, memberlist agreement on loopback). Like every benchmark here it
// reports figures beside an anchor or goal and never passes or fails.

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Anchors and goals printed beside the convergence figures.
const (
	// AnchorNLB: Windows NLB reconverges in about 10 s after a host failure
	// (32 hosts at most); Anchors says it in full.
	AnchorNLB         = "NLB ≈ 10 s"
	GoalCrash         = "goal < 1 s"
	GoalLeave         = "goal < 200 ms"
	AnchorCrashDetect = "detection budget ≈ 750 ms"
	Anchors           = "Anchors: Windows NLB reconverges ≈ 10 s after a host failure (32 hosts max); " +
		"gossip's crash detection budget ≈ 750 ms (control/gossip). Goals: < 1 s after a crash, < 200 ms for a graceful leave."
)

// Figure is one measured quantity: its samples (one per run, or one per
// repetition), their p50 and p99, and what to read it against. Percentiles
// are nearest-rank: with fewer than 100 samples p99 is the maximum.
type Figure struct {
	Part     string    `json:"part"`     // "lab", "sim" or "tables"
	Scenario string    `json:"scenario"` // crash, leave, table-build, memberlist
	Members  int       `json:"members"`  // cluster size the figure is about
	Metric   string    `json:"metric"`
	Unit     string    `json:"unit"` // "ms", "connections", "B/s/node", "members", "buckets", "%", "× minimum"
	Samples  []float64 `json:"samples"`
	P50      float64   `json:"p50"`
	P99      float64   `json:"p99"` // nearest rank: the max below 100 samples
	Max      float64   `json:"max"`
	Missing  int       `json:"missing,omitempty"` // runs that never reached the condition within the bound
	Anchor   string    `json:"anchor,omitempty"`
	Note     string    `json:"note,omitempty"`
}

// Percentile is the nearest-rank q-quantile (0 < q ≤ 1) of xs: the smallest
// sample with at least q of the samples at or below it. It does not modify
// xs and returns the zero value for no samples. With n samples, any q above
// (n-1)/n gives the maximum: p99 of fewer than 100 samples is their max.
func Percentile[T cmp.Ordered](xs []T, q float64) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// newFigure fills in the percentiles of samples.
func newFigure(part, scenario string, members int, metric, unit string, samples []float64, missing int, anchor, note string) Figure {
	if samples == nil {
		samples = []float64{}
	}
	return Figure{Part: part, Scenario: scenario, Members: members, Metric: metric, Unit: unit,
		Samples: samples, P50: Percentile(samples, 0.50), P99: Percentile(samples, 0.99), Max: Percentile(samples, 1),
		Missing: missing, Anchor: anchor, Note: note}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtValue prints v in unit for the table.
func fmtValue(v float64, unit string) string {
	switch unit {
	case "ms":
		if v >= 100 {
			return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
		}
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	case "B/s/node":
		return strconv.FormatFloat(v, 'f', 0, 64) + " B/s"
	case "× minimum":
		return strconv.FormatFloat(v, 'f', 3, 64) + "×"
	case "%":
		return strconv.FormatFloat(v, 'f', 2, 64) + "%"
	case "buckets":
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

// WriteFigures prints figs as an aligned table, one row per figure.
func WriteFigures(w io.Writer, figs []Figure) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "part\tscenario\tN\tmetric\tp50\tp99\tmax\tsamples\tanchor / goal, notes")
	for _, f := range figs {
		n := strconv.Itoa(len(f.Samples))
		if f.Missing > 0 {
			n += fmt.Sprintf(" (+%d not reached)", f.Missing)
		}
		p50, p99, mx := fmtValue(f.P50, f.Unit), fmtValue(f.P99, f.Unit), fmtValue(f.Max, f.Unit)
		if len(f.Samples) == 0 {
			p50, p99, mx = "-", "-", "-"
		}
		notes := f.Anchor
		if f.Note != "" {
			notes = strings.TrimPrefix(notes+"; "+f.Note, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Part, f.Scenario, f.Members, f.Metric, p50, p99, mx, n, notes)
	}
	return tw.Flush()
}
