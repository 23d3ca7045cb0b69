package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/health"
	"github.com/shoal-lb/shoal/control/ranges"
)

// Config is one node's configuration file. Every field is named in errors by
// its YAML path, so an operator can find the line to fix.
type Config struct {
	// NodeID names this node in the cluster (letters, digits, '-', '_').
	NodeID  string        `yaml:"node_id"`
	Cluster ClusterConfig `yaml:"cluster"`
	// Interface is the NIC the data plane drives and the tap it feeds.
	Interface InterfaceConfig `yaml:"interface"`
	DPDK      DPDKConfig      `yaml:"dpdk"`
	Dataplane DataplaneConfig `yaml:"dataplane"`
	HTTP      HTTPConfig      `yaml:"http"`
	Handoff   HandoffConfig   `yaml:"handoff"`
	Content   ContentConfig   `yaml:"content"`
	Admin     AdminConfig     `yaml:"admin"`
	// Gossip, when it has a key, replaces cluster.members: members and
	// their availability are learnt from the peers.
	Gossip   GossipConfig   `yaml:"gossip"`
	Capacity CapacityConfig `yaml:"capacity"`
	Leave    LeaveConfig    `yaml:"leave"`
	// Groups are the cluster-wide group definitions (identical on every
	// node); MemberOf names the groups this node serves.
	Groups   []groups.Group `yaml:"groups"`
	MemberOf []string       `yaml:"member_of"`
	Health   HealthConfig   `yaml:"health"`
}

// HealthConfig: checks of the node's own servers and the slow start that
// follows a join, a restart or a recovery.
type HealthConfig struct {
	Checks    []health.Check  `yaml:"checks"`
	SlowStart SlowStartConfig `yaml:"slow_start"`
}

// SlowStartConfig ramps a node's weight from InitialFraction to full over
// WindowSec, in capacity.step steps. WindowSec 0 turns it off.
type SlowStartConfig struct {
	WindowSec       *int    `yaml:"window_sec"`
	InitialFraction float64 `yaml:"initial_fraction"`
}

// SlowStartWindow is the configured window (default 30 s).
func (c *Config) SlowStartWindow() time.Duration {
	if c.Health.SlowStart.WindowSec == nil {
		return 30 * time.Second
	}
	return time.Duration(*c.Health.SlowStart.WindowSec) * time.Second
}

// GossipConfig configures membership (hashicorp/memberlist over the node
// address).
type GossipConfig struct {
	// Port is the gossip port on the node address (UDP and TCP).
	Port int `yaml:"port"`
	// Seeds are host:port of peers to join; this node's own is skipped.
	Seeds []string `yaml:"seeds"`
	// Key is the cluster key in hex or base64: 16, 24 or 32 bytes
	// (AES-GCM). KeyFile reads it from a file instead.
	Key     string `yaml:"key"`
	KeyFile string `yaml:"key_file"`
}

// Enabled reports whether the node learns its members by gossip.
func (g GossipConfig) Enabled() bool { return g.Key != "" || g.KeyFile != "" }

// CapacityConfig sets the capacity agent (see control/capacity).
type CapacityConfig struct {
	// Weight is this node's configured capacity (gossip mode).
	Weight *float64 `yaml:"weight"`
	// LoadAware makes availability follow active connections and CPU.
	LoadAware        bool    `yaml:"load_aware"`
	MaxConnections   int     `yaml:"max_connections"`
	Alpha            float64 `yaml:"alpha"`
	Step             float64 `yaml:"step"`
	Hysteresis       int     `yaml:"hysteresis"`
	SampleIntervalMS int     `yaml:"sample_interval_ms"`
}

// LeaveConfig bounds a graceful leave (SIGTERM in gossip mode).
type LeaveConfig struct {
	// AgreeTimeoutMS bounds the wait for every peer to run the table
	// without this node.
	AgreeTimeoutMS int `yaml:"agree_timeout_ms"`
	// DrainTimeoutSec bounds the wait for this node's flows to end.
	DrainTimeoutSec int `yaml:"drain_timeout_sec"`
}

