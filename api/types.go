package api

import (
	"github.com/shoal-lb/shoal/control/capacity"
	"github.com/shoal-lb/shoal/control/gossip"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/health"
	"github.com/shoal-lb/shoal/dataplane/report"
)

// The wire types of the admin API, version 1. Every field is snake_case in
// JSON; a field is added, never renamed, within a version.

// Paths of the admin API.
const (
	PathStatus = "/v1/status"
	PathStats  = "/v1/stats"
	PathRanges = "/v1/ranges"
	PathFlows  = "/v1/flows"
	PathGroups = "/v1/groups"
	PathHealth = "/v1/health"
	PathDrain  = "/v1/drain"
	PathWeight = "/v1/weight"
	PathServer = "/v1/server"
	// PathHandoffs is the reading module's counters (Handoffs).
	PathHandoffs = "/v1/handoffs"
	// PathContent is the update table as this node sees it (Content);
	// ?path=P for one path.
	PathContent = "/v1/content"
	// PathContentPublish publishes a new version (POST, the content as
	// the body; query path, group, threshold, batch): a Publication.
	PathContentPublish = "/v1/content/publish"
	PathMetrics        = "/metrics"
)

// Flow is one entry of GET /v1/flows.
type Flow = report.Flow

// Status is GET /v1/status.
type Status struct {
	NodeID    string  `json:"node_id"`
	VIP       string  `json:"vip"`
	Address   string  `json:"address"`
	UptimeSec float64 `json:"uptime_sec"`
	Hugepages bool    `json:"hugepages"`
	Epoch     uint64  `json:"epoch"`
	// TableHash is the cluster range table's hash (as GET /v1/ranges
	// reports it). AgreementHash is what the node gossips and compares
	// with its peers: the cluster table's hash, or, when groups are
	// defined, a hash over it and every group table's.
	TableHash     string `json:"table_hash"`
	AgreementHash string `json:"agreement_hash"`
	// TableAlgorithm is the range-table algorithm the table was built
	// with: the newest every member offers (docs/protocol.md).
	TableAlgorithm int            `json:"table_algorithm"`
	OwnedBuckets   int            `json:"owned_buckets"`
	ExtraBuckets   int            `json:"extra_buckets"`
	Members        []MemberStatus `json:"members"`
	// Gossip mode only.
	Gossip      bool            `json:"gossip"`
	Agreement   bool            `json:"agreement"`
	Disagree    []string        `json:"disagreeing,omitempty"`
	TableAge    float64         `json:"table_age_sec"`
	Holding     bool            `json:"holding"` // still accepting buckets given away, until the peers agree
	Capacity    *capacity.State `json:"capacity,omitempty"`
	FailOpen    uint64          `json:"fail_open_builds"`
	GossipStats *gossip.Stats   `json:"gossip_stats,omitempty"`
	ReplyPath   ReplyPathStatus `json:"reply_path"`
	Prefilter   PrefilterStatus `json:"prefilter"`
}

// PrefilterStatus says whether the in-kernel prefilter (an eBPF socket
// filter on the NIC's af_packet socket, docs/dataplane.md) drops other
// nodes' segments before they reach the worker, and why (not).
type PrefilterStatus struct {
	Active bool   `json:"active"`
	Reason string `json:"reason"`
}

// PrefilterStats are the prefilter's drops in GET /v1/stats: frames the
// worker never saw, so they are in none of its counters. Each carries the
// name of the worker counter that would have counted it; a node's whole
// count is the worker's plus this (Whole).
type PrefilterStats struct {
	Active         bool   `json:"active"`
	ForeignDropped uint64 `json:"foreign_dropped"`  // segments other than SYNs (also fast_dropped)
	SynNotOurs     uint64 `json:"syn_not_ours"`     // SYNs in other nodes' buckets
	SynPortDropped uint64 `json:"syn_port_dropped"` // SYNs to a port the cluster does not serve
}

// Whole is the node's frame counters as if the worker had seen every
// frame the prefilter dropped: Total with those drops added to
// foreign_dropped, fast_dropped, syn_not_ours and syn_port_dropped (rx
// stays what the worker received).
func (s Stats) Whole() report.Counters {
	c := s.Total
	c.ForeignDropped += s.Prefilter.ForeignDropped
	c.FastDropped += s.Prefilter.ForeignDropped
	c.SynNotOurs += s.Prefilter.SynNotOurs
	c.SynPortDropped += s.Prefilter.SynPortDropped
	return c
}

// ReplyPathStatus is how replies leave the node's kernel
// (docs/replypath.md).
type ReplyPathStatus struct {
	Mode   string `json:"mode"` // "kernel" or "tap"
	Netdev string `json:"netdev,omitempty"`
	Reason string `json:"reason"`
}

