package node

import (
	"fmt"
	"io"
	"net/http"

	"github.com/VictoriaMetrics/metrics"

	"github.com/shoal-lb/shoal/api"
)

// GET /metrics on the admin socket, in Prometheus text format: the data
// plane's counters per worker, flows by state, ports, the table (epoch,
// owned buckets, agreement), membership and gossip health, and the Go
// process. Names are documented in docs/operations.md.

func (n *Node) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	n.writeMetrics(w)
	metrics.WriteProcessMetrics(w)
}

// writeStruct writes each counter of v (named by its JSON name) as
// metric{labels"name"}.
func writeStruct(w io.Writer, metric, labels string, v any, counter bool) {
	for _, f := range api.Fields(v) {
		name := fmt.Sprintf("%s{%s%q}", metric, labels, f.Name)
		if counter {
			metrics.WriteCounterUint64(w, name, f.Value)
		} else {
			metrics.WriteGaugeUint64(w, name, f.Value)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (n *Node) writeMetrics(w io.Writer) {
	st := n.stats()
	for _, wk := range st.Workers {
		l := fmt.Sprintf(`worker="%d",counter=`, wk.Lcore)
		writeStruct(w, "shoal_dataplane_frames_total", l, wk.Counters, true)
		writeStruct(w, "shoal_dataplane_flows", fmt.Sprintf(`worker="%d",state=`, wk.Lcore), wk.Flows, false)
		metrics.WriteCounterUint64(w, fmt.Sprintf(`shoal_dataplane_polls_total{worker="%d"}`, wk.Lcore), wk.Polls)
		metrics.WriteCounterUint64(w, fmt.Sprintf(`shoal_dataplane_idle_sleep_seconds_total{worker="%d"}`, wk.Lcore), wk.SleptUS/1e6)
		metrics.WriteCounterUint64(w, fmt.Sprintf(`shoal_dataplane_idle_sleeps_total{worker="%d"}`, wk.Lcore), wk.IdleSleeps)
		metrics.WriteCounterUint64(w, fmt.Sprintf(`shoal_dataplane_empty_wakes_total{worker="%d"}`, wk.Lcore), wk.EmptyWakes)
		metrics.WriteGaugeUint64(w, fmt.Sprintf(`shoal_dataplane_worker_epoch{worker="%d"}`, wk.Lcore), wk.Epoch)
		metrics.WriteGaugeFloat64(w, fmt.Sprintf(`shoal_dataplane_max_iteration_seconds{worker="%d"}`, wk.Lcore), wk.MaxIterUS/1e6)
		metrics.WriteCounterUint64(w, fmt.Sprintf(`shoal_dataplane_commands_total{worker="%d"}`, wk.Lcore), wk.Commands)
	}
	for name, p := range st.Ports {
		writeStruct(w, "shoal_port_packets_total", fmt.Sprintf(`port=%q,counter=`, name), p, true)
	}
	metrics.WriteCounterUint64(w, "shoal_reply_kernel_packets_total", st.Reply.KernelPackets)
	metrics.WriteCounterUint64(w, "shoal_reply_kernel_bytes_total", st.Reply.KernelBytes)
	metrics.WriteCounterUint64(w, "shoal_tap_tx_dropped_total", st.Reply.TapTxDropped)
	metrics.WriteGaugeFloat64(w, fmt.Sprintf(`shoal_reply_path{mode=%q}`, st.Reply.Mode), 1)
	metrics.WriteGaugeFloat64(w, "shoal_prefilter_active", b2f(st.Prefilter.Active))
	writeStruct(w, "shoal_prefilter_dropped_total", "counter=", struct {
		ForeignDropped uint64 `json:"foreign_dropped"`
		SynNotOurs     uint64 `json:"syn_not_ours"`
		SynPortDropped uint64 `json:"syn_port_dropped"`
	}{st.Prefilter.ForeignDropped, st.Prefilter.SynNotOurs, st.Prefilter.SynPortDropped}, true)
	h := n.health()
	metrics.WriteGaugeFloat64(w, "shoal_health_healthy", b2f(h.Healthy))
	metrics.WriteGaugeFloat64(w, "shoal_health_server_running", b2f(h.ServerRunning))
	metrics.WriteGaugeFloat64(w, "shoal_slow_start_factor", h.SlowStart)
	for _, c := range h.Checks {
		l := fmt.Sprintf(`check=%q`, c.Check.Name)
		metrics.WriteGaugeFloat64(w, "shoal_health_check_healthy{"+l+"}", b2f(c.Healthy))
		metrics.WriteGaugeFloat64(w, "shoal_health_check_latency_seconds{"+l+"}", c.LatencyMS/1000)
		metrics.WriteCounterUint64(w, "shoal_health_check_transitions_total{"+l+"}", c.Transitions)
		metrics.WriteCounterUint64(w, "shoal_health_check_probes_total{"+l+"}", c.Probes)
		metrics.WriteCounterUint64(w, "shoal_health_check_failures_total{"+l+"}", c.Failures)
	}
	for _, m := range h.Members {
		metrics.WriteGaugeFloat64(w, fmt.Sprintf(`shoal_member_healthy{member=%q}`, m.ID), b2f(m.Health == "healthy"))
	}
	s := n.status()
	metrics.WriteGaugeUint64(w, "shoal_table_epoch", s.Epoch)
	metrics.WriteGaugeUint64(w, "shoal_table_algorithm", uint64(s.TableAlgorithm))
	metrics.WriteGaugeUint64(w, "shoal_table_owned_buckets", uint64(s.OwnedBuckets))
	metrics.WriteGaugeFloat64(w, "shoal_table_age_seconds", s.TableAge)
	metrics.WriteGaugeFloat64(w, "shoal_table_agreement", b2f(s.Agreement))
	metrics.WriteGaugeUint64(w, "shoal_table_disagreeing_members", uint64(len(s.Disagree)))
	metrics.WriteCounterUint64(w, "shoal_table_fail_open_builds_total", s.FailOpen)
	metrics.WriteGaugeUint64(w, "shoal_members", uint64(len(s.Members)))
	for _, m := range s.Members {
		metrics.WriteGaugeFloat64(w, fmt.Sprintf(`shoal_member_share{member=%q}`, m.ID), m.Share)
		metrics.WriteGaugeFloat64(w, fmt.Sprintf(`shoal_member_weight{member=%q}`, m.ID), m.Weight)
		metrics.WriteGaugeFloat64(w, fmt.Sprintf(`shoal_member_availability{member=%q}`, m.ID), m.Availability)
		metrics.WriteGaugeFloat64(w, fmt.Sprintf(`shoal_member_capacity{member=%q}`, m.ID), m.Capacity)
	}
	if s.Capacity != nil {
		metrics.WriteGaugeFloat64(w, "shoal_capacity_load", s.Capacity.Load)
		metrics.WriteGaugeFloat64(w, "shoal_capacity_draining", b2f(s.Capacity.Draining))
	}
	if g := s.GossipStats; g != nil {
		metrics.WriteCounterUint64(w, "shoal_gossip_refused_messages_total", g.RefusedMessages)
		metrics.WriteCounterUint64(w, "shoal_gossip_node_id_conflicts_total", g.NodeIDConflicts)
		metrics.WriteCounterUint64(w, "shoal_gossip_join_failures_total", g.JoinFailures)
		metrics.WriteCounterUint64(w, "shoal_gossip_meta_clamped_total", g.MetaClamped)
		for r, v := range g.MetaRejected {
			metrics.WriteCounterUint64(w, fmt.Sprintf(`shoal_gossip_meta_rejected_total{reason=%q}`, r), v)
		}
		metrics.WriteGaugeUint64(w, "shoal_gossip_members_excluded", uint64(g.MembersExcluded))
		metrics.WriteCounterUint64(w, "shoal_gossip_bytes_sent_total", g.BytesSent)
		metrics.WriteCounterUint64(w, "shoal_gossip_bytes_received_total", g.BytesReceived)
		metrics.WriteCounterUint64(w, "shoal_gossip_packets_sent_total", g.PacketsSent)
		metrics.WriteCounterUint64(w, "shoal_gossip_packets_received_total", g.PacketsReceived)
	}
	n.writeHandoffMetrics(w)
	n.writeContentMetrics(w)
}

// writeContentMetrics writes the content distribution system's state from
// GET /v1/content: per published path the rollout's progress and this
// node's own row; the node's transfers (rate, bytes, failures by cause);
// update-table messages refused.
func (n *Node) writeContentMetrics(w io.Writer) {
	if n.versions == nil {
		return
	}
	c := n.versions.status("")
	for _, p := range c.Paths {
		l := fmt.Sprintf(`{path=%q}`, p.Path)
		metrics.WriteGaugeUint64(w, "shoal_content_version"+l, p.Version)
		metrics.WriteGaugeUint64(w, "shoal_content_members"+l, uint64(p.Members))
		metrics.WriteGaugeUint64(w, "shoal_content_done"+l, uint64(p.Done))
		metrics.WriteGaugeFloat64(w, "shoal_content_share"+l, p.Share)
		metrics.WriteGaugeUint64(w, "shoal_content_threshold_percent"+l, uint64(p.Threshold))
		metrics.WriteGaugeFloat64(w, "shoal_content_threshold_reached"+l, b2f(p.ThresholdReached))
		metrics.WriteCounterUint64(w, "shoal_content_path_fetch_failures_total"+l, p.FetchFailures)
		var own api.ContentNode
		for _, r := range p.Nodes {
			if r.Node == c.NodeID {
				own = r
			}
		}
		metrics.WriteGaugeUint64(w, "shoal_content_local_version"+l, own.Version)
		for _, st := range []string{"available", "updating", "unavailable"} {
			metrics.WriteGaugeFloat64(w, fmt.Sprintf(`shoal_content_local_state{path=%q,state=%q}`, p.Path, st), b2f(own.State == st))
		}
	}
	f := c.Fetch
	metrics.WriteCounterUint64(w, "shoal_content_fetch_started_total", f.Fetches)
	metrics.WriteCounterUint64(w, "shoal_content_fetch_fetched_total", f.Fetched)
	metrics.WriteCounterUint64(w, "shoal_content_fetch_failed_total", f.Failed)
	metrics.WriteCounterUint64(w, "shoal_content_fetch_bytes_total", f.Bytes)
	metrics.WriteGaugeFloat64(w, "shoal_content_fetch_bytes_per_second", f.BytesPerSec)
	for _, cause := range []string{"dial", "http_status", "stall", "truncated", "checksum", "io", "cancelled"} {
		metrics.WriteCounterUint64(w, fmt.Sprintf(`shoal_content_fetch_failures_total{cause=%q}`, cause), f.Failures[cause])
	}
	for r, v := range c.TableRejected {
		metrics.WriteCounterUint64(w, fmt.Sprintf(`shoal_content_table_rejected_total{reason=%q}`, r), v)
	}
}

// writeHandoffMetrics writes the reading module's counters: one metric per
// map of GET /v1/handoffs, labelled by its keys, and the latency histogram.
func (n *Node) writeHandoffMetrics(w io.Writer) {
	h := n.handoffs()
	for _, m := range []struct {
		name, label string
		v           map[string]uint64
	}{
		{"shoal_front_accepted_total", "listener", h.Accepted},
		{"shoal_front_refused_total", "reason", h.Refused},
		{"shoal_front_decisions_total", "decision", h.Decisions},
		{"shoal_handoff_moved_total", "reason", h.HandedOff},
		{"shoal_handoff_failures_total", "cause", h.Failures},
		{"shoal_handoff_adopted_total", "reason", h.Adopted},
		{"shoal_handoff_channel_refused_total", "reason", h.ChannelRefused},
		{"shoal_local_served_total", "outcome", h.Served},
	} {
		for k, v := range m.v {
			metrics.WriteCounterUint64(w, fmt.Sprintf(`%s{%s=%q}`, m.name, m.label, k), v)
		}
	}
	metrics.WriteCounterUint64(w, "shoal_relay_started_total", h.Relayed)
	metrics.WriteCounterUint64(w, "shoal_relay_failed_total", h.RelayFailed)
	metrics.WriteGaugeUint64(w, "shoal_relay_active", uint64(max(h.RelayActive, 0)))
	metrics.WriteCounterUint64(w, `shoal_relay_bytes_total{direction="up"}`, h.RelayBytesUp)
	metrics.WriteCounterUint64(w, `shoal_relay_bytes_total{direction="down"}`, h.RelayBytesDown)
	metrics.WriteCounterUint64(w, "shoal_front_fallback_local_total", h.FallbackLocal)
	metrics.WriteCounterUint64(w, "shoal_front_lost_total", h.Lost)
	metrics.WriteCounterUint64(w, "shoal_front_alternate_total", h.Alternate)
	metrics.WriteCounterUint64(w, "shoal_front_alternate_local_total", h.AlternateLocal)
	for _, b := range h.Latency.Buckets {
		metrics.WriteCounterUint64(w, fmt.Sprintf(`shoal_handoff_latency_seconds_bucket{le="%g"}`, b.LeUS/1e6), b.Count)
	}
	if len(h.Latency.Buckets) > 0 {
		metrics.WriteCounterUint64(w, `shoal_handoff_latency_seconds_bucket{le="+Inf"}`, h.Latency.Count)
		metrics.WriteCounterUint64(w, "shoal_handoff_latency_seconds_count", h.Latency.Count)
	}
}
