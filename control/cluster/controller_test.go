package cluster

import (
	"log/slog"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/control/capacity"
	"github.com/shoal-lb/shoal/control/gossip"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/ranges"
)

const seed = 7

type rig struct {
	c      *Controller
	view   *fakeView
	pub    *fakePublisher
	clock  *fakeClock
	agent  *capacity.Agent
	health *fakeHealth
	flows  *fakeFlows
}

// newRig runs controller n1 (capacity 1 unless agent says otherwise)
// among peers.
func newRig(t *testing.T, cfg Config, agent *capacity.Agent, peers ...gossip.Meta) *rig {
	t.Helper()
	if agent == nil {
		agent = newAgent(1, false)
	}
	cfg.NodeID, cfg.Seed = "n1", seed
	if cfg.Step == 0 {
		cfg.Step = 0.1
	}
	if cfg.LeaveAgree == 0 {
		cfg.LeaveAgree, cfg.LeaveHalfOpen, cfg.LeaveDrain = 3*time.Second, 2*time.Second, 30*time.Second
	}
	st := agent.State()
	r := &rig{view: newView("n1", append([]gossip.Meta{meta("n1", st.Capacity, st.Availability)}, peers...)...),
		pub: &fakePublisher{}, clock: newClock(), agent: agent, health: &fakeHealth{ok: true}, flows: &fakeFlows{}}
	r.c = New(cfg, Deps{Membership: r.view, Publisher: r.pub, Capacity: agent, Health: r.health,
		Flows: r.flows, Clock: r.clock, Log: slog.New(slog.DiscardHandler)})
	return r
}

// share is what n1 owns in the table every node builds from ms.
func share(t *testing.T, ms ...ranges.Member) ranges.Ownership {
	t.Helper()
	return shareV(t, ranges.AlgoLatest, ms...)
}

func shareV(t *testing.T, algo int, ms ...ranges.Member) ranges.Ownership {
	t.Helper()
	tb, err := ranges.BuildV(algo, seed, ms)
	if err != nil {
		t.Fatal(err)
	}
	return tb.Ownership("n1")
}

func subset(a, b ranges.Ownership) bool {
	for i := range a {
		if a[i]&^b[i] != 0 {
			return false
		}
	}
	return true
}

// TestMakeBeforeBreak: a shrinking share is published first as the union
// of the old and the new share, and the old buckets are released only when
// every peer advertises the new table.
func TestMakeBeforeBreak(t *testing.T) {
	r := newRig(t, Config{}, nil, meta("n2", 1, 1))
	r.c.Step()
	old := share(t, ranges.Member{ID: "n1", Weight: 1}, ranges.Member{ID: "n2", Weight: 1})
	if got := r.pub.all(); len(got) != 1 || got[0] != old {
		t.Fatalf("first publish: %d tables, want the share alone", len(got))
	}
	if r.c.Snapshot().Holding {
		t.Fatal("the first table is held")
	}
	// Peers agree on the first table: nothing to publish again.
	r.view.agree(r.c.Snapshot().Hash)
	r.c.Step()
	if n := len(r.pub.all()); n != 1 {
		t.Fatalf("%d publishes for an unchanged table", n)
	}

	// n3 joins: n1's share shrinks.
	r.view.set(meta("n3", 1, 1))
	r.c.Step()
	next := share(t, ranges.Member{ID: "n1", Weight: 1}, ranges.Member{ID: "n2", Weight: 1}, ranges.Member{ID: "n3", Weight: 1})
	pubs := r.pub.all()
	if len(pubs) != 2 {
		t.Fatalf("%d publishes after the join, want 2", len(pubs))
	}
	union := old
	union.Union(&next)
	if pubs[1] != union {
		t.Fatalf("make: published %d buckets, want the union %d (old %d, new %d)", pubs[1].Count(), union.Count(), old.Count(), next.Count())
	}
	if !r.c.Snapshot().Holding || r.c.Snapshot().Published != union.Count() {
		t.Fatalf("not holding after the make: %+v", r.c.Snapshot())
	}
	// The peers still advertise the old table: the hold stays.
	r.clock.advance(time.Second)
	r.c.Step()
	if len(r.pub.all()) != 2 || !r.c.Snapshot().Holding {
		t.Fatal("released before the peers agreed")
	}
	if ok, off := r.c.Agreement(); ok || len(off) != 2 {
		t.Fatalf("agreement = %v %v, want n2 and n3 disagreeing", ok, off)
	}
	// The peers run the new table: break.
	r.view.agree(r.c.Snapshot().Hash)
	r.c.Step()
	pubs = r.pub.all()
	if len(pubs) != 3 || pubs[2] != next {
		t.Fatalf("break: %d publishes, last %d buckets, want the new share %d", len(pubs), pubs[len(pubs)-1].Count(), next.Count())
	}
	if r.c.Snapshot().Holding {
		t.Fatal("still holding after the release")
	}
	// Every bucket of both shares was accepted at every moment of the change.
	for i, p := range pubs[1:] {
		if !subset(next, p) {
			t.Errorf("publish %d misses buckets of the new share", i+1)
		}
	}
	if m := r.view.LocalMeta(); m.TableHash != r.c.Snapshot().Hash || m.Epoch != 3 {
		t.Errorf("advertised %q epoch %d, want %q epoch 3", m.TableHash, m.Epoch, r.c.Snapshot().Hash)
	}
}

