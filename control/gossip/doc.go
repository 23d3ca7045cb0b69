// Package gossip is shoal's membership layer: every node runs memberlist
// (SWIM failure detection plus gossip) over its node IP and advertises a
// small versioned Meta — node ID, configured capacity, quantized
// availability, health, groups, the hash of the range table it runs and
// that table's epoch. There is no leader: each node feeds Members() to the
// deterministic table builder (control/ranges), and nodes that see the same
// members build the same table; TableHash in every meta makes disagreement
// visible.
//
// Contract:
//
//   - Members() is this node's view: itself plus every alive peer whose meta
//     decoded, sorted by NodeID. A peer whose meta is unreadable (unknown or
//     newer version, malformed, NaN/Inf, ID not equal to its memberlist
//     name) is left out, counted in Stats by Reason, and logged once per
//     peer and problem. Out-of-range capacity or availability is clamped by
//     Sanitize (deterministic, so every node derives the same weight).
//   - Subscribe() fires, coalesced and without ever blocking gossip, after
//     any change to membership or to any member's meta, including ours.
//   - Gossip is encrypted with the cluster key (AES-GCM); a plaintext
//     cluster must be asked for explicitly. A node with another key cannot
//     join (Join returns ErrWrongKey); the nodes it tried log one
//     rate-limited line "gossip: refused message from ADDR: wrong cluster
//     key?" and count it.
//   - The node ID is the memberlist node name and must be unique. A second
//     node with a known ID at another address is refused by memberlist; both
//     sides log it and the newcomer's Join/Start fails with
//     ErrNodeIDConflict.
//   - Failure detection is tuned for a LAN (see the Default* constants): a
//     crashed node disappears from its peers' Members within about a second.
//     Leave announces a departure so peers drop the node at once.
//   - Config.State (optional) carries application state on the same
//     encrypted gossip: its broadcasts piggyback on gossip rounds, its full
//     state rides every push/pull and join (versions/table uses it).
//   - memberlist's own log lines are routed to the slog.Logger at their
//     level.
//
// The Meta wire format is documented on Meta and pinned by
// testdata/meta_v1.golden.
package gossip
