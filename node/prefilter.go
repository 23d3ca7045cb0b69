package node

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/shoal-lb/shoal/api"
	dpdk "github.com/shoal-lb/shoal/cgo"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/prefilter"
)

// prefilterState is the in-kernel prefilter of the NIC's af_packet socket
// (package prefilter): loaded by startDataplane before the worker, which
// keeps its bitmap, and attached by startReplyPath, where the classic
// filter it replaces was attached.
type prefilterState struct {
	f      *prefilter.Filter // nil: not loaded
	active bool              // attached to the PMD's socket
	reason string            // why it is (not) active
}

// loadPrefilter applies dataplane.prefilter: it loads the filter where the
// NIC is net_af_packet and returns its bitmap for the worker, or nil. A
// failure to load is logged and the node runs without the filter.
func (n *Node) loadPrefilter(onExit func(func()), nic *dpdk.Port, clusterMAC, nodeMAC net.HardwareAddr) *[dataplane.WantedWords]uint64 {
	mode := n.cfg.Dataplane.Prefilter
	if mode == "off" {
		n.pf.reason = "dataplane.prefilter: off"
		return nil
	}
	drv, err := nic.Driver()
	if err != nil || drv != "net_af_packet" {
		n.pf.reason = fmt.Sprintf("the NIC's driver is %s, not net_af_packet", drv)
		if mode == "on" {
			n.log.Warn("dataplane.prefilter: on, but it needs an af_packet NIC; running without it", "driver", drv, "err", err)
		}
		return nil
	}
	cfg := prefilter.Config{Seed: n.cfg.Cluster.Seed, DropOutgoing: true, Ports: n.cfg.Dataplane.ServedPorts()}
	cfg.VIP = netip.MustParseAddr(n.cfg.Cluster.VIP)
	copy(cfg.ClusterMAC[:], clusterMAC)
	copy(cfg.NodeMAC[:], nodeMAC)
	f, err := prefilter.Load(cfg)
	if err != nil {
		n.pf.reason = "loading failed: " + err.Error()
		n.log.Warn("the in-kernel prefilter could not be loaded; every node's worker still sees every client segment", "err", err)
		return nil
	}
	onExit(func() {
		if err := f.Close(); err != nil {
			n.log.Warn("closing the prefilter", "err", err)
		}
	})
	n.pf.f = f
	return f.Wanted()
}

// attachPrefilter attaches the loaded filter to the PMD's socket on
// netdev and reports whether it did; it also keeps the host's own frames
// out of the ring (the classic filter's job).
func (n *Node) attachPrefilter(netdev string) bool {
	if n.pf.f == nil {
		return false
	}
	k, err := n.pf.f.AttachNetdev(netdev)
	if err != nil || k != 1 {
		n.pf.reason = fmt.Sprintf("attaching to the packet socket of %s (%d attached): %v", netdev, k, err)
		n.log.Warn("the in-kernel prefilter could not be attached; running without it", "netdev", netdev, "sockets", k, "err", err)
		if derr := n.pf.f.Detach(); derr != nil {
			n.log.Warn("detaching the prefilter", "err", derr)
		}
		return false
	}
	n.pf.active = true
	n.pf.reason = "eBPF socket filter on the af_packet socket of " + netdev
	n.log.Info("in-kernel prefilter active", "netdev", netdev)
	return true
}

func (n *Node) prefilterStatus() api.PrefilterStatus {
	return api.PrefilterStatus{Active: n.pf.active, Reason: n.pf.reason}
}

func (n *Node) prefilterStats() api.PrefilterStats {
	s := api.PrefilterStats{Active: n.pf.active}
	if n.pf.f != nil {
		if d, err := n.pf.f.Dropped(); err == nil {
			s.ForeignDropped, s.SynNotOurs, s.SynPortDropped = d.ForeignDropped, d.SynNotOurs, d.SynPortDropped
		} else {
			n.log.Warn("reading the prefilter's counters", "err", err)
		}
	}
	return s
}
