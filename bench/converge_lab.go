package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/bench/loadgen"
	"github.com/shoal-lb/shoal/lab"
)

// LabConvergeOptions drive the lab part of the convergence benchmark.
type LabConvergeOptions struct {
	Runs   int    // crash runs and leave runs, each
	Rate   int    // new connections per second from the client (300)
	Binary string // shoal binary the nodes run
	// LabLog receives the lab's own step lines (nil discards them).
	LabLog io.Writer
	Log    func(format string, a ...any)
}

// Timings of the lab runs.
const (
	labVictim    = "n2"
	loadBefore   = 2 * time.Second // load before the kill or SIGTERM
	loadAfter    = 8 * time.Second // load after it
	settle       = time.Second     // after the cluster converged again
	pollEvery    = 10 * time.Millisecond
	crashBound   = 15 * time.Second // wait for the survivors' agreement after a kill
	stopWait     = 40 * time.Second // lab.Stop's wait for a leaving node
	convergeWait = 60 * time.Second // lab.WaitConverged after Up or Restart
	upWait       = 15 * time.Minute // lab.Up, including the wait for the lab lock
)

// LabRun is one crash or leave of n2 under load.
type LabRun struct {
	Scenario string // "crash" or "leave"
	Run      int
	// Agree2 is the time from the event until n1 and n3 both see two
	// members and agree; negative when not reached within the bound.
	Agree2 time.Duration
	// Out (leave only): until n1 and n3 agree on a table in which n2 owns
	// no bucket; negative when not reached.
	Out time.Duration
	// Exited (leave only): SIGTERM until n2's process is gone.
	Exited time.Duration
	// LastBad: start of the last new connection that failed or needed a
	// SYN retransmission, relative to the event, 0 if none did after it.
	LastBad                   time.Duration
	Started, Failed, SynRetx  int
	BadBefore                 int // failed or retransmitted, started before the event
	ByErr                     map[string]int
	LoadEndedBeforeConverging bool // the last bad connection is at the end of the load window
}

// RunLabConverge brings up a 3-node lab, crashes and gracefully removes n2
// Runs times each under load, and always tears the lab down.
func RunLabConverge(ctx context.Context, o LabConvergeOptions) (runs []LabRun, err error) {
	if o.Runs < 1 {
		return nil, errors.New("bench converge: Runs must be at least 1")
	}
	if o.Rate <= 0 {
		o.Rate = 300
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	o.Log("bringing up a 3-node lab (waits up to %v while another process holds the lab lock)", upWait)
	upCtx, cancel := context.WithTimeout(ctx, upWait)
	defer cancel()
	l, err := lab.Up(upCtx, lab.Options{Nodes: 3, Binary: o.Binary, Log: o.LabLog})
	if err != nil {
		return nil, err
	}
	defer lab.DownInto(&err)
	ids := l.NodeIDs()
	if err := waitConverged(ctx, ids, 3); err != nil {
		return nil, err
	}
	p := newStatusPoller()
	for i := 1; i <= o.Runs; i++ {
		for _, scenario := range []string{"crash", "leave", "server-stop"} {
			if err := sleepCtx(ctx, settle); err != nil {
				return runs, err
			}
			var r LabRun
			switch scenario {
			case "crash":
				r, err = crashRun(ctx, o, p)
			case "leave":
				r, err = leaveRun(ctx, o, p)
			default:
				r, err = serverStopRun(ctx, o, p)
			}
			if err != nil {
				return runs, fmt.Errorf("bench converge: %s run %d: %w", scenario, i, err)
			}
			r.Run = i
			runs = append(runs, r)
			o.Log("%s run %d/%d: %s", scenario, i, o.Runs, r)
			if scenario == "server-stop" {
				if err := api.Post(lab.SocketPath(labVictim), api.PathServer, map[string]bool{"running": true}, &struct{}{}); err != nil {
					return runs, fmt.Errorf("bench converge: restarting %s's server: %w", labVictim, err)
				}
			} else if err := lab.Restart(ctx, labVictim, o.Binary); err != nil {
				return runs, fmt.Errorf("bench converge: restarting %s: %w", labVictim, err)
			}
			if err := waitConverged(ctx, ids, 3); err != nil {
				return runs, err
			}
		}
	}
	return runs, nil
}

func (r LabRun) String() string {
	s := fmt.Sprintf("agree on 2 members %s", fmtDur(r.Agree2))
	if r.Scenario == "leave" {
		s += fmt.Sprintf(", %s owns nothing %s, exited %s", labVictim, fmtDur(r.Out), fmtDur(r.Exited))
	}
	return s + fmt.Sprintf("; load: %d started, %d failed %v, %d SYN retransmitted, last of them %s after the event (%d before it)",
		r.Started, r.Failed, r.ByErr, r.SynRetx, r.LastBad.Round(time.Millisecond), r.BadBefore)
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "not reached"
	}
	return d.Round(time.Millisecond).String()
}

