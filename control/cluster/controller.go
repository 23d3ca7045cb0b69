package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-lb/shoal/control/capacity"
	"github.com/shoal-lb/shoal/control/gossip"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/ranges"
)

// DefaultMaxHold bounds a make-before-break hold when peers do not agree
// (one is unreachable but not yet declared dead, or runs other software).
const DefaultMaxHold = 3 * time.Second

// leavePoll is how often a leave looks again at the peers and the flows.
const leavePoll = 20 * time.Millisecond

// Config is what the controller needs of the node's configuration.
type Config struct {
	NodeID string
	Seed   uint32 // cluster seed: the range and group tables' seed
	// Groups are the cluster-wide group definitions; MemberOf the groups
	// this node serves (advertised in its meta).
	Groups   []groups.Group
	MemberOf []string
	// Extra are buckets accepted beyond the table share: the overlap
	// drill (dataplane.extra_buckets), empty in production.
	Extra []int
	// SlowStart is the ramp window after a join or a recovery (0: off);
	// the ramp goes from SlowStartInitial to 1 in capacity steps of Step.
	SlowStart        time.Duration
	SlowStartInitial float64
	Step             float64
	// TableAlgorithmMax is the newest range-table algorithm this node
	// offers (0: ranges.AlgoLatest). The cluster builds with the newest
	// version every member offers; holding a node back to 1 is the first
	// pass of a rolling upgrade (docs/protocol.md).
	TableAlgorithmMax int
	// MaxHold bounds a make-before-break hold (0: DefaultMaxHold).
	MaxHold time.Duration
	// LeaveAgree bounds the wait for every peer to run the table without
	// this node; LeaveHalfOpen the wait for handshakes in flight; LeaveDrain
	// the wait for established flows.
	LeaveAgree, LeaveHalfOpen, LeaveDrain time.Duration
}

// Membership is the gossip view (control/gossip.Gossip in a node).
type Membership interface {
	// Members is every live member, this node included.
	Members() []gossip.Member
	LocalMeta() gossip.Meta
	UpdateMeta(gossip.Meta) error
}

// Publisher hands ownership bitmaps to the data plane's workers and
// returns the epoch of the published table.
type Publisher interface {
	Publish(*ranges.Ownership) uint64
}

// Capacity is the capacity agent (control/capacity.Agent in a node).
type Capacity interface {
	State() capacity.State
	SetRamp(float64)
	Drain(bool)
}

// Health reports whether this node's own servers pass their checks
// (control/health.Checker in a node).
type Health interface{ Healthy() bool }

// Flows counts this node's flows in the data plane.
type Flows interface {
	FlowCounts() (halfOpen, established uint64)
}

// Clock is time as the controller sees it; tests move it by hand.
type Clock interface {
	Now() time.Time
	Sleep(time.Duration)
}

// SystemClock is the wall clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time        { return time.Now() }
func (SystemClock) Sleep(d time.Duration) { time.Sleep(d) }

// Deps are the controller's edges. Health may be nil (no checks
// configured); Membership is nil for a node with a static member list.
type Deps struct {
	Membership Membership
	Publisher  Publisher
	Capacity   Capacity
	Health     Health
	Flows      Flows
	Clock      Clock
	Log        *slog.Logger
}

// Controller decides this node's share of new connections: it builds the
// range and group tables from the members' gossiped availability,
// publishes its share make-before-break, advertises its own meta and the
// hash of the tables it runs, ramps a (re)joining node up slowly, fails
// open when no member has availability, and drains on leave.
type Controller struct {
	cfg Config
	d   Deps

	step sync.Mutex // one Step, Leave or ApplyStatic at a time

	mu         sync.Mutex // the fields below; read by Snapshot
	table      *ranges.Table
	owned      ranges.Ownership // this node's share (plus Extra)
	published  ranges.Ownership // what the workers run: owned, plus held buckets
	holding    bool
	holdSince  time.Time
	tableSince time.Time
	epoch      uint64
	groups     atomic.Pointer[groups.Tables]

	// The inputs of the last successful builds, used under step (the seed
	// and the group definitions are fixed): a Step whose inputs did not change skips the
	// builds, which are deterministic. Steps come every capacity sample
	// (500 ms) and on every gossip event; a version-2 build of even three
	// members takes milliseconds, and rebuilding the same table on every
	// Step was about a third of an idle node's Go CPU (issue 14).
	builtAlgo, builtGroupsAlgo int
	builtMembers               []ranges.Member
	builtGroups                []groups.Member
	builds                     atomic.Uint64

	failOpen       bool
	failOpenBuilds atomic.Uint64
	leaving        bool
	rampStart      time.Time
	wasHealthy     bool
}

