package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/health"
	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/dataplane"
)

// InputError is a failure caused by the operator's input; it names the
// config field or the resource at fault.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func inputErr(format string, a ...any) error {
	return &InputError{fmt.Errorf(format, a...)}
}

// Node is a running node. Fields are set by Run and read by the admin API.
type Node struct {
	cfg     *Config
	log     *slog.Logger
	started time.Time

	mu         sync.Mutex
	table      *ranges.Table
	owned      dataplane.Ownership
	extra      []int
	runtime    *dataplane.Runtime
	nic, tap   *dpdk.Port
	hugepages  bool
	cluster    *cluster
	tableSince time.Time
	holding    bool // publishing the old share too until the peers agree
	holdSince  time.Time
	failOpen   atomic.Uint64
	groups     atomic.Pointer[groups.Tables]
	checker    *health.Checker
	webMu      sync.Mutex
	web        *web // nil while the server is stopped (shoal lab server nK stop)
}

// setServer stops or starts the node's web server without stopping the
// node: a dead application on a live node, for drills and tests.
func (n *Node) setServer(running bool) error {
	n.webMu.Lock()
	defer n.webMu.Unlock()
	switch {
	case running && n.web == nil:
		w, err := startWeb(n.cfg, n.log)
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

// Groups returns the current group tables (the handoff layer's Chooser).
func (n *Node) Groups() *groups.Tables { return n.groups.Load() }

// applyGroups rebuilds the group tables from the members' memberships.
func (n *Node) applyGroups(ms []groups.Member) {
	t, err := groups.Build(n.cfg.Cluster.Seed, n.cfg.Groups, ms)
	if err != nil {
		n.log.Error("group tables", "err", err)
		return
	}
	n.groups.Store(t)
}

// Run runs the node until ctx is done, then tears everything down.
func Run(ctx context.Context, cfg *Config, log *slog.Logger) error {
	n := &Node{cfg: cfg, log: log, started: time.Now()}
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
	if len(cfg.Health.Checks) > 0 {
		n.checker = health.New(cfg.Health.Checks, log)
		hctx, stopHealth := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); n.checker.Run(hctx) }()
		onExit(func() { stopHealth(); <-done })
	}
	var cl *cluster
	if cfg.Gossip.Enabled() {
		c, err := n.startCluster(ctx)
		if err != nil {
			return err
		}
		cl = c
		n.mu.Lock()
		n.cluster = cl
		n.mu.Unlock()
	} else {
		if _, err := n.applyMembers(staticMembers(cfg), false); err != nil {
			return err
		}
		var gm []groups.Member
		for _, m := range cfg.Cluster.Members {
			gm = append(gm, groups.Member{ID: m.ID, Availability: m.Weight, Groups: m.Groups})
		}
		n.applyGroups(gm)
	}
	if err := n.setServer(true); err != nil {
		if cl != nil {
			cl.stop(false)
		}
		return err
	}
	admin, err := startAdmin(n)
	if err != nil {
		n.setServer(false)
		if cl != nil {
			cl.stop(false)
		}
		return err
	}
	onExit(func() { admin.stop() })
	loopCtx, stopLoop := context.WithCancel(context.Background())
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		if cl != nil {
			cl.run(loopCtx)
		}
	}()
	log.Info("node ready", "vip", cfg.Cluster.VIP, "address", cfg.Interface.Address,
		"owned_buckets", n.ownedCount(), "table", n.tableHash(), "hugepages", n.hugepages, "gossip", cl != nil)
	<-ctx.Done()
	log.Info("node stopping")
	stopLoop()
	<-loopDone
	if cl != nil {
		// Graceful leave: give the buckets away, wait until the peers run
		// the table without us, let handshakes in flight finish, then close
		// the server (requests in flight complete) and wait for our flows.
		cl.drainForLeave()
		n.waitFlows(func(f dataplane.FlowCounts) bool { return f.SynRcvd == 0 }, 2*time.Second)
	}
	n.setServer(false)
	if cl != nil {
		n.waitFlows(func(f dataplane.FlowCounts) bool { return f.SynRcvd+f.Established == 0 },
			time.Duration(cfg.Leave.DrainTimeoutSec)*time.Second)
		cl.stop(true)
	}
	return nil
}