// ReplyPathStats are the reply path's counters in GET /v1/stats.
type ReplyPathStats struct {
	Mode string `json:"mode"`
	// KernelPackets and KernelBytes left through the NIC's netdev without
	// crossing the worker (a GSO super-packet counts once).
	KernelPackets uint64 `json:"kernel_packets"`
	KernelBytes   uint64 `json:"kernel_bytes"`
	// TapTxDropped is the tap's tx_dropped in the kernel: replies thrown
	// away because the worker did not drain the tap's queue in time. It
	// must stay 0; SYN-ACKs are among what it loses.
	TapTxDropped uint64 `json:"tap_tx_dropped"`
}

// MemberStatus is one member's weight and table share.
type MemberStatus struct {
	ID      string  `json:"id"`
	Weight  float64 `json:"weight"` // the weight the table was built with
	Buckets int     `json:"buckets"`
	Share   float64 `json:"share"`
	// Gossip mode only.
	Addr         string  `json:"addr,omitempty"`
	State        string  `json:"state,omitempty"`
	Capacity     float64 `json:"capacity"`
	Availability float64 `json:"availability"`
	Health       string  `json:"health,omitempty"`
	// TableHash is the member's gossiped agreement hash; Agrees says it is
	// this node's AgreementHash.
	TableHash string `json:"table_hash,omitempty"`
	Agrees    bool   `json:"agrees"`
	// TableAlgorithmMax is the newest range-table algorithm the member
	// offers in its gossiped meta.
	TableAlgorithmMax int `json:"table_algorithm_max,omitempty"`
}

// Stats is GET /v1/stats.
type Stats struct {
	NodeID  string               `json:"node_id"`
	Total   report.Counters      `json:"total"`
	Flows   report.FlowCounts    `json:"flows"`
	Workers []report.WorkerStats `json:"workers"`
	Ports   map[string]PortStats `json:"ports"`
	Reply   ReplyPathStats       `json:"reply_path"`
	// Prefilter's drops sit beside the worker's foreign_dropped and
	// syn_not_ours: together they are the node's whole count.
	Prefilter PrefilterStats `json:"prefilter"`
}

// PortStats are a device's own counters.
type PortStats struct {
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxMissed  uint64 `json:"rx_missed"`
	RxErrors  uint64 `json:"rx_errors"`
	TxErrors  uint64 `json:"tx_errors"`
	RxNoMbuf  uint64 `json:"rx_nombuf"`
}

// Ranges is GET /v1/ranges[?group=NAME].
type Ranges struct {
	TableHash string     `json:"table_hash"`
	Intervals []Interval `json:"intervals"`
}

// Interval is a run of buckets with one owner.
type Interval struct {
	From  int    `json:"from"` // first bucket
	To    int    `json:"to"`   // last bucket, inclusive
	Owner string `json:"owner"`
}

// GroupStatus is one group in GET /v1/groups.
type GroupStatus struct {
	groups.Group
	TableHash string         `json:"table_hash"`
	Members   []MemberStatus `json:"members"`
	Local     bool           `json:"local"` // this node is a member
}

// Health is GET /v1/health: this node's checks and every member's health
// as gossiped.
type Health struct {
	NodeID        string         `json:"node_id"`
	Healthy       bool           `json:"healthy"`
	ServerRunning bool           `json:"server_running"`
	Checks        []health.State `json:"checks"`
	SlowStart     float64        `json:"slow_start_factor"`
	Members       []MemberHealth `json:"members"`
}

// MemberHealth is one member's health in this node's view.
type MemberHealth struct {
	ID           string  `json:"id"`
	Health       string  `json:"health"`
	Capacity     float64 `json:"capacity"`
	Availability float64 `json:"availability"`
	Buckets      int     `json:"buckets"`
}

