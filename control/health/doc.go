// Package health checks a node's own servers. Each check (an HTTP GET with
// an expected status, or a TCP connect) runs every interval against the
// local server; Fall failures in a row make it unhealthy, Rise successes in
// a row healthy again. A node is healthy when every check is.
//
// Contract: the checker starts unhealthy until Rise successes (a node whose
// server never came up takes no connection), logs one line per transition
// naming the check and the reason, counts transitions and keeps the last
// latency, and never panics on a target that cannot pass (wrong port, wrong
// path, unresolvable host): that is simply a failing check.
package health