// staticMembers is the member list of a node without gossip.
func staticMembers(cfg *Config) []ranges.Member {
	var ms []ranges.Member
	for _, m := range cfg.Cluster.Members {
		ms = append(ms, ranges.Member{ID: m.ID, Weight: m.Weight})
	}
	return ms
}

// waitFlows polls the data plane until done holds or d passes.
func (n *Node) waitFlows(done func(dataplane.FlowCounts) bool, d time.Duration) {
	deadline := time.Now().Add(d)
	for !done(n.flowCounts()) {
		if time.Now().After(deadline) {
			n.log.Warn("leave: flows still open at the deadline", "flows", n.flowCounts())
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startDataplane initialises the EAL, opens the NIC and the tap, and
// starts the worker. Each step registers its undo with onExit.
func (n *Node) startDataplane(onExit func(func())) error {
	cfg := n.cfg
	huge, err := n.chooseHugepages()
	if err != nil {
		return err
	}
	n.hugepages = huge
	eal := dpdk.EALConfig{
		Lcores:     cfg.DPDK.Lcores,
		MemoryMB:   cfg.DPDK.MemoryMB,
		Hugepages:  huge,
		InMemory:   true,
		FilePrefix: "shoal-" + cfg.NodeID,
		NoPCI:      !looksLikePCI(cfg.Interface.Device),
		LogLevel:   "error",
		// Telemetry would leave a socket in /var/run/dpdk; nodes report through the admin API.
		Extra: append([]string{"--no-telemetry"}, cfg.DPDK.ExtraArgs...),
	}
	if err := dpdk.InitEAL(eal); err != nil {
		return fmt.Errorf("dpdk: EAL init with %q: %w", strings.Join(dpdk.EALArgs(eal), " "), err)
	}
	onExit(func() {
		if err := dpdk.CleanupEAL(); err != nil {
			n.log.Warn("EAL cleanup", "err", err)
		}
	})
	workers := dpdk.WorkerLcores()
	if len(workers) < 1 {
		return inputErr("dpdk.lcores: %q gives no worker lcore; name at least two lcores", cfg.DPDK.Lcores)
	}
	pool, err := dpdk.NewPktMempool("shoal_mbufs", uint32(cfg.DPDK.Mbufs), 256, dpdk.DefaultDataRoom)
	if err != nil {
		return fmt.Errorf("dpdk: packet pool of %d mbufs (dpdk.mbufs, dpdk.memory_mb): %w", cfg.DPDK.Mbufs, err)
	}
	onExit(pool.Free)
	nic, err := dpdk.OpenPort(cfg.Interface.Device)
	if err != nil {
		return inputErr("interface.device: %v", err)
	}
	onExit(func() { nic.Close() })
	mac, err := nic.MAC()
	if err != nil {
		return err
	}
	if cfg.Interface.MAC != "" {
		mac, _ = net.ParseMAC(cfg.Interface.MAC)
	}
	tap, err := dpdk.OpenPort(fmt.Sprintf("net_tap0,iface=%s,mac=%s", cfg.Interface.Tap, mac))
	if err != nil {
		return inputErr("interface.tap: %v", err)
	}
	onExit(func() { tap.Close() })
	// The NIC verifies checksums where it can: the worker then trusts its
	// word instead of summing every segment it keeps (see dataplane.md).
	if err := nic.Configure(dpdk.PortConf{Mempool: pool, RxChecksum: true}); err != nil {
		return err
	}
	if err := tap.Configure(dpdk.PortConf{Mempool: pool}); err != nil {
		return err
	}
	// The NIC must take frames for the cluster MAC (multicast) and, on a
	// bridge still learning, for the node's own MAC: promiscuous does both.
	if err := nic.SetPromiscuous(true); err != nil {
		n.log.Warn("promiscuous mode refused; enabling all-multicast", "err", err)
		if err := nic.SetAllMulticast(true); err != nil {
			return err
		}
	}
	for _, p := range []*dpdk.Port{nic, tap} {
		if err := p.Start(); err != nil {
			return err
		}
	}
	clusterMAC, _ := net.ParseMAC(cfg.Cluster.MAC)
	rt, err := dataplane.NewRuntime(dataplane.RuntimeConfig{
		Classifier: dataplane.ClassifierConfig{
			VIP:         netip.MustParseAddr(cfg.Cluster.VIP),
			Seed:        cfg.Cluster.Seed,
			ClusterMAC:  clusterMAC,
			NodeMAC:     mac,
			MaxFlows:    uint32(cfg.Dataplane.MaxFlows),
			MaxHalfOpen: uint32(cfg.Dataplane.MaxHalfOpen),
			HalfOpen:    time.Duration(cfg.Dataplane.HalfOpenTimeoutSec) * time.Second,
			Idle:        time.Duration(cfg.Dataplane.IdleTimeoutSec) * time.Second,
			Closing:     time.Duration(cfg.Dataplane.ClosingTimeoutSec) * time.Second,
			Ports:       cfg.Dataplane.ServedPorts(),
		},
		NIC:          nic,
		Tap:          tap,
		Lcores:       workers[:1],
		IdleSleepMax: time.Duration(cfg.Dataplane.IdleSleepMaxUS) * time.Microsecond,
	})
	if err != nil {
		return err
	}
	onExit(rt.Free)
	if err := rt.Start(); err != nil {
		return err
	}
	onExit(rt.Stop)
	n.mu.Lock()
	n.runtime, n.nic, n.tap = rt, nic, tap
	n.mu.Unlock()
	return nil
}

// chooseHugepages applies dpdk.hugepages: "auto" uses hugepages when enough
// are free and otherwise falls back to --no-huge with a warning.
func (n *Node) chooseHugepages() (bool, error) {
	mode := n.cfg.DPDK.Hugepages
	if mode == "off" {
		return false, nil
	}
	need := (n.cfg.DPDK.MemoryMB + 1) / 2
	free, err := dpdk.HugepagesFree()
	if err == nil && free >= need {
		return true, nil
	}
	if mode == "on" {
		return false, inputErr("dpdk.hugepages: on, but only %d free 2 MiB hugepages for memory_mb %d (need %d); reserve them (make deps, or echo %d > /proc/sys/vm/nr_hugepages) or set hugepages: auto",
			free, n.cfg.DPDK.MemoryMB, need, need)
	}
	n.log.Warn("not enough hugepages; falling back to --no-huge, about half the packet rate",
		"free_pages", free, "needed", need)
	return false, nil
}

// looksLikePCI reports whether devargs names a PCI device (then the EAL
// must scan the PCI bus) rather than a virtual device.
func looksLikePCI(dev string) bool {
	name, _, _ := strings.Cut(dev, ",")
	name = strings.TrimPrefix(name, "pci:")
	return strings.Count(name, ":") >= 1 && strings.Contains(name, ".") && !strings.HasPrefix(name, "net_")
}

// configureTap gives the tap the node address and the VIP, and keeps the
// kernel from ever answering or announcing ARP for the VIP (the LVS-DR
// recipe; the worker also drops any such frame).
func (n *Node) configureTap() error {
	cfg := n.cfg
	tap := cfg.Interface.Tap
	for _, kv := range [][2]string{
		{"ipv4/conf/" + tap + "/arp_ignore", "1"},
		{"ipv4/conf/" + tap + "/arp_announce", "2"},
		{"ipv6/conf/" + tap + "/disable_ipv6", "1"},
	} {
		path := "/proc/sys/net/" + kv[0]
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) && strings.HasPrefix(kv[0], "ipv6") {
			continue
		}
		if err := os.WriteFile(path, []byte(kv[1]), 0o644); err != nil {
			return fmt.Errorf("tap %s: %w", tap, err)
		}
	}
	for _, args := range [][]string{
		{"addr", "replace", cfg.Interface.Address, "dev", tap},
		{"addr", "replace", cfg.Cluster.VIP + "/32", "dev", tap},
		{"link", "set", "dev", tap, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("tap %s: ip %s: %v: %s", tap, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// applyMembers builds the range table for ms and, when its content
// changed, publishes this node's share (plus any extra buckets) to the
// workers. It reports whether the table changed.
//
// With hold (gossip mode) the change is make-before-break: the workers get
// the union of the old and the new share until release is called (once the
// peers run the new table too), so a bucket moving away is briefly owned
// twice, which the overlap guard settles, instead of owned by nobody, which
// costs the client a SYN retransmission (one second).
func (n *Node) applyMembers(ms []ranges.Member, hold bool) (bool, error) {
	t, err := ranges.Build(n.cfg.Cluster.Seed, ms)
	if err != nil {
		return false, inputErr("cluster.members: %v", err)
	}
	n.mu.Lock()
	if n.table != nil && n.table.Hash == t.Hash {
		n.mu.Unlock()
		return false, nil
	}
	extra, _ := ParseBuckets(n.cfg.Dataplane.ExtraBuckets)
	var own dataplane.Ownership
	self := t.Index(n.cfg.NodeID)
	for b, o := range t.Owner {
		if self >= 0 && int(o) == self {
			own.Set(uint16(b))
		}
	}
	for _, b := range extra {
		own.Set(uint16(b))
	}
	first := n.table == nil
	publish := own
	n.holding = false
	if hold && !first {
		for i := range publish {
			publish[i] |= n.owned[i]
		}
		n.holding = publish != own
		n.holdSince = time.Now()
	}
	n.table, n.owned, n.extra = t, own, extra
	n.tableSince = time.Now()
	rt := n.runtime
	n.mu.Unlock()
	epoch := rt.Publish(&publish)
	if first && len(extra) > 0 {
		n.log.Warn("dataplane.extra_buckets set: this node accepts buckets outside its share (overlap drill)", "extra", len(extra))
	}
	n.log.Info("range table published", "epoch", epoch, "hash", t.Hash, "owned", own.Count(),
		"held_until_peers_agree", publish.Count()-own.Count(), "members", len(ms))
	return true, nil
}

// release ends a make-before-break hold: the workers get the new share
// alone.
func (n *Node) release(why string) {
	n.mu.Lock()
	if !n.holding {
		n.mu.Unlock()
		return
	}
	n.holding = false
	own, held := n.owned, time.Since(n.holdSince)
	rt := n.runtime
	n.mu.Unlock()
	epoch := rt.Publish(&own)
	n.log.Info("released buckets held for the peers", "epoch", epoch, "after", held.Round(time.Millisecond), "why", why)
}

// heldFor reports whether a hold is in place and for how long.
func (n *Node) heldFor() (bool, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.holding, time.Since(n.holdSince)
}

// tableHash is what the node advertises: the cluster table's hash, or,
// when groups are defined, a hash over it and every group table's, so that
// agreement covers the group tables too.
func (n *Node) tableHash() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.table == nil {
		return ""
	}
	return n.advertisedHash()
}

// advertisedHash needs n.mu held.
func (n *Node) advertisedHash() string {
	gt := n.groups.Load()
	if gt == nil || len(gt.Defs()) == 0 {
		return n.table.Hash
	}
	h := sha256.New()
	h.Write([]byte(n.table.Hash))
	for _, d := range gt.Defs() {
		tb, _ := gt.Table(d.Name)
		fmt.Fprintf(h, "|%s=%s", d.Name, tb.Hash)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func (n *Node) ownedCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.owned.Count()
}

func (n *Node) epoch() uint64 {
	n.mu.Lock()
	rt := n.runtime
	n.mu.Unlock()
	if rt == nil {
		return 0
	}
	return rt.Epoch()
}

func (n *Node) flowCounts() dataplane.FlowCounts {
	n.mu.Lock()
	rt := n.runtime
	n.mu.Unlock()
	_, f := dataplane.Totals(rt.Stats())
	return f
}
