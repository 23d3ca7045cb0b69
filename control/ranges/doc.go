// Package ranges builds the range table: which member owns each of the
// 65536 buckets of connection values.
//
// A table is a pure function of (algorithm version, seed, members sorted
// by ID with their weights): it depends on no history, so every node
// holding the same view builds the same table with the same version.
// BuildV builds with a given version; every node of a cluster must use the
// same one, which Negotiate picks from the highest version each member
// announces in its gossiped metadata.
//
//   - Version 1 (Build) is weighted rendezvous hashing per bucket: each
//     bucket goes to the member with the highest score w / -ln(u), u a frozen
//     hash of (seed, member ID, bucket). Changing one member's weight, or
//     removing it, moves only buckets to or from that member, but a share is
//     right only on average (a quarter off at 256 members) and a build costs
//     a logarithm per member and bucket.
//   - Version 2 gives every member exactly its largest-remainder quota of
//     65536·w/Σw (within one bucket of the exact share) and builds in a few
//     milliseconds at hundreds of members: a weighted rendezvous race as the
//     preference, corrected to the quotas by a stable matching. A change
//     moves a little more than the minimum the quotas force (v2.go,
//     docs/protocol.md).
//
// The version-2 builder computes the members' orders 16 ranks at a time in
// Go assembly where the CPU has AVX2 (slots_amd64.s) and in Go elsewhere
// (slots.go; -tags purego forces it); the tests check that both give the
// same orders and the same tables.
//
// Both formats are frozen in docs/protocol.md and pinned by golden files;
// the content hash of a version-2 table names its version, so tables of
// different versions never look equal.
package ranges
