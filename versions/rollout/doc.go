// Package rollout is the leaderless rolling update: a pure planner that
// every node runs on its own copy of the update table (versions/table) to
// decide its next step for one publication. No node coordinates: the
// order is a function of the content and the membership, so nodes that
// see the same table and members agree on who updates when.
//
// Contract of Plan(pub, members, rows, self) (docs/versions.md, "Rollout"):
//
//   - members are the publication group's members as this node knows
//     them; only Alive ones count. A member is done when its row is
//     available at pub's version (same sha256) or a newer one.
//   - Order: the alive members sorted by FNV-1a 64 over "path|version|id"
//     (version in decimal), ties by ID (frozen: Order). Member i is in
//     round i / pub.Batch. A member's turn has come when every alive
//     member of an earlier round is done.
//   - A member whose row is older than the publication starts updating in
//     its turn: StartUpdating (row state updating), then Fetch (get the
//     object into the store from Action.Sources; the wiring then writes
//     the row {version, sha256, updating, holds}), then Publish (switch
//     the store and write the row available at the version). A member
//     whose row is updating keeps fetching even when a membership change
//     moved its turn (it never stops half way).
//   - Single available member: when every alive serving member available
//     for the path is about to update (all in the round whose turn it
//     is), the first of them in the order keeps serving its old version
//     while it fetches (Fetch with KeepServing) and switches atomically
//     (row straight from available at the old version to available at
//     the new one). So a group is never left without an available server
//     where one could stay: a single-member group serves v1 until it
//     serves v2.
//   - Threshold: once the alive serving members available at the version
//     are at least pub.Threshold percent of the alive members (Threshold),
//     a member still available at an older version whose turn has not
//     come marks itself unavailable (MarkUnavailable) until it updates.
//     The threshold is reached only with at least one such member, so a
//     group keeps a server.
//   - Catch-up: a member that was down comes back with its old row. If it
//     died while updating it resumes fetching at once; otherwise its round
//     is, in the new order, at or before the first unfinished round, so
//     its turn has come and it starts at once. While it catches up, more
//     than Batch members may be updating (it and the round in progress);
//     the batch bound holds for the members that stayed up.
//   - A member outside the group (or dead) does nothing; if it is the
//     publisher it keeps the object as a source for the others
//     (Action.Source). The publisher is a source by contract: it ingested
//     the object before publishing.
//   - A rollout that cannot progress (a member that never finishes its
//     fetch) waits: later rounds do not start. That member's row says
//     updating and shoal content status shows it.
//
// The invariants (at most Batch members of the stayed-up ones updating,
// never zero available servers where one could stay, threshold respected,
// every alive member ends on the version) are checked at every step of a
// simulated rollout over 1..16 members with batch 1..4, deaths and
// returns (TestSimulatedRollouts). The simulation applies each node's
// action to one shared table; in the cluster, gossip lag can let two
// members act on different views for a moment.
package rollout