// New makes a controller; nothing is published until Step or ApplyStatic.
func New(cfg Config, d Deps) *Controller {
	if cfg.MaxHold <= 0 {
		cfg.MaxHold = DefaultMaxHold
	}
	if cfg.TableAlgorithmMax <= 0 || cfg.TableAlgorithmMax > ranges.AlgoLatest {
		cfg.TableAlgorithmMax = ranges.AlgoLatest
	}
	if d.Clock == nil {
		d.Clock = SystemClock{}
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{cfg: cfg, d: d}
	c.rampStart = d.Clock.Now()
	c.wasHealthy = c.healthy()
	return c
}

func (c *Controller) healthy() bool { return c.d.Health == nil || c.d.Health.Healthy() }

// Step reacts to any change (membership, a load sample, an admin change, a
// health transition, a tick): it updates the slow-start ramp, rebuilds the
// tables from the view, publishes, ends a hold once peers agree or the
// bound passes, and advertises the node's meta when it changed.
func (c *Controller) Step() {
	c.step.Lock()
	defer c.step.Unlock()
	c.updateRamp()
	c.rebuild()
}

// updateRamp sets the slow-start factor: from SlowStartInitial to 1 over
// the window, rounded down to Step so that the table changes at most 1/Step
// times during a ramp. The ramp restarts whenever the node becomes healthy.
func (c *Controller) updateRamp() {
	now := c.d.Clock.Now()
	healthy := c.healthy()
	if healthy && !c.wasHealthy {
		c.rampStart = now
	}
	c.wasHealthy = healthy
	c.d.Capacity.SetRamp(RampFactor(now.Sub(c.rampStart), c.cfg.SlowStart, c.cfg.SlowStartInitial, c.cfg.Step))
}

// RampFactor is the slow-start factor after elapsed of a window w starting
// at f0, floored to multiples of step; 1 once the window has passed or when
// w is 0.
func RampFactor(elapsed, w time.Duration, f0, step float64) float64 {
	if w <= 0 {
		return 1
	}
	f := f0 + (1-f0)*float64(elapsed)/float64(w)
	f = math.Floor(f/step+1e-9) * step
	return math.Max(f0, math.Min(1, f))
}

// rebuild builds the tables from the current view and publishes them.
// Every input is in the gossiped metas, so all nodes with the same view
// build the same tables.
func (c *Controller) rebuild() {
	view := c.d.Membership.Members()
	ms := make([]ranges.Member, len(view))
	self := c.d.Capacity.State().Availability
	if !c.healthy() {
		self = 0
	}
	allZero := true
	for i, m := range view {
		// This node's own inputs are fresher than its gossiped meta, which
		// lags by one step; peers build from that meta, so any
		// difference shows as a disagreement for one round at most.
		w := m.Meta.Availability
		if m.Meta.Health == gossip.HealthUnhealthy {
			w = 0
		}
		if m.Meta.NodeID == c.cfg.NodeID {
			w = self
		}
		allZero = allZero && !(w > 0)
		ms[i] = ranges.Member{ID: m.Meta.NodeID, Weight: w}
	}
	if allZero {
		// Fail open: with no availability anywhere (every server failing
		// its checks, or everyone draining) the configured capacities
		// decide, as Envoy's panic threshold does: a cluster that
		// black-holes everything helps no one, while some servers may
		// still answer some requests. A leaving node stays out.
		for i, m := range view {
			if !(c.leaving && m.Meta.NodeID == c.cfg.NodeID) {
				ms[i].Weight = m.Meta.Capacity
			}
		}
		if !c.failOpen {
			c.failOpenBuilds.Add(1)
			c.d.Log.Warn("fail open: no member has availability (all unhealthy or draining); tables use configured capacities")
		}
	} else if c.failOpen {
		c.d.Log.Info("fail open over: members have availability again")
	}
	c.failOpen = allZero
	gm := make([]groups.Member, len(view))
	offered := make([]int, len(view))
	for i, m := range view {
		gm[i] = groups.Member{ID: m.Meta.NodeID, Availability: ms[i].Weight, Groups: m.Meta.Groups}
		offered[i] = m.Meta.TableAlgorithmMax()
		if m.Meta.NodeID == c.cfg.NodeID {
			offered[i] = c.cfg.TableAlgorithmMax
		}
	}
	// The newest algorithm every member can build: a cluster switches
	// when its last old member leaves or upgrades, and the new table's
	// hash makes the switch an ordinary make-before-break change.
	algo := ranges.Negotiate(offered)
	c.applyGroups(algo, gm)
	// An unhealthy node holds nothing: its server would refuse what it
	// accepts, which is worse for a client than the SYN retransmission a
	// gap costs.
	changed, err := c.apply(algo, ms, c.healthy())
	if err != nil {
		c.d.Log.Error("range table", "err", err)
		return
	}
	if holding, since := c.hold(); holding {
		if !c.healthy() {
			c.release("this node is unhealthy")
		} else if ok, _ := c.Agreement(); ok {
			c.release("every peer runs the new table")
		} else if held := c.d.Clock.Now().Sub(since); held > c.cfg.MaxHold {
			c.release(fmt.Sprintf("peers still disagree after %v", c.cfg.MaxHold))
		}
	}
	want := c.localMeta()
	have := c.d.Membership.LocalMeta()
	if changed || want.Availability != have.Availability || want.Health != have.Health ||
		want.TableHash != have.TableHash || want.Capacity != have.Capacity || want.Epoch != have.Epoch ||
		want.TableAlgorithm != have.TableAlgorithm {
		if err := c.d.Membership.UpdateMeta(want); err != nil && !errors.Is(err, gossip.ErrShutdown) {
			c.d.Log.Warn("gossip: meta update", "err", err)
		}
	}
}

// LocalMeta is what this node advertises now.
func (c *Controller) localMeta() gossip.Meta {
	st := c.d.Capacity.State()
	health := gossip.HealthHealthy
	switch {
	case st.Draining:
		health = gossip.HealthDraining
	case !c.healthy():
		health = gossip.HealthUnhealthy
	}
	capv := st.Capacity
	if st.Override != nil {
		// The operator re-rated the node: the override is its capacity too.
		capv = *st.Override
	}
	snap := c.Snapshot()
	return gossip.Meta{NodeID: c.cfg.NodeID, Capacity: capv, Availability: st.Availability,
		Health: health, TableHash: snap.Hash, Epoch: snap.Epoch, Groups: c.cfg.MemberOf,
		TableAlgorithm: uint8(c.cfg.TableAlgorithmMax)}
}

// InitialMeta is the meta to start gossip with, before any table exists.
func (c *Controller) InitialMeta() gossip.Meta { return c.localMeta() }

// ApplyStatic builds the tables of a node without gossip from its
// configured members; there are no peers to wait for, so nothing is held.
// There is no negotiation either: every node of a static cluster must be
// configured with the same table_algorithm_max.
func (c *Controller) ApplyStatic(ms []ranges.Member, gm []groups.Member) error {
	c.step.Lock()
	defer c.step.Unlock()
	c.applyGroups(c.cfg.TableAlgorithmMax, gm)
	_, err := c.apply(c.cfg.TableAlgorithmMax, ms, false)
	return err
}

// applyGroups rebuilds the group tables from the members' memberships.
func (c *Controller) applyGroups(algo int, ms []groups.Member) {
	if c.groups.Load() != nil && algo == c.builtGroupsAlgo && slices.EqualFunc(ms, c.builtGroups, sameGroupMember) {
		return
	}
	t, err := groups.BuildV(algo, c.cfg.Seed, c.cfg.Groups, ms)
	if err != nil {
		c.d.Log.Error("group tables", "err", err)
		return
	}
	c.groups.Store(t)
	c.builtGroupsAlgo = algo
	c.builtGroups = slices.Clone(ms)
	for i := range c.builtGroups {
		c.builtGroups[i].Groups = slices.Clone(ms[i].Groups)
	}
}

func sameGroupMember(a, b groups.Member) bool {
	return a.ID == b.ID && a.Availability == b.Availability && slices.Equal(a.Groups, b.Groups)
}

// Builds counts the range-table builds since the start (a Step with the
// same inputs as the last build makes none).
func (c *Controller) Builds() uint64 { return c.builds.Load() }

// Groups returns the current group tables (the handoff layer's chooser).
func (c *Controller) Groups() *groups.Tables { return c.groups.Load() }

// Serving says whether node id holds a share of the current cluster table:
// alive, healthy and with availability, as every node agrees. The handoff
// layer sends a persistent session back to its node only while it is.
func (c *Controller) Serving(id string) bool {
	c.mu.Lock()
	t := c.table
	c.mu.Unlock()
	if t == nil {
		return false
	}
	for _, m := range t.Members {
		if m.ID == id {
			return m.Weight > 0
		}
	}
	return false
}

// apply builds the range table for ms and, when its content changed,
// publishes this node's share (plus Extra). It reports whether the table
// changed.
//
// With hold the change is make-before-break: the workers get the union of
// the old and the new share until release (once the peers run the new
// table too), so a bucket moving away is briefly owned twice, which the
// data plane's overlap guard settles, instead of owned by nobody, which
// costs a client a SYN retransmission (one second).
func (c *Controller) apply(algo int, ms []ranges.Member, hold bool) (bool, error) {
	c.mu.Lock()
	built := c.table != nil
	c.mu.Unlock()
	if built && algo == c.builtAlgo && slices.Equal(ms, c.builtMembers) {
		return false, nil // the same inputs build the same table
	}
	t, err := ranges.BuildV(algo, c.cfg.Seed, ms)
	if err != nil {
		return false, fmt.Errorf("cluster.members: %w", err)
	}
	c.builds.Add(1)
	c.builtAlgo, c.builtMembers = algo, slices.Clone(ms)
	c.mu.Lock()
	if c.table != nil && c.table.Hash == t.Hash {
		c.mu.Unlock()
		return false, nil
	}
	own := t.Ownership(c.cfg.NodeID)
	for _, b := range c.cfg.Extra {
		own.Set(uint16(b))
	}
	first := c.table == nil
	publish := own
	c.holding = false
	now := c.d.Clock.Now()
	if hold && !first {
		publish.Union(&c.owned)
		c.holding = publish != own
		c.holdSince = now
	}
	c.table, c.owned, c.published, c.tableSince = t, own, publish, now
	c.mu.Unlock()
	epoch := c.d.Publisher.Publish(&publish)
	c.mu.Lock()
	c.epoch = epoch
	c.mu.Unlock()
	if first && len(c.cfg.Extra) > 0 {
		c.d.Log.Warn("dataplane.extra_buckets set: this node accepts buckets outside its share (overlap drill)", "extra", len(c.cfg.Extra))
	}
	c.d.Log.Info("range table published", "epoch", epoch, "hash", t.Hash, "algorithm", algo, "owned", own.Count(),
		"held_until_peers_agree", publish.Count()-own.Count(), "members", len(ms))
	return true, nil
}

// hold reports whether a hold is in place and since when.
func (c *Controller) hold() (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.holding, c.holdSince
}

// release ends a make-before-break hold: the workers get the new share
// alone.
func (c *Controller) release(why string) {
	c.mu.Lock()
	if !c.holding {
		c.mu.Unlock()
		return
	}
	c.holding = false
	own, held := c.owned, c.d.Clock.Now().Sub(c.holdSince)
	c.published = own
	c.mu.Unlock()
	epoch := c.d.Publisher.Publish(&own)
	c.mu.Lock()
	c.epoch = epoch
	c.mu.Unlock()
	c.d.Log.Info("released buckets held for the peers", "epoch", epoch, "after", held.Round(time.Millisecond), "why", why)
}

// Agreement reports whether every member advertises the tables this node
// runs, and which members do not. A node without gossip always agrees.
func (c *Controller) Agreement() (bool, []string) {
	if c.d.Membership == nil {
		return true, nil
	}
	mine := c.Snapshot().Hash
	var off []string
	for _, m := range c.d.Membership.Members() {
		if m.Meta.NodeID != c.cfg.NodeID && m.Meta.TableHash != mine {
			off = append(off, m.Meta.NodeID)
		}
	}
	return len(off) == 0, off
}

// Snapshot is the controller's state for the admin API.
type Snapshot struct {
	Table          *ranges.Table // nil before the first build
	Owned          int           // buckets in this node's share (Extra included)
	Published      int           // buckets the workers accept now (held ones included)
	Extra          int
	Holding        bool
	TableSince     time.Time
	Hash           string // the advertised hash: the cluster table's, or over it and every group table's
	Epoch          uint64
	FailOpenBuilds uint64
	Algorithm      int // the range-table algorithm of Table (0 before the first build)
}

// Snapshot returns the current state.
func (c *Controller) Snapshot() Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Snapshot{Table: c.table, Owned: c.owned.Count(), Published: c.published.Count(), Extra: len(c.cfg.Extra),
		Holding: c.holding, TableSince: c.tableSince, Epoch: c.epoch, FailOpenBuilds: c.failOpenBuilds.Load()}
	if c.table != nil {
		s.Hash = advertisedHash(c.table, c.groups.Load())
		s.Algorithm = c.table.Algorithm
	}
	return s
}

