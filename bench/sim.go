package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/shoal-lb/shoal/control/gossip"
)

// SimOptions drive the simulation of larger clusters: no root, no data
// plane, every memberlist instance in this process on 127.0.0.1.
type SimOptions struct {
	Members []int         // cluster sizes, e.g. 64, 256
	Changes int           // meta changes timed per size (3)
	Window  time.Duration // steady window for the gossip byte rate (3 s)
	// Timeout bounds each wait: for every node to see N members, and for
	// every node to see one change (60 s).
	Timeout time.Duration
	Poll    time.Duration // poll interval of the waits (10 ms)
	// ProbeInterval, when set, replaces gossip's LAN ProbeInterval, with
	// ProbeTimeout at half of it: many instances sharing two cores miss
	// the 100 ms default probe timeout, which is a limit of this machine,
	// not of a cluster of machines.
	ProbeInterval time.Duration
	Log           func(format string, a ...any)
}

// simKey is the fixed cluster key of the simulated nodes (AES-128).
var simKey = []byte("shoal-sim-key-16")

// SimResult is what one simulated cluster size reached.
type SimResult struct {
	Members int

	Started    int           // memberlist instances running
	StartPhase time.Duration // starting them one after the other, each joining the first
	// Formed: every node saw Members members, FormAfterStart after the last
	// Start returned; if not, MinSeen and Converged tell how far it got.
	Formed         bool
	FormAfterStart time.Duration
	MinSeen        int // fewest members any node saw at the end of the wait
	Converged      int // nodes that saw all Members at the end of the wait
	// NodeFormMs: per node, when it first saw every member (after the last
	// start); NodeFormMissing: nodes that never did within the bound.
	NodeFormMs      []float64
	NodeFormMissing int
	FormCPU         float64 // process CPU during that wait, in cores

	// ChangeMs: UpdateMeta on one node until every node sees the new
	// availability, per change reached; ChangeMissing: changes not seen by
	// all within the bound.
	ChangeMs      []float64
	ChangeMissing int
	// NodeChangeMs: per other node and change, when it first saw the change.
	NodeChangeMs      []float64
	NodeChangeMissing int

	// BytesPerSecPerNode: gossip bytes sent (UDP and TCP, encrypted) over
	// the steady window, per second and node.
	BytesPerSecPerNode float64
	WindowSec          float64
	WindowCPU          float64 // process CPU over the window, in cores
}

