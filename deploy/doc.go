// Package deploy holds what an operator installs beside the shoal binary,
// as files: the Grafana dashboard (grafana/shoal-dashboard.json), the
// Prometheus alert rules and scrape job (prometheus/), and the systemd
// unit (systemd/shoal@.service). The Go code only reads them back for
// tests: Selectors lists every metric selector their PromQL names, so a
// test can hold each one against what a node's /metrics serves.
//
// Contract: the files name only metrics a node serves (plus Prometheus's
// own `up`), and label values (counter="rx") that the node emits; the
// package's tests check the names against the documentation and the lab
// test TestStatusPage against a running node.
package deploy
