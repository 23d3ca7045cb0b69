package tcprepair

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// Options tune Restore.
type Options struct {
	// FreeBind allows binding a local address this namespace does not
	// hold (IP_FREEBIND).
	FreeBind bool
}

// Restored is a restored socket still in repair mode behind a drop-all
// filter: the peer hears nothing from it, and what the peer sends is
// neither taken in nor acknowledged, until Release.
type Restored struct {
	fd     int
	unsent []byte
}

// silentStep marks a Release error after which the socket is still in
// repair mode behind its filter.
const silentStep = " (still silent)"

// Silent says whether err, from Release, left the socket in repair mode
// behind its filter, so that Abort still closes it without a trace.
func Silent(err error) bool {
	var e *Error
	return errors.As(err, &e) && strings.HasSuffix(e.Step, silentStep)
}

// bufferSlack is added to twice a queue's length when a socket buffer must
// grow to take it (the kernel counts skb overhead against the buffer).
const bufferSlack = 64 << 10

// Restore recreates the connection local↔remote from st in the calling
// thread's network namespace (see the package contract for the order and
// why).
func Restore(local, remote netip.AddrPort, st *wire.TCPState, o Options) (_ *Restored, err error) {
	local, remote = unmap(local), unmap(remote)
	if local.Addr().Is4() != remote.Addr().Is4() {
		return nil, stepErr("addresses", fmt.Errorf("local %v and remote %v differ in family", local, remote))
	}
	if int(st.Unsent) > len(st.SendQueue) {
		return nil, stepErr("state", fmt.Errorf("%d unsent bytes of a %d-byte send queue", st.Unsent, len(st.SendQueue)))
	}
	family := unix.AF_INET
	if !local.Addr().Is4() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, stepErr("socket", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd) // still in repair mode: silent
		}
	}()
	// The filter first: a socket in repair mode still takes in and
	// acknowledges what the peer sends once it is connected, and until
	// the origin commits the handoff this one must not have acted.
	prog := unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return nil, stepErr("SO_ATTACH_FILTER", err)
	}
	if err := setRepair(fd, unix.TCP_REPAIR_ON); err != nil {
		return nil, err
	}
	if o.FreeBind {
		lvl, opt := unix.IPPROTO_IP, unix.IP_FREEBIND
		if family == unix.AF_INET6 {
			lvl, opt = unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
		}
		if err := unix.SetsockoptInt(fd, lvl, opt, 1); err != nil {
			return nil, stepErr("IP_FREEBIND", err)
		}
	}
	// Buffers: a queue larger than the default buffer would not fit; the
	// size the kernel doubles is what SO_*BUFFORCE takes.
	if err := growBuffer(fd, unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, len(st.SendQueue)); err != nil {
		return nil, err
	}
	if err := growBuffer(fd, unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, len(st.RecvQueue)); err != nil {
		return nil, err
	}
	// Sequence numbers of the queues' first bytes, before connect.
	if err := setQueue(fd, tcpRecvQueue); err != nil {
		return nil, err
	}
	if err := setQueueSeq(fd, st.RecvSeq); err != nil {
		return nil, err
	}
	if err := setQueue(fd, tcpSendQueue); err != nil {
		return nil, err
	}
	if err := setQueueSeq(fd, st.SendSeq); err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, sockaddr(local)); err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			err = fmt.Errorf("%w (is %v configured in this namespace? Options.FreeBind allows it anyway)", err, local.Addr())
		}
		return nil, stepErr("bind "+local.String(), err)
	}
	if err := unix.Connect(fd, sockaddr(remote)); err != nil {
		return nil, stepErr("connect "+remote.String()+" (repair mode: no SYN)", err)
	}
	if err := setOptions(fd, st); err != nil {
		return nil, err
	}
	// Receive queue first, then the part of the send queue the peer may
	// have seen; the never-sent tail waits for Release.
	if err := fillQueue(fd, tcpRecvQueue, st.RecvQueue); err != nil {
		return nil, err
	}
	sent := st.SendQueue[:len(st.SendQueue)-int(st.Unsent)]
	if err := fillQueue(fd, tcpSendQueue, sent); err != nil {
		return nil, err
	}
	if err := setQueue(fd, tcpNoQueue); err != nil {
		return nil, err
	}
	// The window after the queues: the kernel checks rcv_wup and snd_wl1
	// against rcv_nxt, which the receive queue just moved.
	if err := setWindow(fd, st.Window); err != nil {
		return nil, err
	}
	if st.Timestamps {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP, int(int32(st.TSVal))); err != nil {
			return nil, stepErr("set TCP_TIMESTAMP", err)
		}
	}
	return &Restored{fd: fd, unsent: st.SendQueue[len(sent):]}, nil
}

