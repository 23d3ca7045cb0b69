// Package packetsock finds the AF_PACKET sockets this process has bound to
// a network device: the ones DPDK's af_packet PMD opened, which the PMD
// does not hand out. Callers attach a socket filter to them (replypath) or
// wait on them for frames (the worker's idle wait, package dpdk). It only
// looks: it never reads, writes or closes a socket.
package packetsock

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Bound returns the file descriptors of this process's AF_PACKET sockets
// bound to netdev, in ascending order.
func Bound(netdev string) ([]int, error) {
	ifi, err := net.InterfaceByName(netdev)
	if err != nil {
		return nil, fmt.Errorf("packet sockets of %s: %w", netdev, err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, fmt.Errorf("packet sockets of %s: %w", netdev, err)
	}
	var out []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || dom != unix.AF_PACKET {
			continue
		}
		sa, err := unix.Getsockname(fd)
		ll, ok := sa.(*unix.SockaddrLinklayer)
		if err != nil || !ok || ll.Ifindex != ifi.Index {
			continue
		}
		out = append(out, fd)
	}
	return out, nil
}
