// Package prefilter is the in-kernel prefilter on the NIC's af_packet
// socket: an eBPF socket filter (SO_ATTACH_BPF) that drops, before the
// kernel copies a frame into the PMD's ring and before it wakes the
// worker, exactly the frames the worker would drop without looking at its
// flow table: well-formed IPv4 TCP segments to the VIP whose bucket is
// neither owned by this node nor holds a flow of ours (the fast drop of
// dataplane/classify.c). Every other frame passes whole: ARP, ICMP,
// traffic that is not for the VIP, gossip, malformed frames, which the
// worker keeps deciding and counting.
//
// Contract:
//   - The program computes the frozen connection value (CRC32C over the
//     12 tuple bytes, seeded; docs/protocol.md) bit for bit as
//     dataplane.ConnValue and sdp_conn_value do, with the byte table in a
//     map value and the 12 steps unrolled.
//   - It reads one bit per bucket from a memory-mapped BPF array
//     (Filter.Wanted) and drops the frame only when the bit is clear. It
//     never writes the bitmap; the worker alone keeps it equal to
//     owned | used, in step with its own decisions (dataplane/wanted.h
//     argues the ordering). A zero bitmap drops every such segment, which
//     is what a worker with no table and no flow decides.
//   - Drops are counted per CPU under the name of the worker counter that
//     would have counted each (Filter.Dropped: foreign_dropped,
//     syn_not_ours, syn_port_dropped, the served ports held in a map for
//     the last two), so the worker's counters plus these stay the node's
//     whole count.
//   - With Config.DropOutgoing it also drops the frames the host sends
//     through the device, the job of replypath's classic filter, which it
//     replaces (a socket has one filter).
//
// Load needs CAP_BPF and Linux 5.5 (memory-mappable arrays); on failure
// the caller runs without the filter, which changes nothing but the cost.
// The package is pure Go (cilium/ebpf); the data plane gets only the
// bitmap's address.
package prefilter
