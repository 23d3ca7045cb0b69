package loadgen

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// SynRetransmitThreshold is the connect time above which a new connection
// counts as having needed a SYN retransmission (Linux's initial RTO is 1 s).
const SynRetransmitThreshold = 900 * time.Millisecond

// Report holds every Result of a run (or of a window of it) sorted by Start,
// and figures derived from them.
type Report struct {
	Results  []Result
	From, To time.Time // the window; for a run [t0, t0+Duration), ended early by a canceled ctx or stretched to hold a late start

	// New connections.
	Started          int            // attempted (not skipped)
	OK               int            // succeeded
	Failed           int            // attempted and failed
	Resets           int            // failed with "reset"
	Skipped          int            // not attempted: MaxInFlight reached
	ByNode           map[string]int // successes per X-Shoal-Node
	ByErr            map[string]int // failures per class ("skipped" excluded)
	SynRetransmitted int            // established with Connect > SynRetransmitThreshold

	// Requests on persistent connections.
	PersistentRequests, PersistentOK, PersistentFailed int
	PersistentByErr                                    map[string]int
	PersistentReopened                                 int // reopened without an error: idle-close, idle-reset, server-close

	// Failures of either kind ("skipped" is not one); zero if none.
	FirstFailure, LastFailure time.Time

	cfg Config
}

func newReport(results []Result, from, to time.Time, cfg Config) *Report {
	sort.SliceStable(results, func(i, j int) bool { return results[i].Start.Before(results[j].Start) })
	r := &Report{
		Results: results, From: from, To: to, cfg: cfg,
		ByNode: map[string]int{}, ByErr: map[string]int{}, PersistentByErr: map[string]int{},
	}
	for i := range results {
		x := &results[i]
		if x.Persistent {
			r.PersistentRequests++
			switch x.Opened {
			case "idle-close", "idle-reset", "server-close":
				r.PersistentReopened++
			}
			if x.Err == "" {
				r.PersistentOK++
			} else {
				r.PersistentFailed++
				r.PersistentByErr[x.Err]++
				r.failureAt(x.Start)
			}
			continue
		}
		if x.Err == ErrSkipped {
			r.Skipped++
			continue
		}
		r.Started++
		if x.Err == "" {
			r.OK++
			r.ByNode[x.Node]++
		} else {
			r.Failed++
			r.ByErr[x.Err]++
			if x.Err == ErrReset {
				r.Resets++
			}
			r.failureAt(x.Start)
		}
		if x.Established && x.Connect > SynRetransmitThreshold {
			r.SynRetransmitted++
		}
	}
	return r
}

func (r *Report) failureAt(t time.Time) {
	if r.FirstFailure.IsZero() || t.Before(r.FirstFailure) {
		r.FirstFailure = t
	}
	if t.After(r.LastFailure) {
		r.LastFailure = t
	}
}

// Between returns the sub-report of the results (new connections and
// persistent requests) that started in [from, to).
func (r *Report) Between(from, to time.Time) *Report {
	var sub []Result
	for _, x := range r.Results {
		if !x.Start.Before(from) && x.Start.Before(to) {
			sub = append(sub, x)
		}
	}
	return newReport(sub, from, to, r.cfg)
}

// Shares splits [From, To) into slices equal parts and gives, for each, the
// share of the successful new connections that every node served. A slice
// without successes has an empty map.
func (r *Report) Shares(slices int) []map[string]float64 {
	if slices <= 0 {
		return nil
	}
	out := make([]map[string]float64, slices)
	counts := make([]map[string]int, slices)
	totals := make([]int, slices)
	for i := range out {
		out[i], counts[i] = map[string]float64{}, map[string]int{}
	}
	span := r.To.Sub(r.From)
	if span <= 0 {
		return out
	}
	for _, x := range r.Results {
		if x.Persistent || x.Err != "" || x.Start.Before(r.From) || !x.Start.Before(r.To) {
			continue
		}
		k := int(int64(x.Start.Sub(r.From)) * int64(slices) / int64(span))
		counts[k][x.Node]++
		totals[k]++
	}
	for k := range out {
		for node, c := range counts[k] {
			out[k][node] = float64(c) / float64(totals[k])
		}
	}
	return out
}

// Summary describes the report in one paragraph for test logs.
func (r *Report) Summary() string {
	var b strings.Builder
	span := r.To.Sub(r.From)
	fmt.Fprintf(&b, "loadgen %s%s over %v: ", r.cfg.Target, r.cfg.Path, span.Round(time.Millisecond))
	var starts []time.Time
	var late, connect, total []time.Duration
	for _, x := range r.Results {
		if x.Persistent {
			continue
		}
		starts = append(starts, x.Start)
		late = append(late, x.Late)
		if x.Err == ErrSkipped {
			continue
		}
		if x.Err == "" {
			connect = append(connect, x.Connect)
			total = append(total, x.Total)
		}
	}
	fmt.Fprintf(&b, "%d new connections", r.Started)
	if r.cfg.Rate > 0 {
		fmt.Fprintf(&b, " (scheduled %d/s", r.cfg.Rate)
		if n := len(starts); n > 1 {
			fmt.Fprintf(&b, ", started %.0f/s", float64(n-1)/starts[n-1].Sub(starts[0]).Seconds())
		}
		fmt.Fprintf(&b, ", start late p99 %v max %v)", fmtDur(pct(late, 0.99)), fmtDur(pct(late, 1)))
	}
	fmt.Fprintf(&b, ": %d ok, %d failed%s, %d skipped", r.OK, r.Failed, counts(r.ByErr), r.Skipped)
	if r.OK > 0 {
		b.WriteString("; by node")
		for _, node := range sortedKeys(r.ByNode) {
			name := node
			if name == "" {
				name = `""`
			}
			fmt.Fprintf(&b, " %s %d (%.1f%%)", name, r.ByNode[node], 100*float64(r.ByNode[node])/float64(r.OK))
		}
		fmt.Fprintf(&b, "; connect p50 %v p99 %v max %v, total p50 %v p99 %v max %v",
			fmtDur(pct(connect, 0.5)), fmtDur(pct(connect, 0.99)), fmtDur(pct(connect, 1)),
			fmtDur(pct(total, 0.5)), fmtDur(pct(total, 0.99)), fmtDur(pct(total, 1)))
	}
	fmt.Fprintf(&b, "; %d SYN retransmitted", r.SynRetransmitted)
	if r.Persistent() {
		fmt.Fprintf(&b, "; persistent: %d requests, %d ok, %d failed%s, %d reopened without error",
			r.PersistentRequests, r.PersistentOK, r.PersistentFailed, counts(r.PersistentByErr), r.PersistentReopened)
	}
	if r.FirstFailure.IsZero() {
		b.WriteString("; no failures.")
	} else {
		fmt.Fprintf(&b, "; failures from +%v to +%v.", r.FirstFailure.Sub(r.From).Round(time.Millisecond),
			r.LastFailure.Sub(r.From).Round(time.Millisecond))
	}
	return b.String()
}

// Persistent reports whether the report holds persistent requests.
func (r *Report) Persistent() bool { return r.PersistentRequests > 0 }

func counts(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// pct is the q-quantile (nearest rank) of d, 0 when d is empty.
func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func fmtDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
