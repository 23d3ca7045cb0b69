// Package groups holds the server groups of a cluster: named sets of nodes
// that hold the same kind of content (*.html, *.cgi, streaming, cookie
// sessions, virtual hosts). A node may be in several groups.
//
// A request belongs to the group of its first matching rule: cookie rules,
// then host rules (the HTTP Host or TLS SNI, globs, case-insensitive), then
// path rules, each in definition order (MatchHost).
//
// Contract: group definitions (names, rules, policy) are cluster-wide and
// must be identical on every node; memberships travel in the gossiped node
// metadata. BuildV turns (table algorithm version, definitions, members)
// into one range table per group, each a pure function like the cluster
// table (control/ranges, the same version) with a per-group seed, so every
// node computes the same destination for the same request. The handoff layer asks Destination through the Chooser
// interface; it never sees tables.
package groups