// TestGrowingShareIsNotHeld: a share that only grows needs no hold.
func TestGrowingShareIsNotHeld(t *testing.T) {
	r := newRig(t, Config{}, nil, meta("n2", 1, 1), meta("n3", 1, 1))
	r.c.Step()
	r.view.agree(r.c.Snapshot().Hash)
	r.view.set(meta("n3", 1, 0)) // n3 drains
	r.c.Step()
	want := share(t, ranges.Member{ID: "n1", Weight: 1}, ranges.Member{ID: "n2", Weight: 1}, ranges.Member{ID: "n3", Weight: 0})
	if *r.pub.last() != want || r.c.Snapshot().Holding {
		t.Fatalf("published %d buckets (holding %v), want %d", r.pub.last().Count(), r.c.Snapshot().Holding, want.Count())
	}
}

// TestUnhealthyNodeHoldsNothing: a node whose own server fails its checks
// gives its buckets away at once, and ends a hold in place: its kernel
// would refuse the connections it accepted.
func TestUnhealthyNodeHoldsNothing(t *testing.T) {
	r := newRig(t, Config{}, nil, meta("n2", 1, 1))
	r.c.Step()
	r.view.agree(r.c.Snapshot().Hash)
	r.view.set(meta("n3", 1, 1)) // a join: a hold starts
	r.c.Step()
	if !r.c.Snapshot().Holding {
		t.Fatal("no hold after the join")
	}
	r.health.set(false)
	r.c.Step()
	if r.c.Snapshot().Holding || r.pub.last().Count() != 0 {
		t.Fatalf("unhealthy node holds %d buckets (holding %v)", r.pub.last().Count(), r.c.Snapshot().Holding)
	}
}

// TestHoldEndsAtItsBound: a peer that never agrees holds the old share for
// MaxHold at most.
func TestHoldEndsAtItsBound(t *testing.T) {
	r := newRig(t, Config{MaxHold: 3 * time.Second}, nil, meta("n2", 1, 1))
	r.c.Step()
	r.view.agree(r.c.Snapshot().Hash)
	r.view.set(meta("n2", 3, 3)) // n2 is re-rated: n1 gives buckets away
	r.c.Step()
	if !r.c.Snapshot().Holding {
		t.Fatal("no hold")
	}
	for _, step := range []time.Duration{time.Second, time.Second, 900 * time.Millisecond} {
		r.clock.advance(step)
		r.c.Step()
		if !r.c.Snapshot().Holding {
			t.Fatalf("released %v into the hold, before its bound", r.clock.Now().Sub(newClock().Now()))
		}
	}
	r.clock.advance(200 * time.Millisecond) // 3.1 s
	r.c.Step()
	want := share(t, ranges.Member{ID: "n1", Weight: 1}, ranges.Member{ID: "n2", Weight: 3})
	if r.c.Snapshot().Holding || *r.pub.last() != want {
		t.Fatalf("not released after the bound: holding %v, published %d, want %d", r.c.Snapshot().Holding, r.pub.last().Count(), want.Count())
	}
}

