// Package dpbench is `shoal bench dataplane`: the worker's own loop
// (worker.c through dataplane.Runtime: NIC poll, classification, tap and
// NIC transmit, tap poll, sweep) on one lcore, on DPDK virtual devices,
// beside two limits measured on the same frames (the bare rx→free loop and
// a loop that reads every frame's headers) and, for the SYN scenarios, a
// third (the SYN floor: headers, connection value, ownership test, owned
// SYNs to the tap sink; dataplane.BenchFloor), with the verdict counts each
// scenario expects checked, and rounds of a random and a colliding SYN
// flood alternated, whose legitimate rates give the colliding flood's cost
// as a median and a spread (RunDataplane, FloodReport); the kernel peer, nftables hashing
// the 4-tuple in a netdev ingress chain, on the same frames (RunNftPeer);
// and the worker loop's longest iteration while shoal flows dumps a million
// flows, and the cost of its command-ring check (RunLoop). It is the one
// benchmark package that links DPDK; the rest of bench/ is pure Go.
package dpbench
