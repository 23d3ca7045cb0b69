package handoffbench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/handoff/transfer"
)

// Goals of issue 12.
const (
	GoalP99US        = 500 // handoff latency p99, freeze → ACCEPT
	GoalRelayRatio1M = 2.0 // handoff MB/s ÷ relay MB/s on 1 MiB
)

// Report is one run of the benchmark.
type Report struct {
	Concurrency int
	// IdleSleepMaxUS is the nodes' dataplane.idle_sleep_max_us.
	IdleSleepMaxUS int
	// LoadBefore and LoadAfter are the machine's load averages
	// (/proc/loadavg, 1 5 15 min) when the lab was up and at the end: the
	// lab shares its CPUs with whatever else runs.
	LoadBefore, LoadAfter string
	Runs                  []RunResult
	Latency               []LatencyFigure
	Steps                 []StepFigure
	// Peers are the node network\'s round trip, beside origin_remote.
	Peers []PeerFigure
	// Nodes are the nodes' failure and loss counters after the local and
	// handoff runs, RelayNodes after the relay runs (restarted n1 and n3
	// count from zero), by node and label; zeros left out.
	Nodes, RelayNodes map[string]map[string]uint64
}

// LatencyFigure is the origins' freeze → ACCEPT histogram over a window.
type LatencyFigure struct {
	Kind     string  `json:"kind"` // "latency"
	Scenario string  `json:"scenario"`
	Count    uint64  `json:"count"`
	P50US    float64 `json:"p50_us"` // upper bound of the bucket holding it
	P99US    float64 `json:"p99_us"`
	MeanUS   float64 `json:"mean_us"`
	GoalP99  float64 `json:"goal_p99_us"`
	Ratio    float64 `json:"p99_to_goal"`
	// Over says the p99 lies above the last bucket bound (P99US is then
	// the maximum ever seen).
	Over bool `json:"over_last_bucket,omitempty"`
}

func (f LatencyFigure) String() string {
	return fmt.Sprintf("%s: %d handoffs, p50 ≤ %.0f µs, p99 ≤ %.0f µs, mean %.0f µs (goal p99 < %.0f µs: %.2f× the goal)",
		f.Scenario, f.Count, f.P50US, f.P99US, f.MeanUS, f.GoalP99, f.Ratio)
}

// PeerFigure is a round trip on the node network: kind "peer".
type PeerFigure struct {
	Kind     string  `json:"kind"`
	Scenario string  `json:"scenario"`
	MinUS    float64 `json:"min_us"`
	AvgUS    float64 `json:"avg_us"`
	MaxUS    float64 `json:"max_us"`
}

// StepFigure is one step of the handoffs of the one-at-a-time run.
type StepFigure struct {
	Kind   string  `json:"kind"` // "step"
	Step   string  `json:"step"`
	Count  uint64  `json:"count"`
	P50US  float64 `json:"p50_us"`
	P99US  float64 `json:"p99_us"`
	MeanUS float64 `json:"mean_us"`
}

// hist is a histogram rebuilt from an api.Latency's cumulative buckets.
type hist struct {
	bounds []float64
	counts []uint64 // one more than bounds: the overflow
	count  uint64
	sumUS  float64
	maxUS  float64
}

func histOf(l api.Latency) hist {
	h := hist{count: l.Count, sumUS: l.MeanUS * float64(l.Count), maxUS: l.MaxUS}
	var prev uint64
	for _, b := range l.Buckets {
		h.bounds = append(h.bounds, b.LeUS)
		h.counts = append(h.counts, b.Count-prev)
		prev = b.Count
	}
	h.counts = append(h.counts, l.Count-prev)
	return h
}

// add adds (sign 1) or subtracts (sign -1) o, bucket by bucket; the
// bounds must match (or h be empty).
func (h *hist) add(o hist, sign int) {
	if len(h.bounds) == 0 && h.count == 0 {
		h.bounds = o.bounds
		h.counts = make([]uint64, len(o.counts))
	}
	if len(o.counts) != len(h.counts) {
		return
	}
	for i, c := range o.counts {
		if sign > 0 {
			h.counts[i] += c
		} else {
			h.counts[i] -= c
		}
	}
	if sign > 0 {
		h.count += o.count
		h.sumUS += o.sumUS
		h.maxUS = max(h.maxUS, o.maxUS)
	} else {
		h.count -= o.count
		h.sumUS -= o.sumUS
	}
}

// quantile is the upper bound of the bucket holding the q-quantile, and
// whether that is the overflow bucket (then the maximum is returned).
func (h hist) quantile(q float64) (float64, bool) {
	if h.count == 0 {
		return 0, false
	}
	rank := uint64(q*float64(h.count) + 0.999999)
	rank = min(max(rank, 1), h.count)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			if i == len(h.bounds) {
				return h.maxUS, true
			}
			return h.bounds[i], false
		}
	}
	return h.maxUS, true
}