func waitConverged(ctx context.Context, ids []string, want int) error {
	cctx, cancel := context.WithTimeout(ctx, convergeWait)
	defer cancel()
	_, err := lab.WaitConverged(cctx, ids, want)
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// startLoad runs the load generator from the client namespace in the
// background for loadBefore+loadAfter.
func startLoad(ctx context.Context, rate int) <-chan loadResult {
	ch := make(chan loadResult, 1)
	go func() {
		rep, err := loadgen.Run(ctx, loadgen.Config{
			Target: lab.VIP + ":80", Path: "/obj/1k", Rate: rate, Duration: loadBefore + loadAfter,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return lab.DialContext(ctx, "client", network, addr)
			},
		})
		ch <- loadResult{rep, err}
	}()
	return ch
}

type loadResult struct {
	rep *loadgen.Report
	err error
}

// tally fills the load figures of r from rep, relative to the event at t0.
func tally(r *LabRun, rep *loadgen.Report, t0 time.Time) {
	r.Started, r.Failed, r.SynRetx, r.ByErr = rep.Started, rep.Failed, rep.SynRetransmitted, rep.ByErr
	var last time.Time
	for _, x := range rep.Results {
		if x.Persistent || x.Err == loadgen.ErrSkipped {
			continue
		}
		bad := x.Err != "" || (x.Established && x.Connect > loadgen.SynRetransmitThreshold)
		if !bad {
			continue
		}
		if x.Start.Before(t0) {
			r.BadBefore++
			continue
		}
		if x.Start.After(last) {
			last = x.Start
		}
	}
	if !last.IsZero() {
		r.LastBad = last.Sub(t0)
		// Within one second of the end of the window: recovery may lie
		// beyond what the load saw.
		r.LoadEndedBeforeConverging = rep.To.Sub(last) < time.Second
	}
}

// crashRun: load, SIGKILL n2, poll n1 and n3 until they agree on two members.
func crashRun(ctx context.Context, o LabConvergeOptions, p *statusPoller) (LabRun, error) {
	return eventRun(ctx, o, "crash", func() error { return lab.Kill(labVictim) },
		func(r *LabRun, since time.Duration) bool {
			if p.agree(ctx, 2) {
				r.Agree2 = since
				return true
			}
			return false
		})
}

// serverStopRun: load, stop n2's web server (the node stays up), poll n1
// and n3 until n2 owns nothing; the load tells when the last connection
// failed.
func serverStopRun(ctx context.Context, o LabConvergeOptions, p *statusPoller) (LabRun, error) {
	return eventRun(ctx, o, "server-stop", func() error {
		return api.Post(lab.SocketPath(labVictim), api.PathServer, map[string]bool{"running": false}, &struct{}{})
	}, func(r *LabRun, since time.Duration) bool {
		if p.victimOut(ctx) {
			r.Out = since
			return true
		}
		return false
	})
}

// eventRun runs load, fires event after loadBefore, polls done (given the
// time since the event) until it holds or crashBound passes, and tallies
// the load around the event.
func eventRun(ctx context.Context, o LabConvergeOptions, scenario string, event func() error,
	done func(r *LabRun, since time.Duration) bool) (LabRun, error) {
	r := LabRun{Scenario: scenario, Agree2: -1, Out: -1, Exited: -1}
	load := startLoad(ctx, o.Rate)
	if err := sleepCtx(ctx, loadBefore); err != nil {
		<-load
		return r, err
	}
	t0 := time.Now()
	if err := event(); err != nil {
		<-load
		return r, err
	}
	for deadline := t0.Add(crashBound); time.Now().Before(deadline) && ctx.Err() == nil; {
		if done(&r, time.Since(t0)) {
			break
		}
		sleepCtx(ctx, pollEvery)
	}
	lr := <-load
	if lr.err != nil {
		return r, fmt.Errorf("load: %w", lr.err)
	}
	tally(&r, lr.rep, t0)
	return r, ctx.Err()
}

