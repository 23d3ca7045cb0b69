package tcprepair

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// Options tune Restore.
type Options struct {
	// FreeBind allows binding a local address this namespace does not
	// hold (IP_FREEBIND).
	FreeBind bool
}

// Restored is a restored socket still in repair mode: the peer hears
// nothing from it until Release.
type Restored struct {
	fd     int
	unsent []byte
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

// Release leaves repair mode and returns the live connection (see the
// package contract).
func (r *Restored) Release() (*net.TCPConn, error) {
	if r.fd < 0 {
		return nil, errors.New("tcprepair: release after release or abort")
	}
	if err := setRepair(r.fd, unix.TCP_REPAIR_OFF); err != nil {
		return nil, err
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
		if _, err := tc.Write(r.unsent); err != nil {
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