func (h hist) mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sumUS / float64(h.count)
}

// latencyBetween is the origins' latency histogram between two snapshots.
func latencyBetween(scenario string, before, after map[string]api.Handoffs) LatencyFigure {
	var h hist
	for id, a := range after {
		if id == Server {
			continue
		}
		d := histOf(a.Latency)
		if b, ok := before[id]; ok && b.Latency.Count > 0 {
			d.add(histOf(b.Latency), -1)
		}
		h.add(d, 1)
	}
	f := LatencyFigure{Kind: "latency", Scenario: scenario, Count: h.count, MeanUS: h.mean(), GoalP99: GoalP99US}
	f.P50US, _ = h.quantile(0.5)
	f.P99US, f.Over = h.quantile(0.99)
	f.Ratio = f.P99US / GoalP99US
	return f
}

// stepOrder is the order of a handoff's steps in time: each side's steps
// in turn, a destination's steps before the origin's wait that spans them
// (origin_remote, the channel's part of origin_ready, beside it).
var stepOrder = []string{transfer.StepChannel, transfer.StepFreeze, transfer.StepDump, transfer.StepSeal, transfer.StepWrite,
	transfer.StepOpen, transfer.StepRestore, transfer.StepAdopt, transfer.StepReadySent,
	transfer.StepRemote, transfer.StepReady,
	transfer.StepCommitWait, transfer.StepRelease, transfer.StepAcceptSent,
	transfer.StepCommit, transfer.StepWithdraw, transfer.StepClose}

// stepsBetween is every node's step histograms between two snapshots.
func stepsBetween(before, after map[string]api.Handoffs) []StepFigure {
	all := map[string]*hist{}
	for id, a := range after {
		for step, l := range a.Steps {
			d := histOf(l)
			if b, ok := before[id].Steps[step]; ok && b.Count > 0 {
				d.add(histOf(b), -1)
			}
			if all[step] == nil {
				all[step] = &hist{}
			}
			all[step].add(d, 1)
		}
	}
	var out []StepFigure
	for step, h := range all {
		if h.count == 0 {
			continue
		}
		f := StepFigure{Kind: "step", Step: step, Count: h.count, MeanUS: h.mean()}
		f.P50US, _ = h.quantile(0.5)
		f.P99US, _ = h.quantile(0.99)
		out = append(out, f)
	}
	rank := func(s string) int {
		for i, x := range stepOrder {
			if x == s {
				return i
			}
		}
		return len(stepOrder)
	}
	sort.Slice(out, func(i, j int) bool { return rank(out[i].Step) < rank(out[j].Step) })
	return out
}

// Throughput is a run as printed: kind "throughput".
type Throughput struct {
	Kind string `json:"kind"`
	RunResult
}

// GoalFigure is a ratio beside its goal: kind "goal".
type GoalFigure struct {
	Kind   string  `json:"kind"`
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Goal   float64 `json:"goal"`
	Ratio  float64 `json:"ratio_to_goal"`
	Detail string  `json:"detail"`
}

// NodeFigure is one node's failure counters: kind "node".
type NodeFigure struct {
	Kind     string            `json:"kind"`
	Phase    string            `json:"phase"` // "handoff" (local and handoff runs) or "relay"
	Node     string            `json:"node"`
	Counters map[string]uint64 `json:"counters"`
}

// run finds a run by mode and object.
func (r *Report) run(mode, object string) (RunResult, bool) {
	for _, x := range r.Runs {
		if x.Mode == mode && x.Object == object && x.Concurrency == r.Concurrency {
			return x, true
		}
	}
	return RunResult{}, false
}

// Goals are the ratios the issue sets goals for, plus handoff beside local.
func (r *Report) Goals() []GoalFigure {
	var out []GoalFigure
	for _, ob := range Objects {
		h, ok1 := r.run("handoff", ob.Name)
		rl, ok2 := r.run("relay", ob.Name)
		if ok1 && ok2 && rl.MBps > 0 {
			g := GoalFigure{Kind: "goal", Name: "handoff_to_relay_mbps_" + ob.Name, Value: h.MBps / rl.MBps,
				Detail: fmt.Sprintf("handoff %.1f MB/s, relay %.1f MB/s", h.MBps, rl.MBps)}
			if ob.Size >= 1<<20 {
				g.Goal = GoalRelayRatio1M
				g.Ratio = g.Value / g.Goal
			}
			out = append(out, g)
		}
		lo, ok3 := r.run("local", ob.Name)
		if ok1 && ok3 && lo.MBps > 0 {
			out = append(out, GoalFigure{Kind: "goal", Name: "handoff_to_local_mbps_" + ob.Name, Value: h.MBps / lo.MBps,
				Detail: fmt.Sprintf("handoff %.1f MB/s, local %.1f MB/s (no goal: the price of a move)", h.MBps, lo.MBps)})
		}
	}
	return out
}

