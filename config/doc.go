// Package config is one node's configuration: the YAML file format, its
// defaults and its validation. It is pure Go (no cgo), so the CLI can check
// a config offline (`shoal config check FILE`) and the lab and the benches
// can write configs without linking the data plane.
//
// Contract: Parse and Load either return a config in which every field has
// a usable value (defaults applied) or an *Error listing every problem
// found, each naming its YAML path (cluster.members[0].weight) so that an
// operator can find the line to fix. Unknown fields are errors.
package config
