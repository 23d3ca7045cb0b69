// Package dpbench is `shoal bench dataplane`: the data plane's per-packet
// cost on one lcore, on DPDK virtual devices, beside the bare rx→free loop
// on the same frames. It is the one benchmark package that links DPDK; the
// rest of bench/ is pure Go.
package dpbench