// advertisedHash is the cluster table's hash or, when groups are defined,
// a hash over it and every group table's, so that agreement covers the
// group tables too.
func advertisedHash(t *ranges.Table, gt *groups.Tables) string {
	if gt == nil || len(gt.Defs()) == 0 {
		return t.Hash
	}
	h := sha256.New()
	h.Write([]byte(t.Hash))
	for _, d := range gt.Defs() {
		tb, _ := gt.Table(d.Name)
		fmt.Fprintf(h, "|%s=%s", d.Name, tb.Hash)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Leave is the graceful leave of a gossiping node: give the buckets away,
// wait (bounded) until every peer runs a table without this node, let
// handshakes in flight finish, stop the server (requests in flight
// complete), then wait (bounded) for this node's flows to end. The caller
// leaves the gossip afterwards.
func (c *Controller) Leave(stopServer func()) {
	c.step.Lock()
	defer c.step.Unlock()
	c.leaving = true
	c.d.Capacity.Drain(true)
	c.rebuild()
	start := c.d.Clock.Now()
	agreed := false
	for c.d.Clock.Now().Sub(start) < c.cfg.LeaveAgree {
		c.rebuild()
		if ok, _ := c.Agreement(); ok {
			agreed = true
			c.d.Log.Info("leave: every peer runs the table without us", "after", c.d.Clock.Now().Sub(start).Round(time.Millisecond))
			break
		}
		c.d.Clock.Sleep(leavePoll)
	}
	if !agreed {
		_, off := c.Agreement()
		c.d.Log.Warn("leave: peers still disagree; leaving anyway", "disagreeing", off)
	}
	// Agreement may have come after the last rebuild looked, or never:
	// either way the share held for the peers goes now, before the server
	// stops, or this node's kernel would refuse the SYNs its workers still
	// accept for it.
	if holding, _ := c.hold(); holding {
		c.release("leaving")
	}
	c.waitFlows("handshakes", func(h, _ uint64) bool { return h == 0 }, c.cfg.LeaveHalfOpen)
	if stopServer != nil {
		stopServer()
	}
	c.waitFlows("flows", func(h, e uint64) bool { return h+e == 0 }, c.cfg.LeaveDrain)
}

// waitFlows polls the data plane until done holds or d passes.
func (c *Controller) waitFlows(what string, done func(halfOpen, established uint64) bool, d time.Duration) {
	start := c.d.Clock.Now()
	for {
		h, e := c.d.Flows.FlowCounts()
		if done(h, e) {
			return
		}
		if c.d.Clock.Now().Sub(start) >= d {
			c.d.Log.Warn("leave: "+what+" still open at the deadline", "half_open", h, "established", e, "waited", d)
			return
		}
		c.d.Clock.Sleep(leavePoll)
	}
}