// Lines are the report's JSON objects, one per line: throughput runs,
// latency figures, steps, goals, node counters.
func (r *Report) Lines() []any {
	var out []any
	for _, x := range r.Runs {
		out = append(out, Throughput{Kind: "throughput", RunResult: x})
	}
	for _, x := range r.Latency {
		out = append(out, x)
	}
	for _, x := range r.Steps {
		out = append(out, x)
	}
	for _, x := range r.Peers {
		out = append(out, x)
	}
	for _, x := range r.Goals() {
		out = append(out, x)
	}
	for phase, m := range map[string]map[string]map[string]uint64{"handoff": r.Nodes, "relay": r.RelayNodes} {
		for _, id := range sortedKeys(m) {
			out = append(out, NodeFigure{Kind: "node", Phase: phase, Node: id, Counters: m[id]})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// WriteText prints the report as tables.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "shoal bench handoff: 3-node lab (groups preset + group %s = {%s}, /b/1k and /b/1m only on %s);\n", Group, Server, Server)
	fmt.Fprintf(w, "fresh connections from the client namespace, every one from a port n1 or n3 owns, Connection: close, read to the FIN;\n")
	fmt.Fprintf(w, "dataplane.idle_sleep_max_us %d on every node; load average %s at the start, %s at the end\n\n", r.IdleSleepMaxUS, r.LoadBefore, r.LoadAfter)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "served\tobject\tconcurrency\trequests\tfailed\treq/s\tMB/s\tp50 ms\tp99 ms\tserved as\t")
	for _, x := range r.Runs {
		fail := fmt.Sprint(x.Failed)
		if x.Failed > 0 {
			fail += fmt.Sprintf(" %v", x.Failures)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%.0f\t%.1f\t%.2f\t%.2f\t%s\t\n", x.Mode, x.Object, x.Concurrency, x.Requests, fail,
			x.RPS, x.MBps, x.P50MS, x.P99MS, fmtModes(x.Modes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nhandoff latency, freeze → ACCEPT at the origin (n1, n3), histogram bucket bounds:\n")
	for _, f := range r.Latency {
		over := ""
		if f.Over {
			over = " (p99 beyond the last bucket: the maximum)"
		}
		fmt.Fprintf(w, "  %s%s\n", f, over)
	}
	if len(r.Steps) > 0 {
		fmt.Fprintf(w, "\nsteps of the one-at-a-time handoffs (origin n1/n3, destination %s):\n\n", Server)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "step\tcount\tmean µs\tp50 ≤ µs\tp99 ≤ µs\t")
		for _, s := range r.Steps {
			fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f\t%.0f\t\n", s.Step, s.Count, s.MeanUS, s.P50US, s.P99US)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, p := range r.Peers {
		fmt.Fprintf(w, "  peer: %s: min %.0f µs, avg %.0f µs, max %.0f µs (beside origin_remote: one of the exchange's two channel round trips)\n", p.Scenario, p.MinUS, p.AvgUS, p.MaxUS)
	}
	fmt.Fprintf(w, "\nbeside the goals:\n")
	for _, g := range r.Goals() {
		if g.Goal > 0 {
			fmt.Fprintf(w, "  %s = %.2f (goal ≥ %.1f: %.2f× the goal): %s\n", g.Name, g.Value, g.Goal, g.Ratio, g.Detail)
		} else {
			fmt.Fprintf(w, "  %s = %.2f: %s\n", g.Name, g.Value, g.Detail)
		}
	}
	for _, f := range r.Latency {
		fmt.Fprintf(w, "  handoff p99 %s = %.0f µs (goal < %d µs: %.2f× the goal)\n", f.Scenario, f.P99US, GoalP99US, f.Ratio)
	}
	fmt.Fprintf(w, "\nnode counters (failures, losses, fallbacks; zeros left out):\n")
	for _, phase := range []struct {
		name string
		m    map[string]map[string]uint64
	}{{"after local+handoff", r.Nodes}, {"after relay (n1, n3 restarted)", r.RelayNodes}} {
		for _, id := range sortedKeys(phase.m) {
			fmt.Fprintf(w, "  %s %s: %s\n", phase.name, id, fmtCounters(phase.m[id]))
		}
	}
	return nil
}

func fmtModes(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func fmtCounters(m map[string]uint64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

// Failed is the number of failed requests over all runs.
func (r *Report) Failed() int {
	n := 0
	for _, x := range r.Runs {
		n += x.Failed
	}
	return n
}
