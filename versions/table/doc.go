// Package table is the update table of the content distribution system:
// for every content path, the newest Publication (what version the
// cluster should serve, for which group, with which rollout threshold and
// batch) and one Row per node (which version that node has, whether it
// serves it, whether it holds the object for peers). It is replicated by
// gossip without a leader: deltas as memberlist broadcasts, the whole
// table on memberlist's push/pull. Pure Go; the only I/O is the Gossip
// adapter's use of memberlist's broadcast queue.
//
// Contract:
//
//   - A Publication is one per path; of two, the greater (version,
//     sha256) wins, and for equal (version, sha256) the greater encoding,
//     so every node keeps the same one whatever order it hears them in.
//     SetPublication assigns version = 1 + the highest version the table
//     knows for the path (publication or any row) unless one is given,
//     and refuses a publication that would not win.
//   - A Row is one per (path, node) and is written only by its node:
//     SetOwnRow writes this node's rows and bumps their gen. Of two rows
//     for one (path, node) the higher gen wins (equal gen: the greater
//     encoding). A row that claims to be written by node X and arrives
//     from gossip is X's word like any other: gen decides. A row about
//     this node with a higher gen than the one it wrote in this life (its
//     own words from before a restart) is answered by rewriting the
//     current row with a gen above it, so the owner stays the authority.
//     Rows of nodes that left stay (their last word); the callers that
//     decide (versions/rollout, handoff/route) count only alive members.
//   - holds says the node has the object of Row.Version verified in its
//     store and serves it to peers. A node that announces a version
//     without holding it is a row like any other (Holds false): the flag,
//     not the version, decides who is fetched from.
//   - Merging is idempotent, commutative and associative, so any order of
//     deliveries, with duplicates, converges (property-tested over 2..8
//     simulated nodes with losses repaired by full-state exchanges).
//   - Remote input (MergeDelta, MergeState) is decoded and validated whole
//     before anything is merged: a bad message changes nothing, is counted
//     in Stats by reason and its error names the field.
//   - Subscribe returns a channel that receives a value, coalesced and
//     without blocking writers, after any change to the table.
//
// Wire format, version 1 (docs/versions.md, pinned by testdata/*.golden):
// every message starts with 'V' 'T' 0x01 and a kind byte; integers are big
// endian; str8/str16 are a length (1 or 2 bytes) and the bytes.
//
//	pub   (kind 1): str16 path, u64 version, [32]sha256, u64 size,
//	              str8 group, u8 threshold, u16 batch, str8 publisher,
//	              i64 stamp (unix ns)
//	row   (kind 2): str16 path, str8 node, u64 version, [32]sha256,
//	              u8 state (1 available, 2 updating, 3 unavailable),
//	              u8 holds (0/1), u64 gen
//	state (kind 3): u32 paths, then per path in byte order: str16 path,
//	              u8 flags (bit 0: a publication follows), [pub body
//	              without its path], u16 rows, then per row in node order:
//	              str8 node, the row body without path and node.
//
// A delta (kind 1 or 2) is at most MaxDeltaSize bytes, so it fits one
// memberlist broadcast; a full state at most MaxStateSize. Paths are
// 1..MaxPathLen bytes starting with '/', without control bytes; node IDs
// 1-32 letters, digits, '-' or '_'; group names 1-32 letters, digits,
// '-', '_' or '.'.
package table
