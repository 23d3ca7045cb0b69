package tcprepair

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// Frozen is a connection in repair mode on the origin.
type Frozen struct {
	conn       *net.TCPConn
	rc         syscall.RawConn
	local, rem netip.AddrPort
	window     wire.Window // as it was at the freeze, before Freeze closed the send window
	done       bool
}

// dropAll is the classic BPF program "ret #0": the socket accepts nothing.
var dropAll = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// Freeze silences c (see the package contract). On error c is left as it
// was.
func Freeze(c *net.TCPConn) (*Frozen, error) {
	local, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return nil, stepErr("local address", err)
	}
	rem, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return nil, stepErr("remote address", err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, stepErr("SyscallConn", err)
	}
	f := &Frozen{conn: c, rc: rc, local: unmap(local), rem: unmap(rem)}
	err = f.control(func(fd int) error {
		prog := unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			return stepErr("SO_ATTACH_FILTER", err)
		}
		if err := setRepair(fd, unix.TCP_REPAIR_ON); err != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
			return err
		}
		// Close the send window. In repair mode the kernel's timers still
		// run, and a tail loss probe, a paced or TSQ-deferred write sends
		// never-sent data while the window allows: bytes the client then
		// holds and acknowledges but Dump (after this) and so the
		// destination count as never sent. The destination drops every ACK
		// beyond its snd_nxt, and with its congestion window full of
		// restored in-flight data it cannot send past it: a dead
		// connection, until the client's keepalive resets it. With no
		// window the origin only retransmits what it sent, harmless
		// duplicates.
		w, err := getWindow(fd)
		if err == nil {
			closed := w
			closed.SndWnd = 0
			err = setWindow(fd, closed)
		}
		if err != nil {
			setRepair(fd, unix.TCP_REPAIR_OFF)
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
			return err
		}
		f.window = w
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Local and Remote are the connection's addresses: the VIP and the client.
func (f *Frozen) Local() netip.AddrPort  { return f.local }
func (f *Frozen) Remote() netip.AddrPort { return f.rem }

func (f *Frozen) control(fn func(fd int) error) error {
	var ferr error
	if err := f.rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return stepErr("control", err)
	}
	return ferr
}

// Dump reads the frozen connection's state.
func (f *Frozen) Dump() (wire.TCPState, error) {
	var st wire.TCPState
	err := f.control(func(fd int) error {
		var err error
		st, err = dump(fd)
		return err
	})
	st.Window = f.window // the client's window, not the closed one
	return st, err
}

// dump reads the state of a socket in repair mode.
func dump(fd int) (wire.TCPState, error) {
	var st wire.TCPState
	err := func() error {
		// The first 8 bytes of struct tcp_info: state, ca_state,
		// retransmits, probes, backoff, options, then the bit fields
		// snd_wscale:4, rcv_wscale:4 (x/sys hides them in padding).
		var ti [8]byte
		if _, err := getsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_INFO, ti[:]); err != nil {
			return stepErr("TCP_INFO", err)
		}
		if ti[0] != tcpEstablished {
			return stepErr("TCP_INFO", fmt.Errorf("connection in TCP state %d; only ESTABLISHED (1) moves", ti[0]))
		}
		opts := ti[5]
		st.SACK = opts&tcpiOptSACK != 0
		st.Timestamps = opts&tcpiOptTimestamps != 0
		if opts&tcpiOptWscale != 0 {
			st.WindowScaling = true
			st.SndWscale, st.RcvWscale = ti[6]&0x0f, ti[6]>>4
		}
		mss, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_MAXSEG) // mss_clamp under repair
		if err != nil {
			return stepErr("TCP_MAXSEG", err)
		}
		st.MSS = uint16(mss)
		if st.Timestamps {
			ts, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
			if err != nil {
				return stepErr("get TCP_TIMESTAMP", err)
			}
			st.TSVal = uint32(ts)
		}
		if st.Window, err = getWindow(fd); err != nil {
			return err
		}
		outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return stepErr("SIOCOUTQ", err)
		}
		unsent, err := unix.IoctlGetInt(fd, unix.SIOCOUTQNSD)
		if err != nil {
			return stepErr("SIOCOUTQNSD", err)
		}
		inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil {
			return stepErr("SIOCINQ", err)
		}
		if outq > wire.MaxQueue || inq > wire.MaxQueue {
			return stepErr("queues", fmt.Errorf("send queue %d and receive queue %d bytes; at most %d each move", outq, inq, wire.MaxQueue))
		}
		st.Unsent = uint32(unsent)
		var seq uint32
		if seq, st.SendQueue, err = peekQueue(fd, tcpSendQueue, outq); err != nil {
			return err
		}
		st.SendSeq = seq - uint32(len(st.SendQueue))
		if seq, st.RecvQueue, err = peekQueue(fd, tcpRecvQueue, inq); err != nil {
			return err
		}
		st.RecvSeq = seq - uint32(len(st.RecvQueue))
		return setQueue(fd, tcpNoQueue)
	}()
	return st, err
}

// peekQueue selects a queue and reads its sequence number and its n bytes
// without consuming them.
func peekQueue(fd, q, n int) (uint32, []byte, error) {
	if err := setQueue(fd, q); err != nil {
		return 0, nil, err
	}
	seq, err := getQueueSeq(fd)
	if err != nil {
		return 0, nil, err
	}
	if n == 0 {
		return seq, nil, nil
	}
	buf := make([]byte, n)
	got, _, err := unix.Recvfrom(fd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	if err != nil {
		return 0, nil, stepErr(fmt.Sprintf("peek queue %d", q), err)
	}
	if got != n {
		return 0, nil, stepErr(fmt.Sprintf("peek queue %d", q), fmt.Errorf("read %d of %d bytes", got, n))
	}
	return seq, buf, nil
}

// Close closes the frozen socket: in repair mode the kernel sends neither
// FIN nor RST. Call it once the destination has accepted.
func (f *Frozen) Close() error {
	if f.done {
		return nil
	}
	f.done = true
	return f.conn.Close()
}

// Thaw gives up the handoff: the connection continues on this node.
func (f *Frozen) Thaw() error {
	if f.done {
		return errors.New("tcprepair: thaw after close")
	}
	return f.control(func(fd int) error {
		// The window Freeze closed: nothing was received since, so it
		// still passes the kernel's checks against rcv_nxt.
		if err := setWindow(fd, f.window); err != nil {
			return err
		}
		if err := setRepair(fd, unix.TCP_REPAIR_OFF); err != nil {
			return err
		}
		return stepErr("SO_DETACH_FILTER", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0))
	})
}
