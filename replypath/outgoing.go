package replypath

import (
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/internal/packetsock"
)

// outgoingFilter is a classic BPF socket filter that keeps every frame but
// those the host itself sends (packet type PACKET_OUTGOING).
func outgoingFilter() ([]unix.SockFilter, error) {
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipFalse: 1},
		bpf.RetConstant{Val: 0},
		bpf.RetConstant{Val: 0x40000},
	})
	if err != nil {
		return nil, err
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// IgnoreOutgoing attaches outgoingFilter to every AF_PACKET socket of this
// process bound to netdev, and returns how many it found.
//
// A packet socket sees the frames its host sends as well as those it
// receives. DPDK's af_packet PMD opens its socket without
// PACKET_IGNORE_OUTGOING (and joins a fanout group, where that option
// cannot be set afterwards), so in kernel mode every super-packet the
// kernel sends through the netdev would be copied into the PMD's ring and
// read by the worker only to be dropped: one dropped frame per reply
// segment, and in the lab about a fifth of the throughput
// (docs/replypath.md). The filter drops them in the kernel, before the
// copy.
func IgnoreOutgoing(netdev string) (int, error) {
	prog, err := outgoingFilter()
	if err != nil {
		return 0, err
	}
	fds, err := packetsock.Bound(netdev)
	if err != nil {
		return 0, fmt.Errorf("replypath: %w", err)
	}
	n := 0
	for _, fd := range fds {
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
			return n, fmt.Errorf("replypath: filter on the packet socket of %s: %w", netdev, err)
		}
		n++
	}
	return n, nil
}
