// Package ui is a node's status page: one HTML page with its JavaScript and
// CSS embedded in the binary (nothing is fetched from elsewhere, so it works
// on a network with no way out), and the live feed it draws from.
//
// The page shows every member (capacity, availability, share, health,
// slow start), each range table of 65,536 buckets as a bar coloured by
// owner, one segment per interval, for the cluster and for each group,
// the data plane's counters with rates, and this node's health checks. It
// redraws from GET /v1/events, a server-sent-events stream of
// api.Snapshot: one event at once, then one whenever a table hash or a
// member's state changes (seen within PollInterval) and at least one every
// HeartbeatInterval. A table's runs are sent on a stream only when its hash
// differs from the one that stream sent last.
//
// The page is read-only. Its drain and weight buttons post to the admin
// API with the bearer token the operator types in; the admin server, not
// this package, decides who may change anything.
//
// Contract: ui reads the node only through Source, whose methods must be
// safe for concurrent use; Close ends every stream and waits for them, so
// nothing reads the node after Close returns. It is pure Go.
package ui