// ClusterConfig is what every node of one cluster must agree on.
type ClusterConfig struct {
	// VIP is the virtual IPv4 address every node shares.
	VIP string `yaml:"vip"`
	// MAC is the cluster MAC answered for the VIP; a multicast MAC makes
	// switches flood frames for the VIP to every node.
	MAC string `yaml:"mac"`
	// Seed seeds the connection-value hash (CRC32C); all nodes use the same.
	Seed uint32 `yaml:"seed"`
	// Members is the static member list with configured capacities. The
	// range table is built from it until gossip replaces it.
	Members []MemberConfig `yaml:"members"`
	// TableAlgorithmMax is the newest range-table algorithm this node
	// offers; 0 (the default) means the newest it can build. The cluster
	// builds with the newest version every member offers, so setting 1 on
	// every node before an upgrade, and removing it once all run the new
	// binary, is a rolling upgrade with no disagreement (docs/protocol.md).
	TableAlgorithmMax int `yaml:"table_algorithm_max"`
}

// MemberConfig is one member's identity and configured capacity.
type MemberConfig struct {
	ID     string   `yaml:"id"`
	Weight float64  `yaml:"weight"`
	Groups []string `yaml:"groups"`
	// Address is the member's node address (an IP), which handoff and
	// relay use in static mode; gossip mode learns it from gossip.
	Address string `yaml:"address"`
}

// InterfaceConfig names the data-plane devices.
type InterfaceConfig struct {
	// Device is DPDK devargs: a PCI address on bare metal
	// ("0000:03:00.0") or a virtual device ("net_af_packet0,iface=eth0").
	Device string `yaml:"device"`
	// Tap is the name of the kernel interface that carries accepted flows.
	Tap string `yaml:"tap"`
	// Address is the node's own address on the tap, in CIDR form; it must
	// share a subnet with the VIP.
	Address string `yaml:"address"`
	// MAC is the MAC for the tap and the node's own address. Empty means
	// the NIC's MAC.
	MAC string `yaml:"mac"`
}

// DPDKConfig holds EAL settings.
type DPDKConfig struct {
	// Lcores is the EAL --lcores value; it must name at least two lcores
	// (the control thread and one worker).
	Lcores string `yaml:"lcores"`
	// MemoryMB is the EAL memory in MiB.
	MemoryMB int `yaml:"memory_mb"`
	// Hugepages is "auto" (use them if reserved, else fall back to
	// --no-huge with a warning), "on" (fail without) or "off".
	Hugepages string `yaml:"hugepages"`
	// Mbufs is the packet pool size.
	Mbufs int `yaml:"mbufs"`
	// ExtraArgs are passed to the EAL verbatim.
	ExtraArgs []string `yaml:"extra_args"`
}

// DataplaneConfig sizes the flow table and sets its timers.
type DataplaneConfig struct {
	// MaxFlows bounds the flow table; a full table drops new SYNs.
	MaxFlows int `yaml:"max_flows"`
	// MaxHalfOpen bounds SYN_RCVD entries so a SYN flood cannot fill the
	// table.
	MaxHalfOpen int `yaml:"max_half_open"`
	// HalfOpenTimeoutSec, IdleTimeoutSec, ClosingTimeoutSec are expiries.
	HalfOpenTimeoutSec int `yaml:"half_open_timeout_sec"`
	IdleTimeoutSec     int `yaml:"idle_timeout_sec"`
	ClosingTimeoutSec  int `yaml:"closing_timeout_sec"`
	// IdleSleepMaxUS caps the worker's sleep when no packet arrives.
	IdleSleepMaxUS int `yaml:"idle_sleep_max_us"`
	// Ports are the VIP ports the cluster serves; SYNs to any other port
	// are dropped and counted (syn_port_dropped).
	Ports []int `yaml:"ports"`
	// ExtraBuckets are bucket ranges ("0-99,512") this node accepts in
	// addition to its table share. It exists to provoke transitional
	// overlaps in tests and drills; leave it empty in production.
	ExtraBuckets string `yaml:"extra_buckets"`
	// ReplyPath is how replies leave the node's kernel: "kernel" sends data
	// segments through the NIC's own kernel netdev (af_packet, af_xdp,
	// bifurcated drivers), "tap" sends every reply through the tap and the
	// worker (any device, vfio-pci included), "auto" (the default) is kernel
	// where the device allows it. See docs/replypath.md.
	ReplyPath string `yaml:"reply_path"`
	// Prefilter is the in-kernel prefilter on the NIC's af_packet socket
	// (package prefilter, docs/dataplane.md): an eBPF socket filter that
	// drops other nodes' segments before they are copied to the worker
	// and wake it. "auto" (the default) and "on" load it where the device
	// is net_af_packet; "off" never does. A kernel or a process that
	// cannot load it is logged and the node runs without it.
	Prefilter string `yaml:"prefilter"`
}

