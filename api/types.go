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
	PathStatus  = "/v1/status"
	PathStats   = "/v1/stats"
	PathRanges  = "/v1/ranges"
	PathFlows   = "/v1/flows"
	PathGroups  = "/v1/groups"
	PathHealth  = "/v1/health"
	PathDrain   = "/v1/drain"
	PathWeight  = "/v1/weight"
	PathServer  = "/v1/server"
	PathMetrics = "/metrics"
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
	TableHash string  `json:"table_hash"`
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
	TableHash    string  `json:"table_hash,omitempty"`
	Agrees       bool    `json:"agrees"`
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
