package node

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/control/capacity"
	"github.com/shoal-lb/shoal/control/cluster"
	"github.com/shoal-lb/shoal/control/gossip"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/health"
	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/replypath"
)

// InputError is a failure caused by the operator's input; it names the
// config field or the resource at fault.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(format string, a ...any) error {
	return &InputError{fmt.Errorf(format, a...)}
}

// Node is a running node: the parts Run wires together. The admin API
// reads them.
type Node struct {
	cfg     *config.Config
	log     *slog.Logger
	started time.Time

	// Set by startDataplane before anything else runs, then constant.
	runtime   *dataplane.Runtime
	nic, tap  *dpdk.Port
	hugepages bool

	ctrl    *cluster.Controller
	agent   *capacity.Agent
	gossip  *gossip.Gossip  // nil: static members
	checker *health.Checker // nil: no checks configured
	wake    chan struct{}   // operator changes (drain, weight) for the loop

	suspects suspects // nodes that did not answer a handoff lately
	versions *versionsSvc

	webMu sync.Mutex
	web   *serving // nil while the server is stopped (POST /v1/server, a drill)

	// Set once at start by startReplyPath.
	reply          replypath.Decision
	replyInstalled *replypath.Installed
	// Set at start by startDataplane and startReplyPath.
	pf prefilterState
}

// Run runs the node until ctx is done, then tears everything down.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	n := &Node{cfg: cfg, log: log, started: time.Now(), wake: make(chan struct{}, 1)}
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	onExit := func(f func()) { cleanups = append(cleanups, f) }

	if err := n.startDataplane(onExit); err != nil {
		return err
	}
	if err := n.configureTap(); err != nil {
		return err
	}
	if err := n.startReplyPath(onExit); err != nil {
		return err
	}
	var hc cluster.Health
	if len(cfg.Health.Checks) > 0 {
		n.checker = health.New(cfg.Health.Checks, log)
		hc = n.checker
		hctx, stopHealth := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); n.checker.Run(hctx) }()
		onExit(func() { stopHealth(); <-done })
	}
	if err := n.openVersions(); err != nil {
		return err
	}
	onExit(func() { n.versions.stop() })
	agent, err := n.newAgent()
	if err != nil {
		return err
	}
	n.agent = agent
	extra, _ := config.ParseBuckets(cfg.Dataplane.ExtraBuckets)
	deps := cluster.Deps{Publisher: n.runtime, Capacity: agent, Health: hc, Flows: n, Log: log}
	ccfg := cluster.Config{
		NodeID: cfg.NodeID, Seed: cfg.Cluster.Seed, Groups: cfg.Groups, MemberOf: cfg.MemberOf, Extra: extra,
		TableAlgorithmMax: cfg.Cluster.TableAlgorithmMax,
		SlowStart:         cfg.SlowStartWindow(), SlowStartInitial: cfg.Health.SlowStart.InitialFraction, Step: cfg.Capacity.Step,
		LeaveAgree:    time.Duration(cfg.Leave.AgreeTimeoutMS) * time.Millisecond,
		LeaveHalfOpen: 2 * time.Second,
		LeaveDrain:    time.Duration(cfg.Leave.DrainTimeoutSec) * time.Second,
	}
	if cfg.Gossip.Enabled() {
		// The controller needs the membership, and gossip starts with the
		// controller's first meta: a membership that answers for gossip
		// once it runs breaks the cycle.
		lazy := &lazyMembership{}
		deps.Membership = lazy
		n.ctrl = cluster.New(ccfg, deps)
		g, err := n.startGossip(n.ctrl.InitialMeta())
		if err != nil {
			return err
		}
		lazy.g, n.gossip = g, g
		n.ctrl.Step()
	} else {
		n.ctrl = cluster.New(ccfg, deps)
		var ms []ranges.Member
		var gm []groups.Member
		for _, m := range cfg.Cluster.Members {
			ms = append(ms, ranges.Member{ID: m.ID, Weight: m.Weight})
			gm = append(gm, groups.Member{ID: m.ID, Availability: m.Weight, Groups: m.Groups})
		}
		if err := n.ctrl.ApplyStatic(ms, gm); err != nil {
			return inputErr("%v", err)
		}
	}
	stopGossip := func(graceful bool) {
		if n.gossip == nil {
			return
		}
		if graceful {
			if err := n.gossip.Leave(time.Second); err != nil {
				log.Warn("gossip leave", "err", err)
			}
		}
		n.gossip.Shutdown()
	}
	if err := n.versions.start(); err != nil {
		stopGossip(false)
		return err
	}
	if err := n.setServer(true); err != nil {
		stopGossip(false)
		return err
	}
	admin, err := startAdmin(n)
	if err != nil {
		n.setServer(false)
		stopGossip(false)
		return err
	}
	onExit(func() { admin.stop() })
	loopCtx, stopLoop := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		if n.gossip != nil {
			n.runLoop(loopCtx)
		}
	}()
	snap := n.ctrl.Snapshot()
	log.Info("node ready", "vip", cfg.Cluster.VIP, "address", cfg.Interface.Address, "reply_path", n.reply.Mode,
		"owned_buckets", snap.Owned, "table", snap.Hash, "hugepages", n.hugepages, "gossip", n.gossip != nil)
	<-ctx.Done()
	log.Info("node stopping")
	stopLoop()
	<-loopDone
	if n.gossip != nil {
		n.ctrl.Leave(func() { n.setServer(false) })
	}
	n.setServer(false)
	stopGossip(true)
	return nil
}

// lazyMembership is the gossip view once gossip runs; before, it is this
// node alone with no meta.
type lazyMembership struct{ g *gossip.Gossip }

func (l *lazyMembership) Members() []gossip.Member {
	if l.g == nil {
		return nil
	}
	return l.g.Members()
}

func (l *lazyMembership) LocalMeta() gossip.Meta {
	if l.g == nil {
		return gossip.Meta{}
	}
	return l.g.LocalMeta()
}

func (l *lazyMembership) UpdateMeta(m gossip.Meta) error {
	if l.g == nil {
		return nil
	}
	return l.g.UpdateMeta(m)
}

// setServer stops or starts the node's web server without stopping the
// node: a dead application on a live node, for drills.
func (n *Node) setServer(running bool) error {
	n.webMu.Lock()
	defer n.webMu.Unlock()
	switch {
	case running && n.web == nil:
		w, err := n.startServing()
		if err != nil {
			return err
		}
		n.web = w
		n.log.Info("web server started")
	case !running && n.web != nil:
		n.web.stop()
		n.web = nil
		n.log.Warn("web server stopped")
	}
	return nil
}

func (n *Node) serverRunning() bool {
	n.webMu.Lock()
	defer n.webMu.Unlock()
	return n.web != nil
}

// Groups returns the current group tables (the handoff layer's chooser).
func (n *Node) Groups() *groups.Tables { return n.ctrl.Groups() }
