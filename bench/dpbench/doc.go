// Package dpbench is `shoal bench dataplane`: the data plane's per-packet
// cost on one lcore, on DPDK virtual devices, beside the bare rx→free loop
// on the same frames; and the real worker loop (RunLoop): its longest
// iteration while shoal flows dumps a million flows, and the cost of its
// command-ring check. It is the one benchmark package that links DPDK; the
// rest of bench/ is pure Go.
package dpbench