// leaveRun: load, SIGTERM n2 (drain, wait for the peers, leave), poll n1
// and n3 until n2 owns nothing, until they agree on two members, and until
// n2 has exited.
func leaveRun(ctx context.Context, o LabConvergeOptions, p *statusPoller) (LabRun, error) {
	r := LabRun{Scenario: "leave", Agree2: -1, Out: -1, Exited: -1}
	load := startLoad(ctx, o.Rate)
	if err := sleepCtx(ctx, loadBefore); err != nil {
		<-load
		return r, err
	}
	t0 := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- lab.Stop(labVictim, stopWait) }()
	var stopErr error
	deadline := t0.Add(stopWait + 5*time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil && (r.Agree2 < 0 || r.Exited < 0) {
		now := time.Now()
		select {
		case stopErr = <-stopped:
			r.Exited = now.Sub(t0)
		default:
		}
		if r.Out < 0 && p.victimOut(ctx) {
			r.Out = now.Sub(t0)
		}
		if r.Agree2 < 0 && p.agree(ctx, 2) {
			r.Agree2 = now.Sub(t0)
			if r.Out < 0 {
				r.Out = r.Agree2
			}
		}
		if stopErr != nil {
			break
		}
		sleepCtx(ctx, pollEvery)
	}
	if r.Exited < 0 && stopErr == nil {
		stopErr = <-stopped // bounded by stopWait
	}
	lr := <-load
	if stopErr != nil {
		return r, stopErr
	}
	if lr.err != nil {
		return r, fmt.Errorf("load: %w", lr.err)
	}
	tally(&r, lr.rep, t0)
	return r, ctx.Err()
}

// RunSlowStartCurve brings up a 3-node lab with a slow-start window, takes
// n2 out by stopping its server, starts it again under load and returns
// n2's share of new connections in one-second slices of the window plus
// two seconds.
func RunSlowStartCurve(ctx context.Context, o LabConvergeOptions, window time.Duration) (curve []float64, err error) {
	upCtx, cancel := context.WithTimeout(ctx, upWait)
	defer cancel()
	l, err := lab.Up(upCtx, lab.Options{Nodes: 3, Binary: o.Binary, Log: o.LabLog, SlowStart: window})
	if err != nil {
		return nil, err
	}
	defer lab.DownInto(&err)
	if err := waitConverged(ctx, l.NodeIDs(), 3); err != nil {
		return nil, err
	}
	// The start-up ramps of every node end first.
	if err := sleepCtx(ctx, window+time.Second); err != nil {
		return nil, err
	}
	p := newStatusPoller()
	if err := api.Post(lab.SocketPath(labVictim), api.PathServer, map[string]bool{"running": false}, &struct{}{}); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(crashBound); !p.victimOut(ctx); {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench converge: %s never left the tables", labVictim)
		}
		sleepCtx(ctx, pollEvery)
	}
	slices := int((window + 2*time.Second) / time.Second)
	done := make(chan loadResult, 1)
	go func() {
		rep, err := loadgen.Run(ctx, loadgen.Config{
			Target: lab.VIP + ":80", Path: "/obj/1k", Rate: o.Rate, Duration: time.Duration(slices) * time.Second,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return lab.DialContext(ctx, "client", network, addr)
			},
		})
		done <- loadResult{rep, err}
	}()
	if err := api.Post(lab.SocketPath(labVictim), api.PathServer, map[string]bool{"running": true}, &struct{}{}); err != nil {
		<-done
		return nil, err
	}
	lr := <-done
	if lr.err != nil {
		return nil, lr.err
	}
	for _, sh := range lr.rep.Shares(slices) {
		curve = append(curve, sh[labVictim])
	}
	if lr.rep.Failed > 0 {
		o.Log("slow start: %d connections failed during the ramp", lr.rep.Failed)
	}
	return curve, nil
}

// statusPoller reads /v1/status of the survivors n1 and n3 through
// api.Get.
type statusPoller struct{ ids []string }

func newStatusPoller() *statusPoller { return &statusPoller{ids: []string{"n1", "n3"}} }

func (p *statusPoller) status(_ context.Context, id string) (api.Status, error) {
	var st api.Status
	err := api.Get(lab.SocketPath(id), api.PathStatus, &st)
	return st, err
}

// each reports whether cond holds on every survivor (an unreadable status
// counts as no).
func (p *statusPoller) each(ctx context.Context, cond func(api.Status) bool) bool {
	for _, id := range p.ids {
		st, err := p.status(ctx, id)
		if err != nil || !cond(st) {
			return false
		}
	}
	return true
}

