// Package ranges builds the range table: which member owns each of the
// 65536 buckets of connection values.
//
// Build is a pure function of (seed, members with weights): it depends on
// no history, so every node holding the same view builds the same table.
// It uses weighted rendezvous hashing: each bucket goes to the member with
// the highest score w / -ln(u), where u is a frozen hash of (seed, member ID,
// bucket) mapped into (0,1). That gives each member a share proportional to
// its weight, and changing one member's weight, or removing it, moves only
// buckets to or from that member. The format is frozen in
// docs/protocol.md and pinned by golden files.
package ranges