// ServedPorts is Ports as the data plane takes them (validated first).
func (d DataplaneConfig) ServedPorts() []uint16 {
	out := make([]uint16, 0, len(d.Ports))
	for _, p := range d.Ports {
		out = append(out, uint16(p))
	}
	return out
}

// HTTPConfig configures the node's minimal web server.
type HTTPConfig struct {
	// Listen is host:port; the default serves port 80 on every address of
	// the node (the VIP and the node address).
	Listen string `yaml:"listen"`
	// Content is the directory served.
	Content string `yaml:"content"`
	// Upstreams maps a group this node serves to a local upstream that
	// serves the group's requests instead of Content: "host:port" (TCP)
	// or "unix:/path" (a unix socket), reverse-proxied with keep-alive.
	Upstreams map[string]string `yaml:"upstreams"`
	// SessionCookie names the cookie of persistent sessions: when a local
	// upstream sets it, the node prefixes its value with "<node_id>~", and
	// a later request carrying it goes to that node while it is healthy.
	// Empty: no cookie sessions.
	SessionCookie string `yaml:"session_cookie"`
	// TLS, when Cert and Key are set, serves HTTPS on TLS.Listen.
	TLS TLSConfig `yaml:"tls"`
}

// TLSConfig configures the HTTPS front server.
type TLSConfig struct {
	// Listen is host:port; default ":443".
	Listen string `yaml:"listen"`
	// Cert and Key are PEM files (the certificate chain and its key).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// TicketRotationSec is how long one session ticket key encrypts new
	// tickets; keys are derived from the cluster key and the period, so
	// every node holds the same keys. Default 3600.
	TicketRotationSec int `yaml:"ticket_rotation_sec"`
}

// Enabled says whether HTTPS is served.
func (t TLSConfig) Enabled() bool { return t.Cert != "" || t.Key != "" }

// ContentConfig configures the content distribution system: the node's
// storage area of published versions and the port peers fetch them from.
type ContentConfig struct {
	// Store is the storage area's directory. Default
	// /var/lib/shoal/<node_id>/store.
	Store string `yaml:"store"`
	// Port serves stored objects to cluster members on the node address.
	// Default 7949.
	Port int `yaml:"port"`
}

// HandoffConfig configures the reading module: how the front server reads
// a request head, and the channels between node addresses that move a
// connection (handoff) or relay it (fallback).
type HandoffConfig struct {
	// Port is the handoff channel on the node address. Default 7947.
	Port int `yaml:"port"`
	// RelayPort serves relayed connections and forwarded requests on the
	// node address. Default 7948.
	RelayPort int `yaml:"relay_port"`
	// FirstBytesMS bounds the wait for a connection's first byte, HeadMS
	// the wait for its whole request head or ClientHello (408 after). A
	// head is at most 16 KiB (431 beyond).
	// Defaults 5000 and 10000.
	FirstBytesMS int `yaml:"first_bytes_ms"`
	HeadMS       int `yaml:"head_ms"`
	// TimeoutMS bounds one handoff, from freeze to the destination's
	// answer. Default 1000.
	TimeoutMS int `yaml:"timeout_ms"`
	// Disabled serves every connection where it lands (relay for content
	// this node does not hold) instead of moving it.
	Disabled bool `yaml:"disabled"`
}

// AdminConfig configures the admin API.
type AdminConfig struct {
	// Socket is the unix socket path of the admin API.
	Socket string `yaml:"socket"`
	// Listen optionally serves the admin API over TCP too (host:port);
	// every request there must carry "Authorization: Bearer <token>" with
	// the token read from TokenFile.
	Listen    string `yaml:"listen"`
	TokenFile string `yaml:"token_file"`
}