func growBuffer(fd, opt, force, queue int) error {
	if queue == 0 {
		return nil
	}
	cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
	if err != nil {
		return stepErr("getsockopt buffer", err)
	}
	if want := 2*queue + bufferSlack; want > cur {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, want/2); err != nil {
			return stepErr(fmt.Sprintf("SO_*BUFFORCE %d", want), err)
		}
	}
	return nil
}

func setOptions(fd int, st *wire.TCPState) error {
	opts := []unix.TCPRepairOpt{{Code: tcpoptMSS, Val: uint32(st.MSS)}}
	if st.WindowScaling {
		opts = append(opts, unix.TCPRepairOpt{Code: tcpoptWindow, Val: uint32(st.SndWscale) | uint32(st.RcvWscale)<<16})
	}
	if st.SACK {
		opts = append(opts, unix.TCPRepairOpt{Code: tcpoptSACKPerm})
	}
	if st.Timestamps {
		opts = append(opts, unix.TCPRepairOpt{Code: tcpoptTimestamp})
	}
	return stepErr("TCP_REPAIR_OPTIONS", unix.SetsockoptTCPRepairOpt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_OPTIONS, opts))
}

// fillQueue writes b into a queue under repair: the kernel appends it
// without sending anything (send queue: as transmitted and unacknowledged;
// receive queue: as received and unread).
func fillQueue(fd, q int, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := setQueue(fd, q); err != nil {
		return err
	}
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			return stepErr(fmt.Sprintf("fill queue %d (%d bytes left)", q, len(b)), err)
		}
		b = b[n:]
	}
	return nil
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// Release removes the drop-all filter, leaves repair mode and returns the
// live connection (see the package contract). The never-sent tail is
// written by deadline (zero: no deadline); it normally fits the socket's
// buffer at once. A failure before the socket left repair mode is an
// Silent error: the socket is still in repair mode behind its filter and
// Abort closes it without a trace.
func (r *Restored) Release(deadline time.Time) (*net.TCPConn, error) {
	if r.fd < 0 {
		return nil, errors.New("tcprepair: release after release or abort")
	}
	// The filter goes first, so the peer's answer to the window probe that
	// leaving repair mode sends is taken in. In between, a segment meets
	// a socket in repair mode: it may be acknowledged, which is harmless
	// now that the origin committed.
	if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil {
		return nil, stepErr("SO_DETACH_FILTER"+silentStep, err)
	}
	if err := unix.SetsockoptInt(r.fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
		prog := unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
		if aerr := unix.SetsockoptSockFprog(r.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); aerr != nil {
			return nil, fmt.Errorf("%w; and re-attaching the filter: %v", err, aerr)
		}
		return nil, stepErr("TCP_REPAIR=0"+silentStep, err)
	}
	// Leaving repair mode sets the socket's address reuse to none (the
	// kernel's TCP_REPAIR_OFF), unlike every socket a listener accepts:
	// its TIME_WAIT would then keep a restarted node from binding its
	// service port for a minute. Give it the reuse an accepted socket has.
	if err := unix.SetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(r.fd)
		r.fd = -1
		return nil, stepErr("SO_REUSEADDR", err)
	}
	f := os.NewFile(uintptr(r.fd), "tcprepair")
	r.fd = -1
	c, err := net.FileConn(f) // a dup registered with the poller
	f.Close()
	if err != nil {
		return nil, stepErr("FileConn", err)
	}
	tc := c.(*net.TCPConn)
	if len(r.unsent) > 0 {
		tc.SetWriteDeadline(deadline)
		_, err := tc.Write(r.unsent)
		tc.SetWriteDeadline(time.Time{})
		if err != nil {
			tc.Close()
			return nil, stepErr("write the unsent tail", err)
		}
	}
	return tc, nil
}

// Abort closes a restored socket without a sound (it is still in repair
// mode).
func (r *Restored) Abort() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}
