package gossip

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// DefaultBindPort is the gossip port (TCP and UDP) when Config.BindPort is 0.
const DefaultBindPort = 7946

// EphemeralPort as Config.BindPort lets the kernel choose a free port (tests).
const EphemeralPort = -1

// LAN tuning defaults. They target a crash being detected and announced
// well under a second on a LAN of up to ten nodes:
//
//   - a peer is probed every ProbeInterval (200 ms); with n probers a crashed
//     node is probed by someone within about one interval;
//   - a direct UDP probe waits ProbeTimeout (100 ms, far above a LAN RTT),
//     then indirect probes and a TCP ping get the rest of the interval;
//   - SuspicionMult 2 makes the suspicion timeout 2 × ProbeInterval = 400 ms
//     (scaled by log10(n) above ten nodes) and, since memberlist asks for
//     SuspicionMult−2 independent confirmations, needs none: one failed
//     probe round (direct, indirect and TCP) suffices. A live node refutes
//     the suspicion within a gossip round or two (GossipInterval 50 ms),
//     so false positives need a pause of several hundred milliseconds;
//   - the dead message then spreads by gossip every 50 ms to GossipNodes.
//
// Expected detection is ProbeInterval/2 + ProbeInterval + 2×ProbeInterval
// + a gossip round ≈ 750 ms; see the crash test for measurements.
const (
	DefaultProbeInterval       = 200 * time.Millisecond
	DefaultProbeTimeout        = 100 * time.Millisecond
	DefaultSuspicionMult       = 2
	DefaultSuspicionMaxMult    = 4
	DefaultGossipInterval      = 50 * time.Millisecond
	DefaultGossipNodes         = 3
	DefaultIndirectChecks      = 3
	DefaultRetransmitMult      = 4 // memberlist's LAN value: at 3, broadcasts missed a node now and then (bench converge, 64 members)
	DefaultPushPullInterval    = 10 * time.Second
	DefaultTCPTimeout          = 2 * time.Second
	DefaultGossipToTheDeadTime = 10 * time.Second
	DefaultDeadNodeReclaimTime = 10 * time.Second
	DefaultUpdateTimeout       = time.Second
	DefaultRejoinInterval      = 5 * time.Second
	DefaultRefusedLogInterval  = 30 * time.Second
)

// Config configures a Gossip. Zero tuning fields take the defaults above.
type Config struct {
	NodeID   string   // unique in the cluster; the memberlist node name
	BindAddr string   // node IP to bind and advertise (required)
	BindPort int      // 0 = DefaultBindPort, EphemeralPort = kernel's choice
	Seeds    []string // host:port of peers to join; this node's own address is skipped

	// Key is the cluster key, 16, 24 or 32 bytes (AES-128/192/256-GCM).
	// Gossip is encrypted and unencrypted messages are refused. A nil Key
	// is an error unless AllowPlaintext is set (tests, never production).
	Key            []byte
	AllowPlaintext bool

	ProbeInterval       time.Duration
	ProbeTimeout        time.Duration
	SuspicionMult       int
	SuspicionMaxMult    int
	GossipInterval      time.Duration
	GossipNodes         int
	IndirectChecks      int
	RetransmitMult      int
	PushPullInterval    time.Duration
	TCPTimeout          time.Duration // join and push/pull dial and I/O timeout
	GossipToTheDeadTime time.Duration
	// DeadNodeReclaimTime lets a node ID that died come back from another
	// address after this long (a replaced machine); before, it is a conflict.
	DeadNodeReclaimTime time.Duration
	// UpdateTimeout bounds how long UpdateMeta waits for the broadcast to
	// leave; on timeout the new meta still spreads by push/pull.
	UpdateTimeout time.Duration
	// RejoinInterval: while this node sees no peer and Seeds is not empty,
	// it retries joining the seeds this often. Negative disables.
	RejoinInterval time.Duration
	// RefusedLogInterval rate-limits the "refused message" and "node ID
	// conflict" lines per remote address.
	RefusedLogInterval time.Duration

	Logger *slog.Logger // nil = slog.Default()

	// State, when set, rides on this gossip: its broadcasts leave with
	// memberlist's gossip, its full state with push/pull, both encrypted
	// like the rest. nil: no application state (the default).
	State StateDelegate
}