// AdminToken reads the bearer token for the TCP admin API.
func (c *Config) AdminToken() (string, error) {
	b, err := os.ReadFile(c.Admin.TokenFile)
	if err != nil {
		return "", fmt.Errorf("admin.token_file: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("admin.token_file: the token has %d characters; use at least 16", len(tok))
	}
	return tok, nil
}

var nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Defaults fills unset fields with the values an operator would expect.
func (c *Config) Defaults() {
	if c.Cluster.MAC == "" {
		c.Cluster.MAC = "01:00:5e:75:c9:3e"
	}
	if c.Interface.Tap == "" {
		c.Interface.Tap = "shoal0"
	}
	if c.DPDK.Lcores == "" {
		c.DPDK.Lcores = "0@(0-1),1@(0-1)"
	}
	if c.DPDK.MemoryMB == 0 {
		c.DPDK.MemoryMB = 128
	}
	if c.DPDK.Hugepages == "" {
		c.DPDK.Hugepages = "auto"
	}
	if c.DPDK.Mbufs == 0 {
		c.DPDK.Mbufs = 8191
	}
	d := &c.Dataplane
	if d.MaxFlows == 0 {
		d.MaxFlows = 1 << 20
	}
	if d.MaxHalfOpen == 0 {
		d.MaxHalfOpen = d.MaxFlows / 4
	}
	if d.HalfOpenTimeoutSec == 0 {
		d.HalfOpenTimeoutSec = 10
	}
	if d.IdleTimeoutSec == 0 {
		d.IdleTimeoutSec = 900
	}
	if d.ClosingTimeoutSec == 0 {
		d.ClosingTimeoutSec = 30
	}
	if d.IdleSleepMaxUS == 0 {
		d.IdleSleepMaxUS = 500
	}
	if d.ReplyPath == "" {
		d.ReplyPath = "auto"
	}
	if d.Prefilter == "" {
		d.Prefilter = "auto"
	}
	if d.Ports == nil {
		d.Ports = []int{80, 443}
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = ":80"
	}
	if c.Admin.Socket == "" {
		c.Admin.Socket = "/run/shoal/" + c.NodeID + ".sock"
	}
	if c.HTTP.TLS.Listen == "" {
		c.HTTP.TLS.Listen = ":443"
	}
	if c.HTTP.TLS.TicketRotationSec == 0 {
		c.HTTP.TLS.TicketRotationSec = 3600
	}
	if c.Content.Store == "" {
		c.Content.Store = "/var/lib/shoal/" + c.NodeID + "/store"
	}
	if c.Content.Port == 0 {
		c.Content.Port = 7949
	}
	h := &c.Handoff
	if h.Port == 0 {
		h.Port = 7947
	}
	if h.RelayPort == 0 {
		h.RelayPort = 7948
	}
	if h.FirstBytesMS == 0 {
		h.FirstBytesMS = 5000
	}
	if h.HeadMS == 0 {
		h.HeadMS = 10000
	}
	if h.TimeoutMS == 0 {
		h.TimeoutMS = 1000
	}
	if c.Gossip.Port == 0 {
		c.Gossip.Port = 7946
	}
	cp := &c.Capacity
	if cp.MaxConnections == 0 {
		cp.MaxConnections = 10000
	}
	if cp.Alpha == 0 {
		cp.Alpha = 0.3
	}
	if cp.Step == 0 {
		cp.Step = 0.1
	}
	if cp.Hysteresis == 0 {
		cp.Hysteresis = 2
	}
	if cp.SampleIntervalMS == 0 {
		cp.SampleIntervalMS = 500
	}
	for i := range c.Health.Checks {
		c.Health.Checks[i].Defaults()
	}
	if c.Health.SlowStart.InitialFraction == 0 {
		c.Health.SlowStart.InitialFraction = 0.1
	}
	if c.Leave.AgreeTimeoutMS == 0 {
		c.Leave.AgreeTimeoutMS = 3000
	}
	if c.Leave.DrainTimeoutSec == 0 {
		c.Leave.DrainTimeoutSec = 30
	}
}

// GossipKey decodes the cluster key (hex or base64) from key or key_file.
func (c *Config) GossipKey() ([]byte, error) {
	raw := c.Gossip.Key
	if c.Gossip.KeyFile != "" {
		b, err := os.ReadFile(c.Gossip.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("gossip.key_file: %v", err)
		}
		raw = string(b)
	}
	raw = strings.TrimSpace(raw)
	var key []byte
	if b, err := hex.DecodeString(raw); err == nil {
		key = b
	} else if b, err := base64.StdEncoding.DecodeString(raw); err == nil {
		key = b
	} else {
		return nil, fmt.Errorf("gossip.key: neither hex nor base64")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("gossip.key: %d bytes; want 16, 24 or 32 (AES)", len(key))
}

// SelfWeight is this node's configured capacity: capacity.weight in
// gossip mode, its cluster.members entry otherwise.
func (c *Config) SelfWeight() float64 {
	if c.Capacity.Weight != nil {
		return *c.Capacity.Weight
	}
	for _, m := range c.Cluster.Members {
		if m.ID == c.NodeID {
			return m.Weight
		}
	}
	return 1
}

// Validate checks every field and returns all problems at once, each naming
// its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if !nodeIDPattern.MatchString(c.NodeID) {
		bad("node_id", "%q must be 1-32 letters, digits, '-' or '_'", c.NodeID)
	}
	vip, err := netip.ParseAddr(c.Cluster.VIP)
	if err != nil || !vip.Is4() {
		bad("cluster.vip", "%q is not an IPv4 address", c.Cluster.VIP)
	}
	if a := c.Cluster.TableAlgorithmMax; a < 0 || a > ranges.AlgoLatest {
		bad("cluster.table_algorithm_max", "%d must be between 1 and %d (0: the newest)", a, ranges.AlgoLatest)
	}
	if _, err := net.ParseMAC(c.Cluster.MAC); err != nil {
		bad("cluster.mac", "%q is not a MAC address", c.Cluster.MAC)
	}
	gossip := c.Gossip.Enabled()
	if gossip {
		if c.Gossip.Key != "" && c.Gossip.KeyFile != "" {
			bad("gossip.key", "give key or key_file, not both")
		} else if _, err := c.GossipKey(); err != nil {
			errs = append(errs, err)
		}
		if len(c.Cluster.Members) > 0 {
			bad("cluster.members", "static members conflict with gossip (gossip.key is set): remove one")
		}
		if c.Gossip.Port < 1 || c.Gossip.Port > 65535 {
			bad("gossip.port", "%d is not a port", c.Gossip.Port)
		}
		for i, s := range c.Gossip.Seeds {
			if _, p, err := net.SplitHostPort(s); err != nil || p == "" {
				bad(fmt.Sprintf("gossip.seeds[%d]", i), "%q is not host:port", s)
			}
		}
		if w := c.SelfWeight(); !(w >= 0 && w <= 1e6) {
			bad("capacity.weight", "%v must be between 0 and 1000000", w)
		}
	} else if len(c.Cluster.Members) == 0 {
		bad("cluster.members", "no members: list at least this node, or configure gossip")
	}
	for i, ch := range c.Health.Checks {
		if err := ch.Validate(fmt.Sprintf("health.checks[%d]", i)); err != nil {
			errs = append(errs, err)
		}
	}
	if w := c.SlowStartWindow(); w < 0 || w > 3600*time.Second {
		bad("health.slow_start.window_sec", "%v must be between 0 and 3600", w.Seconds())
	}
	if f := c.Health.SlowStart.InitialFraction; !(f > 0 && f <= 1) {
		bad("health.slow_start.initial_fraction", "%v must be in (0, 1]", f)
	}
	if err := groups.Validate(c.Groups); err != nil {
		errs = append(errs, err)
	}
	known := map[string]bool{}
	for _, g := range c.Groups {
		known[g.Name] = true
	}
	for i, name := range c.MemberOf {
		if !known[name] {
			bad(fmt.Sprintf("member_of[%d]", i), "%q is not a defined group", name)
		}
	}
	for i, m := range c.Cluster.Members {
		for j, name := range m.Groups {
			if !known[name] {
				bad(fmt.Sprintf("cluster.members[%d].groups[%d]", i, j), "%q is not a defined group", name)
			}
		}
	}
	cp := c.Capacity
	if cp.MaxConnections < 1 {
		bad("capacity.max_connections", "%d must be at least 1", cp.MaxConnections)
	}
	if !(cp.Alpha > 0 && cp.Alpha <= 1) {
		bad("capacity.alpha", "%v must be in (0, 1]", cp.Alpha)
	}
	if !(cp.Step > 0 && cp.Step <= 1) {
		bad("capacity.step", "%v must be in (0, 1]", cp.Step)
	}
	if cp.Hysteresis < 1 || cp.Hysteresis > 100 {
		bad("capacity.hysteresis", "%d must be between 1 and 100", cp.Hysteresis)
	}
	if cp.SampleIntervalMS < 50 || cp.SampleIntervalMS > 60000 {
		bad("capacity.sample_interval_ms", "%d must be between 50 and 60000", cp.SampleIntervalMS)
	}
	if c.Leave.AgreeTimeoutMS < 100 || c.Leave.AgreeTimeoutMS > 600000 {
		bad("leave.agree_timeout_ms", "%d must be between 100 and 600000", c.Leave.AgreeTimeoutMS)
	}
	if c.Leave.DrainTimeoutSec < 1 || c.Leave.DrainTimeoutSec > 86400 {
		bad("leave.drain_timeout_sec", "%d must be between 1 and 86400", c.Leave.DrainTimeoutSec)
	}
	seen := map[string]bool{}
	self := false
	for i, m := range c.Cluster.Members {
		f := fmt.Sprintf("cluster.members[%d]", i)
		if !nodeIDPattern.MatchString(m.ID) {
			bad(f+".id", "%q must be 1-32 letters, digits, '-' or '_'", m.ID)
		}
		if seen[m.ID] {
			bad(f+".id", "%q is listed twice", m.ID)
		}
		seen[m.ID] = true
		self = self || m.ID == c.NodeID
		if !(m.Weight >= 0 && m.Weight <= 1e6) { // also rejects NaN
			bad(f+".weight", "%v must be between 0 and 1000000", m.Weight)
		}
		if m.Address != "" {
			if a, err := netip.ParseAddr(m.Address); err != nil || !a.Is4() {
				bad(f+".address", "%q is not an IPv4 address", m.Address)
			}
		}
	}
	if !gossip && len(c.Cluster.Members) > 0 && !self {
		bad("cluster.members", "node_id %q is not among the members", c.NodeID)
	}
	if strings.TrimSpace(c.Interface.Device) == "" {
		bad("interface.device", "empty: give a PCI address or a DPDK vdev string")
	}
	if !nodeIDPattern.MatchString(c.Interface.Tap) || len(c.Interface.Tap) > 15 {
		bad("interface.tap", "%q is not a valid interface name", c.Interface.Tap)
	}
	prefix, err := netip.ParsePrefix(c.Interface.Address)
	if err != nil || !prefix.Addr().Is4() {
		bad("interface.address", "%q is not an IPv4 address in CIDR form (198.18.0.101/24)", c.Interface.Address)
	} else if vip.IsValid() && !prefix.Masked().Contains(vip) {
		bad("interface.address", "%s does not contain the VIP %s: the VIP must fit the interface's subnet", prefix.Masked(), vip)
	} else if vip.IsValid() && prefix.Addr() == vip {
		bad("interface.address", "%s is the VIP; the node needs an address of its own", prefix.Addr())
	}
	if c.Interface.MAC != "" {
		if hw, err := net.ParseMAC(c.Interface.MAC); err != nil || len(hw) != 6 || hw[0]&1 != 0 {
			bad("interface.mac", "%q is not a unicast MAC address", c.Interface.MAC)
		}
	}
	if c.DPDK.MemoryMB < 16 || c.DPDK.MemoryMB > 1<<20 {
		bad("dpdk.memory_mb", "%d must be between 16 and 1048576", c.DPDK.MemoryMB)
	}
	switch c.DPDK.Hugepages {
	case "auto", "on", "off":
	default:
		bad("dpdk.hugepages", "%q must be auto, on or off", c.DPDK.Hugepages)
	}
	if c.DPDK.Mbufs < 1023 || c.DPDK.Mbufs > 1<<24 {
		bad("dpdk.mbufs", "%d must be between 1023 and 16777216", c.DPDK.Mbufs)
	}
	d := c.Dataplane
	if d.MaxFlows < 1024 || d.MaxFlows > 1<<26 {
		bad("dataplane.max_flows", "%d must be between 1024 and 67108864", d.MaxFlows)
	}
	if d.MaxHalfOpen < 1 || d.MaxHalfOpen > d.MaxFlows {
		bad("dataplane.max_half_open", "%d must be between 1 and max_flows (%d)", d.MaxHalfOpen, d.MaxFlows)
	}
	for _, t := range []struct {
		f      string
		v, max int
	}{
		{"dataplane.half_open_timeout_sec", d.HalfOpenTimeoutSec, 300},
		{"dataplane.idle_timeout_sec", d.IdleTimeoutSec, 86400},
		{"dataplane.closing_timeout_sec", d.ClosingTimeoutSec, 3600},
		{"dataplane.idle_sleep_max_us", d.IdleSleepMaxUS, 100000},
	} {
		if t.v < 1 || t.v > t.max {
			bad(t.f, "%d must be between 1 and %d", t.v, t.max)
		}
	}
	if len(d.Ports) == 0 {
		bad("dataplane.ports", "empty: list the VIP ports the cluster serves (default [80, 443])")
	}
	seenPort := map[int]bool{}
	for i, p := range d.Ports {
		if p < 1 || p > 65535 {
			bad(fmt.Sprintf("dataplane.ports[%d]", i), "%d is not a port (1-65535)", p)
		} else if seenPort[p] {
			bad(fmt.Sprintf("dataplane.ports[%d]", i), "%d is listed twice", p)
		}
		seenPort[p] = true
	}
	if _, err := ParseBuckets(d.ExtraBuckets); err != nil {
		bad("dataplane.extra_buckets", "%v", err)
	}
	switch d.ReplyPath {
	case "auto", "kernel", "tap":
	default:
		bad("dataplane.reply_path", "%q must be auto, kernel or tap", d.ReplyPath)
	}
	switch d.Prefilter {
	case "auto", "on", "off":
	default:
		bad("dataplane.prefilter", "%q must be auto, on or off", d.Prefilter)
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		bad("http.listen", "%q is not host:port", c.HTTP.Listen)
	}
	if c.HTTP.Content != "" {
		if st, err := os.Stat(c.HTTP.Content); err != nil || !st.IsDir() {
			bad("http.content", "%q is not a directory", c.HTTP.Content)
		}
	}
	c.validateServing(bad)
	if c.Admin.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			bad("admin.listen", "%q is not host:port", c.Admin.Listen)
		}
		if c.Admin.TokenFile == "" {
			bad("admin.token_file", "required with admin.listen: the TCP admin API needs a bearer token")
		} else if _, err := c.AdminToken(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Admin.Socket == "" || !strings.HasPrefix(c.Admin.Socket, "/") {
		bad("admin.socket", "%q must be an absolute path", c.Admin.Socket)
	}
	return errors.Join(errs...)
}

