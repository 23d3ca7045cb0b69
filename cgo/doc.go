// Package dpdk is shoal's own thin binding to DPDK 22.11 (import path
// github.com/shoal-lb/shoal/cgo): the EAL, packet mempools, rings, ethdev
// ports and lcore launching. It is the only package that uses DPDK's
// control API; the packet path lives in C in other packages, which get the
// raw struct rte_mempool* / struct rte_ring* from Ptr and launch their own
// C loops with LaunchOnLcore.
//
// Contract:
//
//   - Control plane only. Each operation is one call into a C helper
//     (shoal_dpdk.c) that does the whole job (e.g. Configure sets up every
//     queue in one call), plus the C strings it needs. Nothing in this
//     package is per packet; per-packet work belongs in C.
//   - No Go pointers cross into C. Arguments are values, C strings
//     (C.CString) or C pointers; results come back by value in C structs,
//     and C-allocated results (logs, xstats) are copied and freed at once.
//     Pointers handed to LaunchOnLcore must be C function pointers and C
//     memory.
//   - Errors are *Error and carry DPDK's own code and message: the negative
//     errno a call returned or rte_errno (read in the same C call, since it
//     is thread-local), rte_strerror of it, and the DPDK log lines the
//     calling thread emitted during the call (DPDK's codes are often vague,
//     e.g. a missing af_packet interface is reported as ENOTSUP; the log
//     says "ioctl failed (SIOCGIFINDEX): No such device"). Error.Unwrap
//     gives a syscall.Errno, so errors.Is(err, syscall.EEXIST) works.
//   - InitEAL runs once per process and keeps the calling goroutine locked
//     to its OS thread, which becomes the main lcore. Other calls may come
//     from any goroutine; they run on non-EAL threads (rte_lcore_id() is
//     LCORE_ID_ANY there), which the ethdev/mempool/ring control API
//     allows. Calls before InitEAL or after CleanupEAL return
//     ErrNotInitialized. Operations on one Port are not synchronised:
//     configure a port from one goroutine.
//   - DPDK's log goes to stderr (through a stream installed by InitEAL).
//
// cgo and unsafe are confined to cgo.go (the package's only #cgo
// directive: pkg-config libdpdk), eal.go, mem.go, port.go and selftest.go;
// args.go and errors.go are plain Go. The C code is in shoal_dpdk.c/.h.
//
// Facts about DPDK 22.11 on Debian that shape the API:
//
//   - --no-huge implies --legacy-mem, which the EAL refuses together with
//     --in-memory; EALArgs turns InMemory into --no-shconf without
//     Hugepages.
//   - Debian builds DPDK with shared PMDs; the EAL dlopens every driver in
//     /usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0 at init, so no -d is needed.
//   - --lcores "0@(0-1),1@(0-1)" gives lcores 0 and 1, both allowed on
//     CPUs 0-1; the worker thread is named rte-worker-1.
//   - rte_eal_wait_lcore spins; WaitLcore polls with sleeps instead.
//   - net_tap finds no free real-time signal (the Go runtime handles them
//     all), logs "All rt-signals are in use" and works in poll mode, which
//     is all shoal uses. Without the multiq qdisc it also disables rte_flow.
package dpdk
