package dpdk

// Self-test support: the smallest C lcore function, so the package's tests
// (which cannot use cgo themselves) can exercise LaunchOnLcore/WaitLcore
// the way the dataplane does, with a C function pointer and a C argument.
// Unexported; it costs a few bytes in the binary.

/*
#include "shoal_dpdk.h"
*/
import "C"

import "unsafe"

// probeFunc returns the C function `int shoal_probe(void *arg)`: arg points
// to two C ints {in, lcore}; it stores rte_lcore_id() in lcore and returns
// in+1.
func probeFunc() unsafe.Pointer { return C.shoal_probe_fn() }

// newProbeArg allocates the probe's argument in C memory; free it with
// freeProbeArg.
func newProbeArg(in int) unsafe.Pointer { return unsafe.Pointer(C.shoal_probe_arg_new(C.int(in))) }

// probeLcore returns the lcore the probe ran on (-1 if it has not run).
func probeLcore(arg unsafe.Pointer) int { return int(C.shoal_probe_arg_lcore((*C.int)(arg))) }

func freeProbeArg(arg unsafe.Pointer) { C.free(arg) }

// selftestPump sends n 64-byte frames on queue 0 of p, then receives up to
// n frames (waiting at most 1000 empty polls), freeing everything. It
// returns how many were sent and received.
func selftestPump(p *Port, mp *Mempool, n uint) (tx, rx uint) {
	r := C.shoal_selftest_pump(C.uint16_t(p.ID), mp.mp, C.uint(n))
	return uint(r.tx), uint(r.rx)
}

// rxDrop receives one burst from queue 0 of p and frees it; it returns
// the burst's size.
func rxDrop(p *Port) int {
	return int(C.shoal_selftest_rx_drop(C.uint16_t(p.ID)))
}
