package tcprepair

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// getsockoptBytes reads a binary socket option into b (x/sys has no
// accessor for struct tcp_repair_window, and GetsockoptString stops at the
// first NUL byte). It returns the length the kernel wrote.
func getsockoptBytes(fd, level, opt int, b []byte) (int, error) {
	n := uint32(len(b))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// setsockoptBytes sets a binary socket option from b.
func setsockoptBytes(fd, level, opt int, b []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
	if e != 0 {
		return e
	}
	return nil
}
