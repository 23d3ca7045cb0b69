// Package api is the admin API of a node as its clients see it: the paths
// (versioned, /v1/...), the JSON wire types, a client over the node's unix
// socket, and the one function that names counters for both `shoal stats`
// and /metrics.
//
// It is pure Go: the CLI, the lab and the benches import it, never the node
// package, and so never link DPDK. Contract: within /v1 a field is added,
// never renamed or removed, and every JSON name is snake_case; the shapes
// are documented in docs/operations.md.
package api
