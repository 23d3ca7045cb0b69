package dpdk

// This file holds the package's only #cgo directive (cgo flags apply to the
// whole package, including shoal_dpdk.c) and the conversion of C results to
// Go errors.

/*
#cgo pkg-config: libdpdk
#include "shoal_dpdk.h"
*/
import "C"

import (
	"os"
	"strings"
	"syscall"
	"unsafe"
)

// newError builds an *Error from a C result and frees its captured log.
func newError(op string, r C.shoal_res) *Error {
	return &Error{
		Op:   op,
		Code: int(r.err),
		Msg:  strerror(int(r.err)),
		Log:  takeLog(r.log),
	}
}

// codeError builds an *Error from a negative errno returned by DPDK.
func codeError(op string, rc C.int) *Error {
	code := -int(rc)
	if code <= 0 {
		code = int(syscall.EIO) // DPDK returned a non-errno failure
	}
	return &Error{Op: op, Code: code, Msg: strerror(code)}
}

func strerror(code int) string {
	return C.GoString(C.shoal_strerror(C.int(code)))
}

// takeLog converts and frees a log string captured by a C helper, keeping
// only non-empty lines joined by "; ".
func takeLog(p *C.char) string {
	if p == nil {
		return ""
	}
	s := C.GoString(p)
	C.free(unsafe.Pointer(p))
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// freeLog frees the log of a successful call, which nobody reads.
// freeLog releases the log captured during a successful call, after
// echoing it to stderr where DPDK would have written it.
func freeLog(p *C.char) {
	if p != nil {
		os.Stderr.WriteString(C.GoString(p))
		C.free(unsafe.Pointer(p))
	}
}
