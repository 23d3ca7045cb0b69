package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-lb/shoal/control/capacity"
	"github.com/shoal-lb/shoal/control/gossip"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/health"
	"github.com/shoal-lb/shoal/control/ranges"
)

// The cluster loop: in gossip mode the node learns its peers and their
// availability from memberlist, rebuilds the range table whenever the view
// changes, publishes its share to the workers and advertises the table's
// hash, so that every node can tell whether all agree.

// maxHold bounds a make-before-break hold when peers do not agree (one is
// unreachable but not yet declared dead, or runs other software).
const maxHold = 3 * time.Second

// cluster is the gossip-mode state of a node.
type cluster struct {
	n       *Node
	g       *gossip.Gossip
	agent   *capacity.Agent
	wake    chan struct{} // admin changes (drain, weight)
	cpu     cpuSampler
	leaving bool
	checker *health.Checker // nil: no checks configured
	// Slow start: the ramp restarts when the node joins and whenever it
	// becomes healthy again.
	rampStart  time.Time
	wasHealthy bool
	failOpen   bool
}

func (n *Node) startCluster(ctx context.Context) (*cluster, error) {
	cfg := n.cfg
	key, err := cfg.GossipKey()
	if err != nil {
		return nil, inputErr("%v", err)
	}
	agent, err := capacity.New(capacity.Config{
		Capacity: cfg.SelfWeight(), LoadAware: cfg.Capacity.LoadAware,
		MaxConnections: cfg.Capacity.MaxConnections, Alpha: cfg.Capacity.Alpha,
		Step: cfg.Capacity.Step, Hysteresis: cfg.Capacity.Hysteresis,
	})
	if err != nil {
		return nil, inputErr("%v", err)
	}
	addr := netip.MustParsePrefix(cfg.Interface.Address).Addr().String()
	c := &cluster{n: n, agent: agent, wake: make(chan struct{}, 1), checker: n.checker,
		rampStart: time.Now(), wasHealthy: n.checker == nil || n.checker.Healthy()}
	c.updateRamp()
	g, err := gossip.Start(gossip.Config{
		NodeID: cfg.NodeID, BindAddr: addr, BindPort: cfg.Gossip.Port,
		Seeds: cfg.Gossip.Seeds, Key: key, Logger: n.log,
	}, c.localMeta(""))
	if err != nil {
		if errors.Is(err, gossip.ErrWrongKey) || errors.Is(err, gossip.ErrNodeIDConflict) {
			return nil, inputErr("gossip: %v", err)
		}
		return nil, fmt.Errorf("gossip: %w", err)
	}
	c.g = g
	c.rebuild()
	return c, nil
}

func (c *cluster) localMeta(tableHash string) gossip.Meta {
	st := c.agent.State()
	health := gossip.HealthHealthy
	switch {
	case st.Draining:
		health = gossip.HealthDraining
	case c.checker != nil && !c.checker.Healthy():
		health = gossip.HealthUnhealthy
	}
	capv := st.Capacity
	if st.Override != nil {
		// The operator re-rated the node: the override is its capacity too.
		capv = *st.Override
	}
	return gossip.Meta{NodeID: c.n.cfg.NodeID, Capacity: capv, Availability: st.Availability,
		Health: health, TableHash: tableHash, Epoch: c.n.epoch(), Groups: c.n.cfg.MemberOf}
}

// run reacts to membership changes, admin changes and load samples until
// ctx ends.
func (c *cluster) run(ctx context.Context) {
	sub := c.g.Subscribe()
	tick := time.NewTicker(time.Duration(c.n.cfg.Capacity.SampleIntervalMS) * time.Millisecond)
	defer tick.Stop()
	var healthChanged <-chan struct{}
	if c.checker != nil {
		healthChanged = c.checker.Changed()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-sub:
			if !ok {
				return
			}
		case <-c.wake:
		case <-healthChanged:
		case <-tick.C:
			flows := c.n.flowCounts()
			c.agent.Observe(int(flows.Established+flows.SynRcvd), c.cpu.busy())
		}
		c.updateRamp()
		c.rebuild()
	}
}

// updateRamp sets the slow-start factor: from initial_fraction to 1 over
// the window, rounded down to capacity.step so that the table changes at
// most 1/step times during a ramp.
func (c *cluster) updateRamp() {
	healthy := c.checker == nil || c.checker.Healthy()
	if healthy && !c.wasHealthy {
		c.rampStart = time.Now()
	}
	c.wasHealthy = healthy
	w := c.n.cfg.SlowStartWindow()
	if w <= 0 {
		c.agent.SetRamp(1)
		return
	}
	f0 := c.n.cfg.Health.SlowStart.InitialFraction
	f := f0 + (1-f0)*float64(time.Since(c.rampStart))/float64(w)
	step := c.n.cfg.Capacity.Step
	f = math.Floor(f/step+1e-9) * step
	c.agent.SetRamp(math.Max(f0, math.Min(1, f)))
}

