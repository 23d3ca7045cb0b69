package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/bench/loadgen"
)

func TestPercentile(t *testing.T) {
	five := []float64{50, 10, 40, 20, 30}
	for _, c := range []struct {
		q    float64
		want float64
	}{{0.01, 10}, {0.2, 10}, {0.21, 20}, {0.5, 30}, {0.8, 40}, {0.81, 50}, {0.99, 50}, {1, 50}} {
		if got := Percentile(five, c.q); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", five, c.q, got, c.want)
		}
	}
	if five[0] != 50 {
		t.Error("Percentile sorted its input in place")
	}
	if got := Percentile([]float64(nil), 0.5); got != 0 {
		t.Errorf("no samples: %v, want 0", got)
	}
	if got := Percentile([]time.Duration{3 * time.Second}, 0.99); got != 3*time.Second {
		t.Errorf("one sample: %v", got)
	}
	// p99 is the max below 100 samples, and the 99th value at 100.
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	if got := Percentile(hundred[:99], 0.99); got != 100 {
		t.Errorf("p99 of 99 samples = %d, want the max 100", got)
	}
	if got := Percentile(hundred, 0.99); got != 99 {
		t.Errorf("p99 of 1..100 = %d, want 99", got)
	}
}

func TestTally(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rep := &loadgen.Report{From: at(-2000), To: at(8000), Started: 6, Failed: 2, SynRetransmitted: 1,
		ByErr: map[string]int{"timeout": 2}, Results: []loadgen.Result{
			{Start: at(-500), Err: "timeout"}, // cut by the event, started before it
			{Start: at(10), Established: true, Connect: time.Millisecond},
			{Start: at(300), Err: "timeout"},
			{Start: at(700), Established: true, Connect: 1100 * time.Millisecond}, // SYN retransmitted
			{Start: at(900), Err: loadgen.ErrSkipped},
			{Start: at(950), Persistent: true, Err: "reset"},
			{Start: at(1200), Established: true, Connect: 2 * time.Millisecond},
		}}
	var r LabRun
	tally(&r, rep, t0)
	if r.LastBad != 700*time.Millisecond || r.BadBefore != 1 || r.LoadEndedBeforeConverging {
		t.Errorf("LastBad %v BadBefore %d cut %v, want 700ms 1 false", r.LastBad, r.BadBefore, r.LoadEndedBeforeConverging)
	}
	var none LabRun
	tally(&none, &loadgen.Report{Results: rep.Results[1:2]}, t0)
	if none.LastBad != 0 {
		t.Errorf("no bad connection: LastBad %v, want 0", none.LastBad)
	}
}

func TestLabFigures(t *testing.T) {
	var runs []LabRun
	for i := 1; i <= 5; i++ {
		d := time.Duration(i) * 100 * time.Millisecond
		runs = append(runs,
			LabRun{Scenario: "crash", Run: i, Agree2: d, Out: -1, Exited: -1, LastBad: d, Failed: i, SynRetx: 10 * i},
			LabRun{Scenario: "leave", Run: i, Agree2: d, Out: d / 2, Exited: d, SynRetx: 0})
	}
	runs[0].Agree2 = -1 // not reached
	figs := LabFigures(runs)
	if len(figs) != 10 {
		t.Fatalf("%d figures, want 4 crash + 6 leave", len(figs))
	}
	f := figs[0]
	if f.Scenario != "crash" || f.Unit != "ms" || len(f.Samples) != 4 || f.Missing != 1 || f.P50 != 300 || f.P99 != 500 || f.Max != 500 {
		t.Errorf("crash agreement figure: %+v", f)
	}
	var buf bytes.Buffer
	if err := WriteFigures(&buf, figs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "(+1 not reached)") || !strings.Contains(buf.String(), AnchorNLB) {
		t.Errorf("table:\n%s", buf.String())
	}
}

// TestSimSmall: five memberlist instances on loopback agree on membership
// and on a change, and gossip some bytes. Bounds are generous; nothing is
// compared to a time.
func TestSimSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts memberlist instances on loopback for a few seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunSim(ctx, SimOptions{Members: []int{5}, Changes: 2, Window: time.Second,
		Timeout: 30 * time.Second, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 {
		t.Fatalf("%d results", len(res))
	}
	r := res[0]
	if r.Started != 5 || !r.Formed || r.MinSeen != 5 || r.Converged != 5 {
		t.Fatalf("membership: %+v", r)
	}
	if r.StartPhase <= 0 || r.FormAfterStart < 0 {
		t.Errorf("start %v, formed after %v", r.StartPhase, r.FormAfterStart)
	}
	if len(r.ChangeMs) != 2 || r.ChangeMissing != 0 || r.ChangeMs[0] <= 0 {
		t.Errorf("changes %v, missing %d", r.ChangeMs, r.ChangeMissing)
	}
	if len(r.NodeFormMs) != 5 || r.NodeFormMissing != 0 || len(r.NodeChangeMs) != 2*4 || r.NodeChangeMissing != 0 {
		t.Errorf("per node: formed %v (missing %d), changes %v (missing %d)", r.NodeFormMs, r.NodeFormMissing, r.NodeChangeMs, r.NodeChangeMissing)
	}
	if r.BytesPerSecPerNode <= 0 || r.WindowSec <= 0 {
		t.Errorf("%.0f B/s/node over %.2f s", r.BytesPerSecPerNode, r.WindowSec)
	}
	figs := SimFigures(res)
	if len(figs) != 6 {
		t.Fatalf("%d figures", len(figs))
	}
	for _, f := range figs {
		if f.Part != "sim" || f.Members != 5 || len(f.Samples) == 0 || f.P50 < 0 || f.P99 < f.P50 || f.Max < f.P99 {
			t.Errorf("figure %+v", f)
		}
	}
}

func TestRunSimRejectsBadSizes(t *testing.T) {
	for _, n := range []int{1, MaxSimMembers + 1} {
		if _, err := RunSim(context.Background(), SimOptions{Members: []int{n}}); err == nil {
			t.Errorf("size %d accepted", n)
		}
	}
}
