package packetsock

import (
	"net"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBound: a packet socket bound to lo is found, one bound to no device
// and a UDP socket are not, and an unknown device is named in the error.
func TestBound(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no lo:", err)
	}
	bound, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Skip("AF_PACKET sockets need CAP_NET_RAW:", err)
	}
	defer unix.Close(bound)
	if err := unix.Bind(bound, &unix.SockaddrLinklayer{Protocol: 0x88b5, Ifindex: lo.Index}); err != nil {
		t.Fatal(err)
	}
	unbound, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(unbound)
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(udp)

	fds, err := Bound("lo")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(fds, bound) || slices.Contains(fds, unbound) || slices.Contains(fds, udp) {
		t.Fatalf("Bound(lo) = %v; want %d in it, not %d (unbound) or %d (UDP)", fds, bound, unbound, udp)
	}
	if _, err := Bound("nosuchdev0"); err == nil || !strings.Contains(err.Error(), "nosuchdev0") {
		t.Fatalf("unknown device: %v", err)
	}
}