// TestFailOpen: when no member is healthy, the configured capacities
// decide; the event is counted once, and it ends when one recovers.
func TestFailOpen(t *testing.T) {
	unhealthy := func(id string, capv float64) gossip.Meta {
		m := meta(id, capv, capv)
		m.Health = gossip.HealthUnhealthy
		return m
	}
	r := newRig(t, Config{}, nil, unhealthy("n2", 1), unhealthy("n3", 2))
	r.health.set(false)
	r.c.Step()
	r.c.Step()
	want := share(t, ranges.Member{ID: "n1", Weight: 1}, ranges.Member{ID: "n2", Weight: 1}, ranges.Member{ID: "n3", Weight: 2})
	if *r.pub.last() != want {
		t.Fatalf("fail open published %d buckets, want %d (capacities 1:1:2)", r.pub.last().Count(), want.Count())
	}
	if s := r.c.Snapshot(); s.FailOpenBuilds != 1 {
		t.Fatalf("fail-open builds = %d, want 1", s.FailOpenBuilds)
	}
	if m := r.view.LocalMeta(); m.Health != gossip.HealthUnhealthy {
		t.Fatalf("advertised health %q", m.Health)
	}
	// n3 recovers: it takes everything, the others nothing.
	r.view.set(meta("n3", 2, 2))
	r.c.Step()
	if got := r.pub.last(); got.Count() != 0 && !r.c.Snapshot().Holding {
		t.Fatalf("n1 kept %d buckets after fail open ended", got.Count())
	}
	r.view.agree(r.c.Snapshot().Hash)
	r.c.Step()
	if got := r.pub.last(); got.Count() != 0 {
		t.Fatalf("n1 owns %d buckets while unhealthy with a healthy peer", got.Count())
	}
	if s := r.c.Snapshot(); s.FailOpenBuilds != 1 {
		t.Fatalf("fail-open builds = %d after recovery, want 1", s.FailOpenBuilds)
	}
}

// TestSlowStartSteps: a recovering node ramps from the initial fraction to
// its full availability in capacity steps. Load samples that wobble within
// the hysteresis change nothing between steps, so the table changes once
// per step at most.
func TestSlowStartSteps(t *testing.T) {
	agent := newAgent(10, true)
	agent.Observe(20, 0) // load 0.2: availability 8 before the ramp
	r := newRig(t, Config{SlowStart: 10 * time.Second, SlowStartInitial: 0.1}, agent, meta("n2", 10, 8))
	r.health.set(false)
	r.c.Step()
	r.health.set(true) // recovery: the ramp starts now
	var avail []float64
	for i := 0; i <= 48; i++ {
		agent.Observe(20+i%2*5, 0) // load 0.20 / 0.25: within the hysteresis of 2 steps
		r.c.Step()
		r.view.agree(r.c.Snapshot().Hash)
		avail = append(avail, agent.State().Availability)
		r.clock.advance(250 * time.Millisecond)
	}
	if avail[0] != 0.8 {
		t.Errorf("availability at the start of the ramp = %v, want 0.1 × 8", avail[0])
	}
	if last := avail[len(avail)-1]; last != 8 {
		t.Errorf("availability after the window = %v, want 8", last)
	}
	distinct := 1
	for i := 1; i < len(avail); i++ {
		if avail[i] < avail[i-1] {
			t.Fatalf("availability fell from %v to %v during the ramp", avail[i-1], avail[i])
		}
		if avail[i] != avail[i-1] {
			distinct++
		}
	}
	if distinct > 10 {
		t.Errorf("%d distinct availabilities during the ramp, want at most 1/step = 10", distinct)
	}
	// Each publish is one of the ramp's tables, plus releases of holds.
	if n := len(r.pub.all()); n > 2*10+1 {
		t.Errorf("%d publishes during the ramp", n)
	}
}

func TestRampFactor(t *testing.T) {
	for _, c := range []struct {
		elapsed time.Duration
		want    float64
	}{{0, 0.1}, {time.Second, 0.1}, {1500 * time.Millisecond, 0.2}, {5 * time.Second, 0.5}, {9999 * time.Millisecond, 0.9}, {10 * time.Second, 1}, {time.Hour, 1}} {
		if got := RampFactor(c.elapsed, 10*time.Second, 0.1, 0.1); got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("RampFactor(%v) = %v, want %v", c.elapsed, got, c.want)
		}
	}
	if RampFactor(time.Second, 0, 0.1, 0.1) != 1 {
		t.Error("a zero window ramps")
	}
}