// agree: every survivor sees want members and every member runs its table.
func (p *statusPoller) agree(ctx context.Context, want int) bool {
	return p.each(ctx, func(st api.Status) bool { return len(st.Members) == want && st.Agreement })
}

// victimOut: every survivor agrees on a table in which the victim owns no
// bucket (it may still be listed, draining at weight 0).
func (p *statusPoller) victimOut(ctx context.Context) bool {
	return p.each(ctx, func(st api.Status) bool {
		if !st.Agreement {
			return false
		}
		for _, m := range st.Members {
			if m.ID == labVictim && m.Buckets > 0 {
				return false
			}
		}
		return true
	})
}

// LabFigures summarises the runs: times as p50/p99 (the max, with this few
// runs) beside the anchor and goals, and the connection counts.
func LabFigures(runs []LabRun) []Figure {
	var figs []Figure
	for _, sc := range []string{"crash", "leave", "server-stop"} {
		var agree, out, exited, lastBad, failed, synRetx []float64
		missAgree, missOut, missExit, cut := 0, 0, 0, 0
		for _, r := range runs {
			if r.Scenario != sc {
				continue
			}
			if r.Agree2 >= 0 {
				agree = append(agree, ms(r.Agree2))
			} else {
				missAgree++
			}
			if r.Out >= 0 {
				out = append(out, ms(r.Out))
			} else {
				missOut++
			}
			if r.Exited >= 0 {
				exited = append(exited, ms(r.Exited))
			} else {
				missExit++
			}
			lastBad = append(lastBad, ms(r.LastBad))
			failed = append(failed, float64(r.Failed))
			synRetx = append(synRetx, float64(r.SynRetx))
			if r.LoadEndedBeforeConverging {
				cut++
			}
		}
		if len(lastBad) == 0 {
			continue
		}
		cutNote := ""
		if cut > 0 {
			cutNote = fmt.Sprintf("in %d run(s) the last bad connection was within 1 s of the end of the load: a lower bound", cut)
		}
		loadNote := fmt.Sprintf("whole load run: %v before, %v after", loadBefore, loadAfter)
		if sc == "server-stop" {
			figs = append(figs,
				newFigure("lab", sc, 3, "server stop to last failed new connection", "ms", lastBad, 0,
					"goal < 1 s; Windows NLB detects a failed host in ≈ 5 s and never a dead application", cutNote+" checks every 100 ms, fall 2"),
				newFigure("lab", sc, 3, "n1, n3 agree on a table where n2 owns nothing", "ms", out, missOut, "", "from the server stop"),
				newFigure("lab", sc, 3, "failed new connections", "connections", failed, 0, "", loadNote),
			)
			continue
		}
		if sc == "crash" {
			figs = append(figs,
				newFigure("lab", sc, 3, "n1, n3 agree on 2 members after SIGKILL n2", "ms", agree, missAgree, GoalCrash+"; "+AnchorNLB+"; "+AnchorCrashDetect, ""),
				newFigure("lab", sc, 3, "crash to recovery (last failed or SYN-retransmitted new conn.)", "ms", lastBad, 0, GoalCrash+"; "+AnchorNLB, cutNote),
				newFigure("lab", sc, 3, "failed new connections", "connections", failed, 0, "", loadNote),
				newFigure("lab", sc, 3, "new connections with a SYN retransmission", "connections", synRetx, 0, "", loadNote),
			)
			continue
		}
		figs = append(figs,
			newFigure("lab", sc, 3, "n1, n3 agree on a table where n2 owns nothing", "ms", out, missOut, GoalLeave, "from SIGTERM"),
			newFigure("lab", sc, 3, "n1, n3 agree on 2 members (n2 left)", "ms", agree, missAgree, GoalLeave, "from SIGTERM; includes n2 draining its flows"),
			newFigure("lab", sc, 3, "SIGTERM to n2 exit", "ms", exited, missExit, "", ""),
			newFigure("lab", sc, 3, "drain to zero errors (last failed or SYN-retransmitted new conn.)", "ms", lastBad, 0, "0 = none after SIGTERM", cutNote),
			newFigure("lab", sc, 3, "failed new connections", "connections", failed, 0, "", loadNote),
			newFigure("lab", sc, 3, "new connections with a SYN retransmission", "connections", synRetx, 0, "", loadNote),
		)
	}
	return figs
}