func (o *SimOptions) setDefaults() {
	if o.Changes <= 0 {
		o.Changes = 3
	}
	if o.Window <= 0 {
		o.Window = 3 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 10 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

// MaxSimMembers bounds a simulated cluster (ports and goroutines of one
// process).
const MaxSimMembers = 1024

// RunSim simulates each size in o.Members in turn. A size that does not
// converge within the bounds is reported as far as it got, not as an error;
// errors are bad options, a failed Start of the first node, or ctx.
func RunSim(ctx context.Context, o SimOptions) ([]SimResult, error) {
	o.setDefaults()
	var out []SimResult
	if o.ProbeInterval < 0 || (o.ProbeInterval > 0 && o.ProbeInterval < 20*time.Millisecond) {
		return nil, fmt.Errorf("bench converge: sim probe interval %v: want 0 (the default) or at least 20ms", o.ProbeInterval)
	}
	for _, n := range o.Members {
		if n < 2 || n > MaxSimMembers {
			return out, fmt.Errorf("bench converge: simulated cluster size %d must be between 2 and %d", n, MaxSimMembers)
		}
	}
	for _, n := range o.Members {
		r := SimResult{Members: n}
		if err := simGossip(ctx, o, &r); err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

func simID(i int) string { return fmt.Sprintf("s%04d", i+1) }

func msSince(t time.Time) float64 { return ms(time.Since(t)) }

// simGossip starts r.Members memberlist instances on loopback and measures
// agreement on membership, on a meta change, and the steady byte rate.
func simGossip(ctx context.Context, o SimOptions, r *SimResult) (err error) {
	n := r.Members
	logger := slog.New(slog.DiscardHandler)
	nodes := make([]*gossip.Gossip, 0, n)
	defer func() {
		if serr := shutdownAll(nodes, time.Minute); serr != nil {
			o.Log("sim %d: %v", n, serr)
		}
	}()
	meta := func(i int, avail float64) gossip.Meta {
		return gossip.Meta{NodeID: simID(i), Capacity: 1, Availability: avail, TableHash: "sim", Epoch: 1}
	}
	cfg := func(i int, seeds []string) gossip.Config {
		return gossip.Config{NodeID: simID(i), BindAddr: "127.0.0.1", BindPort: gossip.EphemeralPort,
			Seeds: seeds, Key: simKey, Logger: logger, ProbeInterval: o.ProbeInterval, ProbeTimeout: o.ProbeInterval / 2}
	}
	t0 := time.Now()
	first, err := gossip.Start(cfg(0, nil), meta(0, 1))
	if err != nil {
		return fmt.Errorf("bench converge: sim: first node: %w", err)
	}
	nodes = append(nodes, first)
	seeds := []string{first.LocalAddr()}
	startBound := t0.Add(o.Timeout)
	for i := 1; i < n; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(startBound) {
			o.Log("sim %d: started only %d instances within %v", n, len(nodes), o.Timeout)
			break
		}
		g, err := gossip.Start(cfg(i, seeds), meta(i, 1))
		if err != nil {
			o.Log("sim %d: node %d: %v; stopping at %d instances", n, i+1, err, len(nodes))
			break
		}
		nodes = append(nodes, g)
	}
	r.Started = len(nodes)
	r.StartPhase = time.Since(t0)
	o.Log("sim %d: %d instances started in %v", n, r.Started, r.StartPhase.Round(time.Millisecond))

	// Membership: every node sees every started node (n of them, unless
	// starting stopped short). Each node's first full view is noted too.
	tStart := time.Now()
	want := len(nodes)
	firstFull := make([]time.Duration, want)
	for i := range firstFull {
		firstFull[i] = -1
	}
	seen := func(now time.Time) (minSeen, full int) {
		minSeen = want + 1
		for i, g := range nodes {
			m := g.Stats().MembersAlive
			minSeen = min(minSeen, m)
			if m == want {
				full++
				if firstFull[i] < 0 {
					firstFull[i] = now.Sub(tStart)
				}
			}
		}
		return minSeen, full
	}
	cpu0 := cpuTime()
	formed, err := pollFrom(ctx, tStart, o.Poll, o.Timeout, func() bool { _, full := seen(time.Now()); return full == want })
	if err != nil {
		return err
	}
	r.FormCPU = (cpuTime() - cpu0).Seconds() / time.Since(tStart).Seconds()
	r.MinSeen, r.Converged = seen(time.Now())
	for _, d := range firstFull {
		if d >= 0 {
			r.NodeFormMs = append(r.NodeFormMs, ms(d))
		} else {
			r.NodeFormMissing++
		}
	}
	r.Formed = formed >= 0 && r.Started == n
	if r.Formed {
		r.FormAfterStart = formed
		o.Log("sim %d: every node sees %d members %v after the last start (half of them within %.0f ms)",
			n, n, formed.Round(time.Millisecond), Percentile(r.NodeFormMs, 0.5))
	} else {
		o.Log("sim %d: not converged within %v: %d of %d started nodes see all %d of them, the worst sees %d; process CPU %.2f cores",
			n, o.Timeout, r.Converged, r.Started, r.Started, r.MinSeen, r.FormCPU)
	}

	// A change: one node's availability, until every node sees it.
	if r.Formed {
		for c := range o.Changes {
			idx := (c + 1) * n / (o.Changes + 1) // a different node each time
			avail := 0.25 + 0.25*float64(c%3)
			id := simID(idx)
			at := make([]time.Duration, len(nodes))
			for i := range at {
				at[i] = -1
			}
			t := time.Now()
			if err := nodes[idx].UpdateMeta(meta(idx, avail)); err != nil {
				o.Log("sim %d: UpdateMeta: %v (spreads by push/pull)", n, err)
			}
			d, err := pollFrom(ctx, t, o.Poll, o.Timeout, func() bool {
				all := true
				now := time.Now()
				for i, g := range nodes {
					if at[i] >= 0 {
						continue
					}
					if sees(g, id, avail) {
						at[i] = now.Sub(t)
					} else {
						all = false
					}
				}
				return all
			})
			if err != nil {
				return err
			}
			for i, a := range at {
				if i == idx {
					continue // the changed node itself
				}
				if a >= 0 {
					r.NodeChangeMs = append(r.NodeChangeMs, ms(a))
				} else {
					r.NodeChangeMissing++
				}
			}
			if d < 0 {
				r.ChangeMissing++
				o.Log("sim %d: change %d not seen by every node within %v", n, c+1, o.Timeout)
				continue
			}
			r.ChangeMs = append(r.ChangeMs, ms(d))
			o.Log("sim %d: change %d seen by all %v after UpdateMeta", n, c+1, d.Round(time.Millisecond))
		}
	}

	// Steady byte rate: let the change broadcasts die down, then a window.
	if err := sleepCtx(ctx, time.Second); err != nil {
		return err
	}
	sum := func() (b uint64) {
		for _, g := range nodes {
			b += g.Stats().BytesSent
		}
		return b
	}
	b0, w0, c0 := sum(), time.Now(), cpuTime()
	if err := sleepCtx(ctx, o.Window); err != nil {
		return err
	}
	b1, w1, c1 := sum(), time.Now(), cpuTime()
	r.WindowSec = w1.Sub(w0).Seconds()
	r.BytesPerSecPerNode = float64(b1-b0) / r.WindowSec / float64(len(nodes))
	r.WindowCPU = (c1 - c0).Seconds() / r.WindowSec
	o.Log("sim %d: %.0f B/s sent per node over %.1f s; process CPU %.2f cores", n, r.BytesPerSecPerNode, r.WindowSec, r.WindowCPU)
	return nil
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sees reports whether g's view holds member id with availability avail.
func sees(g *gossip.Gossip, id string, avail float64) bool {
	for _, m := range g.Members() {
		if m.Meta.NodeID == id {
			return m.Meta.Availability == avail
		}
	}
	return false
}

// pollFrom calls cond every poll until it holds, returning the time from t0
// to the start of the successful check, or until t0+bound passes,
// returning -1. It fails only when ctx ends.
func pollFrom(ctx context.Context, t0 time.Time, poll, bound time.Duration, cond func() bool) (time.Duration, error) {
	deadline := t0.Add(bound)
	for {
		now := time.Now()
		if cond() {
			return now.Sub(t0), nil
		}
		if now.After(deadline) {
			return -1, nil
		}
		if err := sleepCtx(ctx, poll); err != nil {
			return -1, err
		}
	}
}

// shutdownAll shuts every node down in parallel, waiting at most bound.
func shutdownAll(nodes []*gossip.Gossip, bound time.Duration) error {
	done := make(chan struct{}, len(nodes))
	for _, g := range nodes {
		go func() {
			g.Shutdown()
			done <- struct{}{}
		}()
	}
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	for range nodes {
		select {
		case <-done:
		case <-deadline.C:
			return errors.New("memberlist instances still shutting down after " + bound.String())
		}
	}
	return nil
}

// SimFigures turns the simulation results into figures.
func SimFigures(res []SimResult) []Figure {
	var figs []Figure
	for _, r := range res {
		n := r.Members
		add := func(scenario, metric, unit string, samples []float64, missing int, note string) {
			figs = append(figs, newFigure("sim", scenario, n, metric, unit, samples, missing, "", note))
		}
		add("memberlist", "start instances one by one, each joining the first", "ms",
			[]float64{ms(r.StartPhase)}, 0, fmt.Sprintf("%d of %d started", r.Started, n))
		var form []float64
		missing, note := 0, fmt.Sprintf("after the last start; process CPU %.2f cores meanwhile", r.FormCPU)
		if r.Formed {
			form = []float64{ms(r.FormAfterStart)}
		} else {
			missing = 1
			note = fmt.Sprintf("not reached: %d of %d started nodes saw all %d of them, the worst saw %d; process CPU %.2f cores",
				r.Converged, r.Started, r.Started, r.MinSeen, r.FormCPU)
		}
		add("memberlist", "every node sees N members", "ms", form, missing, note)
		add("memberlist", "a node sees N members (per node)", "ms", r.NodeFormMs, r.NodeFormMissing,
			"after the last start; distribution over nodes")
		note = "UpdateMeta (new availability) until every node sees it"
		if !r.Formed {
			note = "not measured: membership did not converge"
		}
		add("memberlist", "every node sees a meta change", "ms", r.ChangeMs, r.ChangeMissing, note)
		if r.Formed {
			add("memberlist", "a node sees a meta change (per node)", "ms", r.NodeChangeMs, r.NodeChangeMissing,
				"distribution over nodes and changes")
		}
		add("memberlist", "gossip bytes sent per node", "B/s/node", []float64{r.BytesPerSecPerNode}, 0,
			fmt.Sprintf("steady %.1f s window, UDP+TCP, encrypted; process CPU %.2f cores", r.WindowSec, r.WindowCPU))
	}
	return figs
}