// TestLeaveWaitsForFlows: a leave gives the share away, waits for the
// peers, then for handshakes before stopping the server, then for the
// established flows.
func TestLeaveWaitsForFlows(t *testing.T) {
	r := newRig(t, Config{}, nil, meta("n2", 1, 1))
	r.c.Step()
	r.view.agree(r.c.Snapshot().Hash)
	start := r.clock.Now()
	r.flows.set(3, 40)
	var stoppedAt time.Time
	r.clock.onSleep = func(now time.Time) {
		el := now.Sub(start)
		if el >= 100*time.Millisecond {
			r.view.agree(r.c.Snapshot().Hash) // the peers caught up
		}
		switch {
		case el >= 900*time.Millisecond:
			r.flows.set(0, 0)
		case el >= 300*time.Millisecond:
			r.flows.set(0, 40)
		}
	}
	r.c.Leave(func() {
		stoppedAt = r.clock.Now()
		if h, _ := r.flows.FlowCounts(); h != 0 {
			t.Errorf("server stopped with %d handshakes in flight", h)
		}
		if got := r.pub.last(); got.Count() != 0 {
			t.Errorf("server stopped while the node still accepts %d buckets", got.Count())
		}
	})
	if stoppedAt.IsZero() {
		t.Fatal("the server was never stopped")
	}
	if el := stoppedAt.Sub(start); el < 300*time.Millisecond || el > 340*time.Millisecond {
		t.Errorf("server stopped %v after the leave began, want just after the handshakes ended (300 ms)", el)
	}
	if el := r.clock.Now().Sub(start); el < 900*time.Millisecond || el > 940*time.Millisecond {
		t.Errorf("leave returned %v after it began, want just after the flows ended (900 ms)", el)
	}
	if m := r.view.LocalMeta(); m.Health != gossip.HealthDraining || m.Availability != 0 {
		t.Errorf("leaving node advertises %q availability %v", m.Health, m.Availability)
	}
}

// TestLeaveBounded: peers that never agree and flows that never end delay
// a leave by the configured bounds, no more.
func TestLeaveBounded(t *testing.T) {
	r := newRig(t, Config{LeaveAgree: time.Second, LeaveHalfOpen: 500 * time.Millisecond, LeaveDrain: 2 * time.Second}, nil, meta("n2", 1, 1))
	r.c.Step()
	r.flows.set(1, 1)
	start := r.clock.Now()
	stopped := false
	r.c.Leave(func() {
		stopped = true
		// Peers never agreed, and the node leaves anyway: it must accept
		// nothing once its server is gone.
		if got := r.pub.last(); got.Count() != 0 {
			t.Errorf("server stopped while the node still accepts %d buckets", got.Count())
		}
	})
	if el := r.clock.Now().Sub(start); el < 3500*time.Millisecond || el > 3600*time.Millisecond {
		t.Errorf("leave took %v, want 1 s + 0.5 s + 2 s", el)
	}
	if !stopped {
		t.Error("server not stopped")
	}
}

// TestStatic: a node without gossip builds once and holds nothing.
func TestStatic(t *testing.T) {
	pub := &fakePublisher{}
	c := New(Config{NodeID: "n1", Seed: seed, Extra: []int{0, 1, 2}}, Deps{Publisher: pub, Capacity: newAgent(1, false)})
	ms := []ranges.Member{{ID: "n1", Weight: 1}, {ID: "n2", Weight: 2}}
	if err := c.ApplyStatic(ms, nil); err != nil {
		t.Fatal(err)
	}
	want := share(t, ms...)
	for _, b := range []uint16{0, 1, 2} {
		want.Set(b)
	}
	if len(pub.all()) != 1 || *pub.last() != want {
		t.Fatalf("static publish: %d tables, %d buckets, want one of %d", len(pub.all()), pub.last().Count(), want.Count())
	}
	if ok, _ := c.Agreement(); !ok {
		t.Fatal("a static node disagrees")
	}
	if err := c.ApplyStatic([]ranges.Member{{ID: "n1", Weight: 1}, {ID: "n1", Weight: 1}}, nil); err == nil {
		t.Fatal("a member listed twice was accepted")
	}
}

