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
)

// The gossip wiring: memberlist over the node address, and the loop that
// hands every change (membership, a load sample, an operator's drain or
// weight, a health transition) to the cluster controller.

// newAgent is the capacity agent of the node's configured capacity.
func (n *Node) newAgent() (*capacity.Agent, error) {
	cfg := n.cfg
	agent, err := capacity.New(capacity.Config{
		Capacity: cfg.SelfWeight(), LoadAware: cfg.Capacity.LoadAware,
		MaxConnections: cfg.Capacity.MaxConnections, Alpha: cfg.Capacity.Alpha,
		Step: cfg.Capacity.Step, Hysteresis: cfg.Capacity.Hysteresis,
	})
	if err != nil {
		return nil, inputErr("%v", err)
	}
	return agent, nil
}

// startGossip joins the cluster advertising meta.
func (n *Node) startGossip(meta gossip.Meta) (*gossip.Gossip, error) {
	cfg := n.cfg
	key, err := cfg.GossipKey()
	if err != nil {
		return nil, inputErr("%v", err)
	}
	addr := netip.MustParsePrefix(cfg.Interface.Address).Addr().String()
	gc := gossip.Config{
		NodeID: cfg.NodeID, BindAddr: addr, BindPort: cfg.Gossip.Port,
		Seeds: cfg.Gossip.Seeds, Key: key, Logger: n.log,
	}
	if n.versions != nil && n.versions.gossip != nil {
		gc.State = n.versions.gossip // the update table rides on gossip
	}
	g, err := gossip.Start(gc, meta)
	if err != nil {
		if errors.Is(err, gossip.ErrWrongKey) || errors.Is(err, gossip.ErrNodeIDConflict) {
			return nil, inputErr("gossip: %v", err)
		}
		return nil, fmt.Errorf("gossip: %w", err)
	}
	return g, nil
}

// runLoop steps the controller on every change until ctx ends.
func (n *Node) runLoop(ctx context.Context) {
	sub := n.gossip.Subscribe()
	tick := time.NewTicker(time.Duration(n.cfg.Capacity.SampleIntervalMS) * time.Millisecond)
	defer tick.Stop()
	var healthChanged <-chan struct{}
	if n.checker != nil {
		healthChanged = n.checker.Changed()
	}
	var cpu cpuSampler
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-sub:
			if !ok {
				return
			}
		case <-n.wake:
		case <-healthChanged:
		case <-tick.C:
			h, e := n.FlowCounts()
			n.agent.Observe(int(h+e), cpu.busy())
		}
		n.ctrl.Step()
	}
}

// poke makes the loop step now (after an operator's change).
func (n *Node) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
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
