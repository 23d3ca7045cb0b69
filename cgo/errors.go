package dpdk

import (
	"errors"
	"fmt"
	"syscall"
)

// Error is a failed DPDK operation.
type Error struct {
	Op   string // what was attempted, e.g. `open port "net_tap0,iface=x"`
	Code int    // positive errno or rte_errno value
	Msg  string // rte_strerror(Code)
	Log  string // DPDK log lines this thread emitted during the call, "; "-joined
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (errno %d)", e.Op, e.Msg, e.Code)
	if e.Log != "" {
		s += " [dpdk: " + e.Log + "]"
	}
	return s
}

// Unwrap exposes the code as a syscall.Errno when it is a system errno, so
// errors.Is(err, syscall.EEXIST) works. DPDK's own codes (>= 1000,
// E_RTE_SECONDARY, E_RTE_NO_CONFIG) are not unwrapped.
func (e *Error) Unwrap() error {
	if e.Code > 0 && e.Code < 1000 {
		return syscall.Errno(e.Code)
	}
	return nil
}

// ErrNotInitialized is returned by every call that needs the EAL before
// InitEAL has succeeded, or after CleanupEAL.
var ErrNotInitialized = errors.New("dpdk: EAL not initialized")