// validateServing checks the http and handoff sections.
func (c *Config) validateServing(bad func(field, format string, a ...any)) {
	known := map[string]bool{}
	for _, g := range c.Groups {
		known[g.Name] = true
	}
	member := map[string]bool{}
	for _, name := range c.MemberOf {
		member[name] = true
	}
	for _, m := range c.Cluster.Members {
		if m.ID == c.NodeID {
			for _, name := range m.Groups {
				member[name] = true
			}
		}
	}
	names := make([]string, 0, len(c.HTTP.Upstreams))
	for g := range c.HTTP.Upstreams {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		f := "http.upstreams." + g
		switch {
		case !known[g]:
			bad(f, "%q is not a defined group", g)
		case !member[g]:
			bad(f, "this node is not a member of group %q (member_of)", g)
		}
		up := c.HTTP.Upstreams[g]
		if path, ok := strings.CutPrefix(up, "unix:"); ok {
			if !strings.HasPrefix(path, "/") {
				bad(f, "%q: a unix socket path must be absolute", up)
			}
		} else if _, p, err := net.SplitHostPort(up); err != nil || p == "" {
			bad(f, "%q is neither host:port nor unix:/path", up)
		}
	}
	if ck := c.HTTP.SessionCookie; ck != "" && !cookieNamePattern.MatchString(ck) {
		bad("http.session_cookie", "%q is not a cookie name (letters, digits and !#$%%&'*+-.^_`|~)", ck)
	}
	t := c.HTTP.TLS
	if t.Enabled() {
		if t.Cert == "" || t.Key == "" {
			bad("http.tls", "give both cert and key")
		}
		for f, file := range map[string]string{"http.tls.cert": t.Cert, "http.tls.key": t.Key} {
			if file == "" {
				continue
			}
			if _, err := os.Stat(file); err != nil {
				bad(f, "%v", err)
			}
		}
		if _, _, err := net.SplitHostPort(t.Listen); err != nil {
			bad("http.tls.listen", "%q is not host:port", t.Listen)
		}
		if t.TicketRotationSec < 60 || t.TicketRotationSec > 7*86400 {
			bad("http.tls.ticket_rotation_sec", "%d must be between 60 and 604800", t.TicketRotationSec)
		}
	}
	h := c.Handoff
	for f, p := range map[string]int{"handoff.port": h.Port, "handoff.relay_port": h.RelayPort} {
		if p < 1 || p > 65535 {
			bad(f, "%d is not a port", p)
		}
	}
	if h.Port == h.RelayPort {
		bad("handoff.relay_port", "%d is also handoff.port", h.RelayPort)
	}
	if p := c.Content.Port; p < 1 || p > 65535 {
		bad("content.port", "%d is not a port", p)
	} else if p == h.Port || p == h.RelayPort || p == c.Gossip.Port {
		bad("content.port", "%d is also used by handoff or gossip", p)
	}
	if !strings.HasPrefix(c.Content.Store, "/") {
		bad("content.store", "%q must be an absolute path", c.Content.Store)
	}
	if h.FirstBytesMS < 10 || h.FirstBytesMS > 600000 {
		bad("handoff.first_bytes_ms", "%d must be between 10 and 600000", h.FirstBytesMS)
	}
	if h.HeadMS < h.FirstBytesMS || h.HeadMS > 600000 {
		bad("handoff.head_ms", "%d must be between first_bytes_ms (%d) and 600000", h.HeadMS, h.FirstBytesMS)
	}
	if h.TimeoutMS < 10 || h.TimeoutMS > 60000 {
		bad("handoff.timeout_ms", "%d must be between 10 and 60000", h.TimeoutMS)
	}
}