// TestAlgorithmNegotiation: the cluster builds with the newest table
// algorithm every member offers; when the last old member upgrades, every
// node switches, make-before-break.
func TestAlgorithmNegotiation(t *testing.T) {
	old := meta("n2", 1, 1)
	old.TableAlgorithm = 0 // a meta from before the field: algorithm 1
	r := newRig(t, Config{}, nil, old, meta("n3", 1, 1))
	r.c.Step()
	ms := []ranges.Member{{ID: "n1", Weight: 1}, {ID: "n2", Weight: 1}, {ID: "n3", Weight: 1}}
	if s := r.c.Snapshot(); s.Algorithm != ranges.AlgoV1 || *r.pub.last() != shareV(t, ranges.AlgoV1, ms...) {
		t.Fatalf("with an old member: algorithm %d, want 1 and its share", s.Algorithm)
	}
	if m := r.view.LocalMeta(); m.TableAlgorithm != ranges.AlgoLatest {
		t.Fatalf("n1 offers algorithm %d, want %d", m.TableAlgorithm, ranges.AlgoLatest)
	}
	r.view.agree(r.c.Snapshot().Hash)
	r.c.Step()
	// n2 upgrades.
	r.view.set(meta("n2", 1, 1))
	r.c.Step()
	s := r.c.Snapshot()
	v1, v2 := shareV(t, ranges.AlgoV1, ms...), shareV(t, ranges.AlgoLatest, ms...)
	union := v1
	union.Union(&v2)
	if s.Algorithm != ranges.AlgoLatest || *r.pub.last() != union || !s.Holding {
		t.Fatalf("after the upgrade: algorithm %d, holding %v, published %d buckets, want %d (v1 ∪ v2)", s.Algorithm, s.Holding, r.pub.last().Count(), union.Count())
	}
	r.view.agree(s.Hash)
	r.c.Step()
	if *r.pub.last() != v2 {
		t.Fatalf("after agreement: %d buckets, want the v2 share %d", r.pub.last().Count(), v2.Count())
	}
}

// TestHeldBack: a node configured with table_algorithm_max 1 holds the
// whole cluster at 1 and says so in its meta.
func TestHeldBack(t *testing.T) {
	r := newRig(t, Config{TableAlgorithmMax: 1}, nil, meta("n2", 1, 1))
	r.c.Step()
	if s := r.c.Snapshot(); s.Algorithm != ranges.AlgoV1 {
		t.Fatalf("algorithm %d, want 1", s.Algorithm)
	}
	if m := r.view.LocalMeta(); m.TableAlgorithm != 1 {
		t.Fatalf("n1 offers %d, want 1", m.TableAlgorithm)
	}
}

// TestServing: a node serves while it holds weight in the cluster table;
// a zero-weight or absent member does not, nor anything before a table.
func TestServing(t *testing.T) {
	c := New(Config{NodeID: "n1", Seed: seed}, Deps{Publisher: &fakePublisher{}, Capacity: newAgent(1, false)})
	if c.Serving("n1") {
		t.Fatal("serving before the first table")
	}
	if err := c.ApplyStatic([]ranges.Member{{ID: "n1", Weight: 1}, {ID: "n2", Weight: 0}, {ID: "n3", Weight: 2}}, nil); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]bool{"n1": true, "n2": false, "n3": true, "n4": false} {
		if got := c.Serving(id); got != want {
			t.Errorf("Serving(%s) = %v, want %v", id, got, want)
		}
	}
}

// TestStepWithoutChangeBuildsNothing: Steps come every capacity sample and
// on every gossip event; one whose inputs are those of the last build
// builds neither the range table nor the group tables again, and any
// change of an input (a weight, a member, a group membership) does.
func TestStepWithoutChangeBuildsNothing(t *testing.T) {
	web := meta("n2", 1, 1)
	web.Groups = []string{"web"}
	r := newRig(t, Config{Groups: []groups.Group{{Name: "web"}}}, nil, web)
	r.c.Step()
	gt := r.c.Groups()
	for range 10 {
		r.c.Step()
	}
	if b := r.c.Builds(); b != 1 {
		t.Fatalf("11 Steps over the same view made %d range-table builds, want 1", b)
	}
	if r.c.Groups() != gt {
		t.Fatal("a Step over the same view rebuilt the group tables")
	}
	if n := len(r.pub.all()); n != 1 {
		t.Fatalf("%d tables published, want 1", n)
	}

	half := meta("n2", 1, 0.5)
	half.Groups = []string{"web"}
	r.view.set(half)
	r.c.Step()
	if b := r.c.Builds(); b != 2 {
		t.Fatalf("a weight change made %d builds in all, want 2", b)
	}
	want := share(t, ranges.Member{ID: "n1", Weight: 1}, ranges.Member{ID: "n2", Weight: 0.5})
	if got := r.c.Snapshot().Table.Ownership("n1"); got != want {
		t.Fatal("after the weight change n1's share is not the one the new weights build")
	}
	if r.c.Groups() == gt {
		t.Fatal("a weight change left the group tables as they were")
	}
	gt = r.c.Groups()

	half.Groups = nil
	r.view.set(half)
	r.c.Step()
	if r.c.Builds() != 2 {
		t.Fatal("a change of group membership alone rebuilt the range table")
	}
	if r.c.Groups() == gt || len(r.c.Groups().Members("web")) != 0 {
		t.Fatalf("n2 left group web, but the group tables still list %v", r.c.Groups().Members("web"))
	}
}
