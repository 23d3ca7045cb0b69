package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/dataplane/report"
)

// Verdict is what a worker does with one frame.
type Verdict uint8

const (
	Drop     Verdict = 0 // freed and counted
	ToKernel Verdict = 1 // out through the tap into this node's kernel
	ToNIC    Verdict = 2 // out through the NIC
)

func (v Verdict) String() string {
	switch v {
	case Drop:
		return "drop"
	case ToKernel:
		return "to-kernel"
	case ToNIC:
		return "to-nic"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// State is a flow's state in a worker's flow table.
type State uint8

const (
	Empty       State = 0
	SynRcvd     State = 1
	Established State = 2
	Closing     State = 3
	Withdrawn   State = 4
	numStates         = 5
)

func (s State) String() string {
	return [...]string{"empty", "syn_rcvd", "established", "closing", "withdrawn"}[s%numStates]
}

// TombstoneTime is how long a withdrawn flow keeps dropping the packets of
// a connection another node won.
const TombstoneTime = 5 * time.Second

// The counters and flow counts are defined in package report, which the
// admin API shares without linking the data plane.
type (
	Counters   = report.Counters
	FlowCounts = report.FlowCounts
)

// Ownership is the published form of the range table for one node (see
// package ranges): one bit per bucket.
type Ownership = ranges.Ownership

// ClassifierConfig is what the per-packet code needs to decide.
type ClassifierConfig struct {
	VIP         netip.Addr
	Seed        uint32
	ClusterMAC  net.HardwareAddr
	NodeMAC     net.HardwareAddr
	MaxFlows    uint32
	MaxHalfOpen uint32
	HalfOpen    time.Duration
	Idle        time.Duration
	Closing     time.Duration
	// Ports are the VIP ports the cluster serves: SYNs to any other port
	// are dropped (syn_port_dropped).
	Ports []uint16
}

// Validate names the first unusable field.
func (c ClassifierConfig) Validate() error {
	switch {
	case !c.VIP.Is4():
		return fmt.Errorf("dataplane: VIP %v is not IPv4", c.VIP)
	case len(c.ClusterMAC) != 6:
		return fmt.Errorf("dataplane: cluster MAC %v is not 6 bytes", c.ClusterMAC)
	case len(c.NodeMAC) != 6:
		return fmt.Errorf("dataplane: node MAC %v is not 6 bytes", c.NodeMAC)
	case c.MaxFlows == 0 || c.MaxHalfOpen == 0 || c.MaxHalfOpen > c.MaxFlows:
		return fmt.Errorf("dataplane: max flows %d / half-open %d out of range", c.MaxFlows, c.MaxHalfOpen)
	case c.HalfOpen <= 0 || c.Idle <= 0 || c.Closing <= 0:
		return fmt.Errorf("dataplane: timers must be positive")
	case len(c.Ports) == 0:
		return fmt.Errorf("dataplane: no served port: give at least one")
	}
	for _, p := range c.Ports {
		if p == 0 {
			return fmt.Errorf("dataplane: port 0 cannot be served")
		}
	}
	return nil
}

// Classifier is the per-packet decision procedure, implemented twice: in C
// (the workers' code, CClassifier) and in Go (Reference). Frames are
// rewritten in place; a frame may shrink, so the classifier returns the new
// lengths.
type Classifier interface {
	// ClassifyRX decides frames from the NIC.
	ClassifyRX(frames [][]byte, nowMS uint32) ([]Verdict, []int)
	// ClassifyTap decides frames from this node's kernel.
	ClassifyTap(frames [][]byte, nowMS uint32) ([]Verdict, []int)
	// SetOwnership publishes a new ownership table.
	SetOwnership(o *Ownership)
	// Sweep removes every expired flow.
	Sweep(nowMS uint32) int
	// FlowState looks up a flow by its client-side 4-tuple.
	FlowState(src, dst netip.Addr, sport, dport uint16, nowMS uint32) State
	Counters() Counters
	Flows() FlowCounts
	Close()
}