// rebuild builds the table from the current view and, when it changed,
// publishes it and advertises its hash. Every input is in the gossiped
// metas, so all nodes with the same view build the same table.
func (c *cluster) rebuild() {
	view := c.g.Members()
	ms := make([]ranges.Member, 0, len(view))
	self := c.agent.Availability()
	allZero := true
	for _, m := range view {
		w := m.Meta.Availability
		if m.Meta.NodeID == c.n.cfg.NodeID {
			w = self
		}
		if m.Meta.Health == gossip.HealthUnhealthy {
			w = 0
		}
		allZero = allZero && !(w > 0)
		ms = append(ms, ranges.Member{ID: m.Meta.NodeID, Weight: w})
	}
	if allZero {
		// Fail open: with no availability anywhere (every server failing
		// its checks, or everyone draining) the configured capacities
		// decide, as Envoy's panic threshold does: a cluster that
		// black-holes everything helps no one, while some servers may
		// still answer some requests.
		for i, m := range view {
			if !(c.leaving && m.Meta.NodeID == c.n.cfg.NodeID) {
				ms[i].Weight = m.Meta.Capacity
			}
		}
		if !c.failOpen {
			c.n.failOpen.Add(1)
			c.n.log.Warn("fail open: no member has availability (all unhealthy or draining); tables use configured capacities")
		}
	} else if c.failOpen {
		c.n.log.Info("fail open over: members have availability again")
	}
	c.failOpen = allZero
	gm := make([]groups.Member, len(view))
	for i, m := range view {
		gm[i] = groups.Member{ID: m.Meta.NodeID, Availability: ms[i].Weight, Groups: m.Meta.Groups}
	}
	c.n.applyGroups(gm)
	changed, err := c.n.applyMembers(ms, true)
	if err != nil {
		c.n.log.Error("range table", "err", err)
		return
	}
	if holding, d := c.n.heldFor(); holding {
		if ok, _ := c.agreement(); ok {
			c.n.release("every peer runs the new table")
		} else if d > maxHold {
			c.n.release(fmt.Sprintf("peers still disagree after %v", maxHold))
		}
	}
	want := c.localMeta(c.n.tableHash())
	have := c.g.LocalMeta()
	if changed || want.Availability != have.Availability || want.Health != have.Health || want.TableHash != have.TableHash {
		if err := c.g.UpdateMeta(want); err != nil && !errors.Is(err, gossip.ErrShutdown) {
			c.n.log.Warn("gossip: meta update", "err", err)
		}
	}
}

// agreement reports whether every member runs our table, and who does not.
func (c *cluster) agreement() (bool, []string) {
	mine := c.n.tableHash()
	var off []string
	for _, m := range c.g.Members() {
		if m.Meta.NodeID != c.n.cfg.NodeID && m.Meta.TableHash != mine {
			off = append(off, m.Meta.NodeID)
		}
	}
	return len(off) == 0, off
}

// poke makes the loop rebuild now.
func (c *cluster) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// leave drains this node and waits until every peer runs a table without
// it (bounded), so that new connections go elsewhere before it goes.
func (c *cluster) drainForLeave() {
	c.leaving = true
	c.agent.Drain(true)
	c.rebuild()
	deadline := time.Now().Add(time.Duration(c.n.cfg.Leave.AgreeTimeoutMS) * time.Millisecond)
	start := time.Now()
	for time.Now().Before(deadline) {
		c.rebuild()
		if ok, _ := c.agreement(); ok {
			c.n.log.Info("leave: every peer runs the table without us", "after", time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, off := c.agreement()
	c.n.log.Warn("leave: peers still disagree; leaving anyway", "disagreeing", off)
}

func (c *cluster) stop(graceful bool) {
	if graceful {
		if err := c.g.Leave(time.Second); err != nil {
			c.n.log.Warn("gossip leave", "err", err)
		}
	}
	c.g.Shutdown()
}

// cpuSampler turns /proc/stat into a busy fraction between two samples.
type cpuSampler struct{ idle, total uint64 }

func (s *cpuSampler) busy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return math.NaN()
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return math.NaN()
	}
	var total, idle uint64
	for i, v := range f[1:] {
		x, _ := strconv.ParseUint(v, 10, 64)
		total += x
		if i == 3 || i == 4 { // idle, iowait
			idle += x
		}
	}
	dt, di := total-s.total, idle-s.idle
	first := s.total == 0
	s.total, s.idle = total, idle
	if first || dt == 0 {
		return math.NaN()
	}
	return 1 - float64(di)/float64(dt)
}