// StateDelegate is application state replicated by gossip (the versions
// update table). memberlist calls it from its packet and push/pull loops:
// every method must be quick and must not call back into Gossip.
type StateDelegate interface {
	// LocalState is the full state sent on push/pull (join is true when
	// the exchange is part of a Join).
	LocalState(join bool) []byte
	// MergeRemoteState merges a peer's full state from push/pull.
	MergeRemoteState(buf []byte, join bool)
	// GetBroadcasts returns queued messages to piggyback on gossip, each
	// costing overhead bytes more, within limit bytes in total.
	GetBroadcasts(overhead, limit int) [][]byte
	// NotifyMsg receives one message a peer broadcast. buf is reused
	// after the call: copy what is kept.
	NotifyMsg(buf []byte)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	defInt(&c.BindPort, DefaultBindPort)
	def(&c.ProbeInterval, DefaultProbeInterval)
	def(&c.ProbeTimeout, DefaultProbeTimeout)
	defInt(&c.SuspicionMult, DefaultSuspicionMult)
	defInt(&c.SuspicionMaxMult, DefaultSuspicionMaxMult)
	def(&c.GossipInterval, DefaultGossipInterval)
	defInt(&c.GossipNodes, DefaultGossipNodes)
	defInt(&c.IndirectChecks, DefaultIndirectChecks)
	defInt(&c.RetransmitMult, DefaultRetransmitMult)
	def(&c.PushPullInterval, DefaultPushPullInterval)
	def(&c.TCPTimeout, DefaultTCPTimeout)
	def(&c.GossipToTheDeadTime, DefaultGossipToTheDeadTime)
	def(&c.DeadNodeReclaimTime, DefaultDeadNodeReclaimTime)
	def(&c.UpdateTimeout, DefaultUpdateTimeout)
	def(&c.RejoinInterval, DefaultRejoinInterval)
	def(&c.RefusedLogInterval, DefaultRefusedLogInterval)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.NodeID == "" || len(c.NodeID) > maxField {
		bad("gossip config: NodeID must be 1..%d bytes, got %q", maxField, c.NodeID)
	}
	if c.BindAddr == "" {
		bad("gossip config: BindAddr (the node IP) is required")
	} else if net.ParseIP(c.BindAddr) == nil {
		bad("gossip config: BindAddr %q is not an IP address", c.BindAddr)
	}
	if c.BindPort != EphemeralPort && (c.BindPort < 1 || c.BindPort > 65535) {
		bad("gossip config: BindPort %d outside 1..65535", c.BindPort)
	}
	switch len(c.Key) {
	case 16, 24, 32:
	case 0:
		if !c.AllowPlaintext {
			bad("gossip config: Key is required (16, 24 or 32 bytes); set AllowPlaintext only for tests")
		}
	default:
		bad("gossip config: Key is %d bytes, want 16, 24 or 32", len(c.Key))
	}
	if c.ProbeTimeout >= c.ProbeInterval {
		bad("gossip config: ProbeTimeout %v must be below ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult < 1 || c.GossipNodes < 1 || c.IndirectChecks < 0 || c.RetransmitMult < 1 || c.SuspicionMaxMult < 1 {
		bad("gossip config: SuspicionMult, SuspicionMaxMult, GossipNodes and RetransmitMult must be >= 1")
	}
	return errors.Join(errs...)
}

// memberlistConfig maps Config onto memberlist's; transport, delegates and
// logger are set by Start.
func (c *Config) memberlistConfig() *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.NodeID
	mc.BindAddr = c.BindAddr
	mc.AdvertiseAddr = c.BindAddr
	mc.ProbeInterval = c.ProbeInterval
	mc.ProbeTimeout = c.ProbeTimeout
	mc.SuspicionMult = c.SuspicionMult
	mc.SuspicionMaxTimeoutMult = c.SuspicionMaxMult
	mc.GossipInterval = c.GossipInterval
	mc.GossipNodes = c.GossipNodes
	mc.IndirectChecks = c.IndirectChecks
	mc.RetransmitMult = c.RetransmitMult
	mc.PushPullInterval = c.PushPullInterval
	mc.TCPTimeout = c.TCPTimeout
	mc.GossipToTheDeadTime = c.GossipToTheDeadTime
	mc.DeadNodeReclaimTime = c.DeadNodeReclaimTime
	// No LZW on a LAN: gossip packets are a few hundred bytes, and each
	// compressed one allocated a 72 KB writer, 40 % of everything a lab
	// node allocated under load (pprof allocs, issue 14), which the GC
	// then paid for. Peers still read compressed packets (memberlist
	// decodes both), so mixed versions interoperate.
	mc.EnableCompression = false
	mc.RequireNodeNames = false
	if len(c.Key) > 0 {
		mc.SecretKey = append([]byte(nil), c.Key...)
		mc.GossipVerifyIncoming = true
		mc.GossipVerifyOutgoing = true
	}
	mc.LogOutput = nil
	mc.Logger = log.New(io.Discard, "", 0)
	return mc
}