// Handoffs is GET /v1/handoffs: what the reading module did with the
// connections this node accepted, and what it adopted from others. Every
// map is keyed by a label documented in docs/operations.md; a label that
// never happened is absent.
type Handoffs struct {
	NodeID string `json:"node_id"`
	// Moves says whether this node can move connections (it has the
	// cluster key); without it, remote decisions are relayed.
	Moves bool `json:"moves"`
	// Accepted counts connections by listener: http, https.
	Accepted map[string]uint64 `json:"accepted"`
	// Refused counts connections answered 400/408/431 (HTTP) or closed
	// (TLS) by the reading module, by reason (head_timeout, too_large, ...).
	Refused map[string]uint64 `json:"refused"`
	// Decisions counts where accepted connections went: local, remote,
	// no_member (the group had no available member: served here).
	Decisions map[string]uint64 `json:"decisions"`
	// HandedOff counts connections moved away, by reason: group, session,
	// version.
	HandedOff map[string]uint64 `json:"handed_off"`
	// Failures counts moves that failed, by cause (dial, timeout,
	// refused:<cause>, restore, ...).
	Failures map[string]uint64 `json:"failures"`
	// Adopted counts connections this node took over, by reason.
	Adopted map[string]uint64 `json:"adopted"`
	// ChannelRefused counts handoff frames refused, by reason
	// (auth, replay, stale, addressee, malformed, ...).
	ChannelRefused map[string]uint64 `json:"channel_refused"`
	// Relayed, RelayFailed, RelayActive, RelayBytesUp, RelayBytesDown:
	// the fallback that splices a connection to its destination.
	Relayed        uint64 `json:"relayed"`
	RelayFailed    uint64 `json:"relay_failed"`
	RelayActive    int64  `json:"relay_active"`
	RelayBytesUp   uint64 `json:"relay_bytes_up"`
	RelayBytesDown uint64 `json:"relay_bytes_down"`
	// FallbackLocal counts connections served here because neither a move
	// nor a relay could reach the destination; Lost those closed because a
	// move failed after the destination may have taken them.
	FallbackLocal uint64 `json:"fallback_local"`
	Lost          uint64 `json:"lost"`
	// Alternate counts connections sent to another member of their group
	// because their destination was unreachable (down, not yet known
	// dead); AlternateLocal those served here for that reason.
	Alternate      uint64 `json:"alternate"`
	AlternateLocal uint64 `json:"alternate_local"`
	// Latency is the handoff latency at the origin, freeze to ACCEPT.
	Latency Latency `json:"latency"`
	// Steps times each step of the handoffs that succeeded, on either
	// side, by step (origin_freeze, ..., dest_adopt, ...; the labels of
	// handoff/transfer's Step* constants): where the latency goes.
	Steps map[string]Latency `json:"steps,omitempty"`
	// Served counts requests the local server answered, by outcome
	// (static, upstream, forwarded, relayed, status_4xx, status_5xx, ...).
	Served map[string]uint64 `json:"served"`
}

// Latency is a histogram of durations with its quantiles.
type Latency struct {
	Count uint64  `json:"count"`
	P50US float64 `json:"p50_us"`
	P99US float64 `json:"p99_us"`
	MaxUS float64 `json:"max_us"`
	// MeanUS is the mean duration (0 without observations).
	MeanUS float64 `json:"mean_us"`
	// Buckets are cumulative: Count of durations ≤ LeUS.
	Buckets []LatencyBucket `json:"buckets"`
}

// LatencyBucket is one cumulative histogram bucket.
type LatencyBucket struct {
	LeUS  float64 `json:"le_us"`
	Count uint64  `json:"count"`
}

// Content is GET /v1/content: every published path, and each node's word
// on it, as this node's update table has it.
type Content struct {
	NodeID string        `json:"node_id"`
	Paths  []ContentPath `json:"paths"`
	// Fetch counts this node's transfers from peers.
	Fetch ContentFetch `json:"fetch"`
	// TableRejected counts update-table messages from peers refused, by
	// reason.
	TableRejected map[string]uint64 `json:"table_rejected,omitempty"`
}

// ContentPath is one published path: its publication, the rollout's
// progress and every node's row.
type ContentPath struct {
	Publication // the publication's fields, flattened
	// Members is the group's alive members; Done those available at
	// Version; Share is Done/Members; ThresholdReached says whether older
	// copies are now unavailable.
	Members          int     `json:"members"`
	Done             int     `json:"done"`
	Share            float64 `json:"share"`
	ThresholdReached bool    `json:"threshold_reached"`
	// FetchFailures counts this node's failed fetches of the path.
	FetchFailures uint64        `json:"fetch_failures"`
	Nodes         []ContentNode `json:"nodes"`
}

// ContentNode is one node's row for a path.
type ContentNode struct {
	Node    string `json:"node"`
	Version uint64 `json:"version"`
	// State: available, updating or unavailable.
	State string `json:"state"`
	// Holds: the node has the version's object and serves it to peers.
	Holds bool `json:"holds"`
	// Alive: an alive member of the publication's group; Round its round
	// in the rollout order (-1 outside it).
	Alive bool `json:"alive"`
	Round int  `json:"round"`
}

// ContentFetch counts transfers of objects from peers.
type ContentFetch struct {
	Fetches     uint64            `json:"fetches"`
	Fetched     uint64            `json:"fetched"`
	Failed      uint64            `json:"failed"`
	Bytes       uint64            `json:"bytes"`
	BytesPerSec float64           `json:"bytes_per_sec"`
	Failures    map[string]uint64 `json:"failures"`
}

// Publication is POST /v1/content/publish's answer.
type Publication struct {
	Path      string `json:"path"`
	Version   uint64 `json:"version"`
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	Group     string `json:"group"`
	Threshold int    `json:"threshold"`
	Batch     int    `json:"batch"`
	Publisher string `json:"publisher"`
}
