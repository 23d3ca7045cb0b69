// Package route decides where a connection is served, from what the front
// server peeked (an HTTP request head or a TLS ClientHello), and holds the
// session cookie codec. It is pure: no sockets, no clock, no cgo.
//
// Contract of Decide (docs/handoff.md, "Deciding"):
//
//  1. The group is groups.MatchHost over the request's Host (or SNI), path
//     and cookie names: cookie rules, then host rules, then path rules.
//  2. A published path (the View implements Contents and the update table
//     has a publication for the HTTP path) is served by its publication's
//     group, whatever rule 1 matched: the candidates are the group's
//     Healthy serving members whose row is available, of those the ones at
//     the highest version; the session node (rule 3) if it is one of
//     them, else this node if it is one (every candidate serves the same
//     bytes: a move would buy nothing), else the group policy over the
//     candidates (hash: rendezvous of
//     (value, node ID) with the value of rule 5; availability: the
//     highest, ties to the lowest ID). Reason: ReasonVersion when this
//     node is a member of the group but not a candidate (it lacks the
//     newest available version or is updating), else ReasonGroup or
//     ReasonSession. No candidate (nothing available yet, or the group is
//     unknown): the rules below decide as for an unpublished path. TLS
//     connections have no path and skip this rule.
//  3. A session names a node: the session cookie's "<node>~" prefix
//     (SessionNode) on HTTP, the issuing node of a TLS ticket
//     (Request.SessionNode) on TLS. The connection goes to that node when
//     the View says it is Healthy and, if a group matched, it is a serving
//     member of that group (Availability > 0). Reason: ReasonSession.
//  4. Otherwise, no group: this node serves (every node serves what no
//     rule names).
//  5. Otherwise the group table decides: Destination(group, value), where
//     value is the hash of the session cookie's whole value when the
//     request carries one (so one cookie always lands on one node, even
//     when the node its prefix names is gone) and ConnValue(client)
//     otherwise. A member may hand off to another member: the table
//     spreads connections in proportion to availability, wherever they
//     were accepted. Reason: ReasonGroup.
//  6. A destination the View does not hold Healthy and serving (a table
//     older than the health view) is replaced by the healthy serving
//     member with the highest rendezvous hash of (value, node ID); none at
//     all: this node serves and Decision.NoMember is set, for the caller's
//     "no_member" counter.
//
// Decide never returns a node that is neither this node nor a Healthy
// serving member of the matched group, or of the publication's group for a
// published path; when a published path has candidates, the destination
// is one of them at the highest available version (property-tested).
//
// Hash inputs are frozen (changing them moves sessions and clients between
// nodes during an upgrade): ConnValue is FNV-1a 32 over the client's
// address as 16 bytes (IPv4 as ::ffff:a.b.c.d) then its port big endian,
// finished with the murmur3 fmix32 mixer; a cookie value is FNV-1a 32 over
// its bytes, finished the same way. Group tables use the low 16 bits.
//
// The cookie codec: a session cookie value is "<node>~<app value>", node a
// node ID (1-32 letters, digits, '-', '_'). The node that served the
// upstream's Set-Cookie adds the prefix (PrefixSessionValue) and strips it
// before the request reaches its upstream (SessionNode).
package route
