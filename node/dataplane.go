package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/sysctl"
)

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
	pool, err := dpdk.NewPktMempool("shoal_mbufs", uint32(cfg.DPDK.Mbufs), dataplane.MbufCache, dpdk.DefaultDataRoom)
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
	// RxWait: an idle worker sleeps on the queues' file descriptors where
	// the drivers give them (docs/dataplane.md, Workers and idle).
	if err := nic.Configure(dpdk.PortConf{Mempool: pool, RxChecksum: true, RxWait: true}); err != nil {
		return err
	}
	if err := tap.Configure(dpdk.PortConf{Mempool: pool, RxWait: true}); err != nil {
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
	// Loaded before the worker so its Close runs after the worker stops:
	// the worker writes the filter's bitmap.
	wanted := n.loadPrefilter(onExit, nic, clusterMAC, mac)
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
		Wanted:       wanted,
	})
	if err != nil {
		return err
	}
	onExit(rt.Free)
	for i, how := range rt.IdleWait() {
		n.log.Info("worker idle wait", "worker", i, "mode", how)
	}
	if err := rt.Start(); err != nil {
		return err
	}
	onExit(rt.Stop)
	n.runtime, n.nic, n.tap = rt, nic, tap
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
		if _, err := os.Stat(sysctl.Root + kv[0]); errors.Is(err, os.ErrNotExist) && strings.HasPrefix(kv[0], "ipv6") {
			continue
		}
		if _, err := sysctl.Set(kv[0], kv[1]); err != nil {
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

// FlowCounts is the number of this node's flows that are not yet
// established and that are, summed over the workers.
func (n *Node) FlowCounts() (halfOpen, established uint64) {
	_, f := dataplane.Totals(n.runtime.Stats())
	return f.SynRcvd, f.Established
}
