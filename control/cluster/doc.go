// Package cluster is a node's cluster controller: the state machine that
// decides which buckets of the connection space this node accepts.
//
// On every change (membership, availability, health, an operator's drain
// or weight, a tick) Step rebuilds the range table and the group tables
// from the gossiped metas, which makes every node with the same view build
// the same tables, and publishes this node's share to the data plane. The
// builds are deterministic, so a Step whose inputs (the negotiated version
// and the members' weights and groups) are those of the last build skips
// them (Builds counts the range-table builds):
//
//	view ──► weights (unhealthy: 0; none available: fail open to capacities)
//	     ──► ranges.BuildV(negotiated version) ──► share ∪ old share (hold) ──► Publisher
//	     ──► advertise the table hash ──► peers agree? ──► share alone (release)
//
// Contract:
//   - Make before break: a share that shrinks is first published as the
//     union of the old and the new share, and the old buckets are released
//     only once every peer advertises the new tables, or after MaxHold.
//     A bucket is never owned by nobody because of a change of this node's.
//   - Fail open: when no member has availability, the configured
//     capacities decide, and the event is counted.
//   - Slow start: a node joining or recovering ramps from SlowStartInitial
//     to its full availability over the window, in capacity steps.
//   - Leave: drain, wait (bounded) for agreement, for handshakes, stop the
//     server, wait (bounded) for flows.
//
// The controller talks to its edges through small interfaces (Membership,
// Publisher, Capacity, Health, Flows, Clock), so its tests run with in-repo
// fakes, without root or DPDK, in milliseconds.
package cluster
