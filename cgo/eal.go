package dpdk

/*
#include "shoal_dpdk.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

var (
	ealMu    sync.Mutex
	ealState int // 0 never, 1 running, 2 failed or cleaned up
)

func ready() error {
	ealMu.Lock()
	defer ealMu.Unlock()
	if ealState != 1 {
		return ErrNotInitialized
	}
	return nil
}

// InitEAL initialises DPDK's EAL with EALArgs(cfg). It may succeed once per
// process; every later call returns an error (DPDK cannot initialise twice,
// nor again after CleanupEAL). After a failure DPDK allows a retry only if
// the arguments were rejected.
//
// The calling goroutine is locked to its OS thread with
// runtime.LockOSThread and is NEVER unlocked: rte_eal_init makes the calling
// thread the main lcore (per-thread lcore id, CPU affinity of the main
// lcore's cpuset), so the caller keeps that thread for good. Call it from
// main() or from a goroutine dedicated to DPDK control. Threads the Go
// runtime creates later from this one inherit its affinity, so give the
// main lcore all CPUs (e.g. Lcores "0@(0-1),1@(0-1)") unless pinning Go is
// intended.
//
// DPDK's log goes to stderr from here on (Debian's default is stdout plus
// syslog); log lines emitted by a failing call are copied into its *Error.
// The argv strings are allocated in C and deliberately never freed (the EAL
// may keep pointers into them).
func InitEAL(cfg EALConfig) error {
	ealMu.Lock()
	defer ealMu.Unlock()
	switch ealState {
	case 1:
		return errors.New("dpdk: InitEAL: EAL already initialized")
	case 2:
		return errors.New("dpdk: InitEAL: EAL cannot be initialized again in this process")
	}
	args := EALArgs(cfg)
	argv := (**C.char)(C.malloc(C.size_t(len(args)+1) * C.size_t(unsafe.Sizeof((*C.char)(nil)))))
	av := unsafe.Slice(argv, len(args)+1)
	for i, a := range args {
		av[i] = C.CString(a)
	}
	av[len(args)] = nil

	runtime.LockOSThread() // never unlocked: this thread becomes the main lcore
	r := C.shoal_eal_init(C.int(len(args)), argv)
	if r.rc < 0 {
		// DPDK itself decides whether a retry is possible: it allows one
		// after bad arguments and answers EALREADY after later failures.
		return newError(fmt.Sprintf("rte_eal_init %q", args[1:]), r)
	}
	freeLog(r.log)
	ealState = 1
	return nil
}

// CleanupEAL releases the EAL's resources (rte_eal_cleanup). Close ports and
// free mempools and rings first. No DPDK call may follow. It also removes
// the runtime directory (/var/run/dpdk/<file-prefix>) if it is empty, which
// DPDK 22.11 leaves behind even with --in-memory.
func CleanupEAL() error {
	ealMu.Lock()
	defer ealMu.Unlock()
	if ealState != 1 {
		return ErrNotInitialized
	}
	ealState = 2
	dir := C.GoString(C.shoal_runtime_dir())
	r := C.shoal_eal_cleanup()
	if r.rc < 0 {
		return newError("rte_eal_cleanup", r)
	}
	freeLog(r.log)
	if dir != "" {
		os.Remove(dir) // only succeeds when empty
	}
	return nil
}

// MainLcore returns the main lcore's id (the thread that called InitEAL).
func MainLcore() uint {
	if ready() != nil {
		return 0
	}
	return uint(C.shoal_main_lcore())
}

// WorkerLcores returns the worker lcores (RTE_LCORE_FOREACH_WORKER order),
// nil before InitEAL.
func WorkerLcores() []uint {
	if ready() != nil {
		return nil
	}
	var ws []uint
	for i := C.shoal_next_worker(-1); i >= 0; i = C.shoal_next_worker(i) {
		ws = append(ws, uint(i))
	}
	return ws
}

// SocketID returns the NUMA socket of the main lcore. (rte_socket_id() of
// the calling thread would be meaningless here: goroutines other than the
// one that called InitEAL run on non-EAL threads.) It is -1 before InitEAL.
func SocketID() int {
	if ready() != nil {
		return -1
	}
	return int(C.shoal_main_socket())
}

// LaunchOnLcore runs fn(arg) on worker lcore lcore (rte_eal_remote_launch).
// fn must be a C function `int fn(void *)` and arg must point to C memory
// (or be nil); both usually come from another cgo package, which is why
// they are unsafe.Pointer here. It fails with EBUSY if the lcore is still
// running something.
func LaunchOnLcore(lcore uint, fn unsafe.Pointer, arg unsafe.Pointer) error {
	if err := ready(); err != nil {
		return err
	}
	op := fmt.Sprintf("launch on lcore %d", lcore)
	if fn == nil {
		return &Error{Op: op, Code: int(syscall.EINVAL), Msg: "nil function"}
	}
	if C.shoal_lcore_is_worker(C.uint(lcore)) == 0 {
		return &Error{Op: op, Code: int(syscall.EINVAL), Msg: "not a worker lcore"}
	}
	r := C.shoal_remote_launch(fn, arg, C.uint(lcore))
	if r.rc < 0 {
		return newError(op, r)
	}
	freeLog(r.log)
	return nil
}

// WaitLcore waits until lcore has finished the function launched on it and
// returns that function's return value (rte_eal_wait_lcore). A lcore that is
// idle returns at once with the last function's value (0 if none). It
// returns 0 for a lcore that is not a worker.
//
// Unlike rte_eal_wait_lcore, which spins a CPU for as long as the worker
// runs, it polls the lcore's state with sleeps of up to 1 ms: on a 2-core
// machine a spinning waiter would take the core the dataplane needs.
func WaitLcore(lcore uint) int {
	if ready() != nil || C.shoal_lcore_is_worker(C.uint(lcore)) == 0 {
		return 0
	}
	d := 20 * time.Microsecond
	for C.shoal_lcore_running(C.uint(lcore)) != 0 {
		time.Sleep(d)
		if d < time.Millisecond {
			d *= 2
		}
	}
	return int(C.shoal_wait_lcore(C.uint(lcore)))
}
