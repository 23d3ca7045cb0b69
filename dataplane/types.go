package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"time"
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

// Counters mirror struct sdp_counters field for field. Every field is a
// count of frames except Expired (flows).
type Counters struct {
	RX                     uint64 `json:"rx"`
	TX                     uint64 `json:"tx"`
	ToKernel               uint64 `json:"to_kernel"`
	FromKernel             uint64 `json:"from_kernel"`
	ForeignDropped         uint64 `json:"foreign_dropped"`
	MalformedDropped       uint64 `json:"malformed_dropped"`
	SynAccepted            uint64 `json:"syn_accepted"`
	SynNotOurs             uint64 `json:"syn_not_ours"`
	OverlapWithdrawn       uint64 `json:"overlap_withdrawn"`
	ARPReplied             uint64 `json:"arp_replied"`
	KernelARPDropped       uint64 `json:"kernel_arp_dropped"`
	KernelWithdrawnDropped uint64 `json:"kernel_withdrawn_dropped"`
	TableFullDropped       uint64 `json:"table_full_dropped"`
	HalfOpenDropped        uint64 `json:"half_open_dropped"`
	OtherDropped           uint64 `json:"other_dropped"`
	TXFailed               uint64 `json:"tx_failed"`
	Expired                uint64 `json:"expired"`
	FastDropped            uint64 `json:"fast_dropped"`
	SynPortDropped         uint64 `json:"syn_port_dropped"`
	RSTIgnored             uint64 `json:"rst_ignored"`
	StrayDropped           uint64 `json:"stray_dropped"`
	BadChecksumDropped     uint64 `json:"bad_checksum_dropped"`
	ICMPToKernel           uint64 `json:"icmp_to_kernel"`
	ICMPDropped            uint64 `json:"icmp_dropped"`
}

// Add sums counters, for totals across workers.
func (c *Counters) Add(o Counters) {
	c.RX += o.RX
	c.TX += o.TX
	c.ToKernel += o.ToKernel
	c.FromKernel += o.FromKernel
	c.ForeignDropped += o.ForeignDropped
	c.MalformedDropped += o.MalformedDropped
	c.SynAccepted += o.SynAccepted
	c.SynNotOurs += o.SynNotOurs
	c.OverlapWithdrawn += o.OverlapWithdrawn
	c.ARPReplied += o.ARPReplied
	c.KernelARPDropped += o.KernelARPDropped
	c.KernelWithdrawnDropped += o.KernelWithdrawnDropped
	c.TableFullDropped += o.TableFullDropped
	c.HalfOpenDropped += o.HalfOpenDropped
	c.OtherDropped += o.OtherDropped
	c.TXFailed += o.TXFailed
	c.Expired += o.Expired
	c.FastDropped += o.FastDropped
	c.SynPortDropped += o.SynPortDropped
	c.RSTIgnored += o.RSTIgnored
	c.StrayDropped += o.StrayDropped
	c.BadChecksumDropped += o.BadChecksumDropped
	c.ICMPToKernel += o.ICMPToKernel
	c.ICMPDropped += o.ICMPDropped
}

// FlowCounts is the number of flows in each state.
type FlowCounts struct {
	SynRcvd     uint64 `json:"syn_rcvd"`
	Established uint64 `json:"established"`
	Closing     uint64 `json:"closing"`
	Withdrawn   uint64 `json:"withdrawn"`
}

// Add sums flow counts across workers.
func (f *FlowCounts) Add(o FlowCounts) {
	f.SynRcvd += o.SynRcvd
	f.Established += o.Established
	f.Closing += o.Closing
	f.Withdrawn += o.Withdrawn
}

// Ownership is the published form of the range table for one node: one bit
// per bucket, set when the node accepts new connections in that bucket.
type Ownership [65536 / 64]uint64

// Set marks bucket b as owned.
func (o *Ownership) Set(b uint16) { o[b>>6] |= 1 << (b & 63) }

// Has reports whether bucket b is owned.
func (o *Ownership) Has(b uint16) bool { return o[b>>6]>>(b&63)&1 == 1 }

// Count is the number of owned buckets.
func (o *Ownership) Count() int {
	n := 0
	for _, w := range o {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

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
