package report

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

// WorkerStats is one worker's counters and flow counts.
type WorkerStats struct {
	Lcore      uint       `json:"lcore"`
	Counters   Counters   `json:"counters"`
	Flows      FlowCounts `json:"flows"`
	Polls      uint64     `json:"polls"`
	IdleSleeps uint64     `json:"idle_sleeps"`
	SleptUS    uint64     `json:"slept_us"`
	// EmptyWakes counts idle sleeps after which the worker's next poll
	// found nothing: wake-ups that bought no packet.
	EmptyWakes uint64 `json:"empty_wakes"`
	// IdleWait is how the worker sleeps when idle: "fds" (on its devices'
	// receive file descriptors, until a packet comes) or "timed: " and why.
	IdleWait string `json:"idle_wait"`
	Epoch    uint64 `json:"epoch"`
	// MaxIterUS is the longest loop iteration since the last
	// Runtime.ResetMaxIter (or the start), idle sleeps excluded: the
	// longest a packet can wait for the worker to come back to its queues.
	MaxIterUS float64 `json:"max_iter_us"`
	Commands  uint64  `json:"commands"`  // commands from Go completed (dataplane/cmd.h)
	ThreadID  int     `json:"thread_id"` // the worker's Linux thread id
}

// Flow is one entry of a worker's flow table, for the CLI.
type Flow struct {
	Client   string `json:"client"` // ip:port
	VIP      string `json:"vip"`    // ip:port
	State    string `json:"state"`
	Bucket   uint16 `json:"bucket"`
	ExpireMS int64  `json:"expires_in_ms"`
	Worker   uint   `json:"worker"`
}