var cookieNamePattern = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")

// HandoffKey is the key the handoff channel and the session ticket keys
// derive from: the cluster key. ok is false without one (static members and
// no gossip.key): then connections are relayed, never moved.
func (c *Config) HandoffKey() (key []byte, ok bool) {
	if c.Gossip.Key == "" && c.Gossip.KeyFile == "" {
		return nil, false
	}
	k, err := c.GossipKey()
	return k, err == nil
}

// ParseBuckets parses "0-99,512" into bucket numbers (0..65535).
func ParseBuckets(s string) ([]int, error) {
	var out []int
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > 65535 {
			return nil, fmt.Errorf("%q is not a bucket (0-65535)", part)
		}
		b := a
		if isRange {
			b, err = strconv.Atoi(hi)
			if err != nil || b < a || b > 65535 {
				return nil, fmt.Errorf("%q is not a bucket range lo-hi within 0-65535", part)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}

// Error is a config that cannot be used: every problem found, each naming
// its field (or, for a file that is not YAML, the line).
type Error struct {
	Name     string   // the file
	Problems []string // one line each
}

// Error is one line: the file and every problem, separated by "; ".
func (e *Error) Error() string {
	return fmt.Sprintf("config %s: %s", e.Name, strings.Join(e.Problems, "; "))
}

// Load reads, defaults and validates a config file. Unknown fields are
// errors.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(raw, path)
}

// Parse is Load on bytes; name labels errors. A config that cannot be used
// returns an *Error listing every problem.
func Parse(raw []byte, name string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, &Error{Name: name, Problems: te.Errors}
		}
		return nil, &Error{Name: name, Problems: []string{strings.ReplaceAll(err.Error(), "\n", " ")}}
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, &Error{Name: name, Problems: flatten(err)}
	}
	return &c, nil
}

// flatten lists the leaves of joined errors, one problem each.
func flatten(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return strings.Split(err.Error(), "\n")
}
