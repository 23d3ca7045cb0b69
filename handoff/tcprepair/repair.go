package tcprepair

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// Repair queue selectors (include/uapi/linux/tcp.h); x/sys does not name
// them.
const (
	tcpNoQueue   = 0
	tcpRecvQueue = 1
	tcpSendQueue = 2
)

// TCP option kinds for TCP_REPAIR_OPTIONS.
const (
	tcpoptMSS       = 2
	tcpoptWindow    = 3
	tcpoptSACKPerm  = 4
	tcpoptTimestamp = 8
)

// tcpi_options bits.
const (
	tcpiOptTimestamps = 1
	tcpiOptSACK       = 2
	tcpiOptWscale     = 4
)

const tcpEstablished = 1

// Error is a failed step; Step names the system call or option, for logs
// and for the counter of failed handoffs by cause.
type Error struct {
	Step string
	Err  error
}

func (e *Error) Error() string { return "tcprepair: " + e.Step + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func stepErr(step string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Step: step, Err: err}
}

func setRepair(fd, v int) error {
	return stepErr(fmt.Sprintf("TCP_REPAIR=%d", v), unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, v))
}

func setQueue(fd, q int) error {
	return stepErr(fmt.Sprintf("TCP_REPAIR_QUEUE=%d", q), unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q))
}

// getQueueSeq reads TCP_QUEUE_SEQ of the selected queue: write_seq for the
// send queue, rcv_nxt for the receive queue. The kernel returns a C int;
// the bits are the unsigned sequence number.
func getQueueSeq(fd int) (uint32, error) {
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	return uint32(v), stepErr("get TCP_QUEUE_SEQ", err)
}

// setQueueSeq sets TCP_QUEUE_SEQ, packing the unsigned sequence number into
// the C int by its bits.
func setQueueSeq(fd int, seq uint32) error {
	return stepErr("set TCP_QUEUE_SEQ", unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ, int(int32(seq))))
}

func getWindow(fd int) (wire.Window, error) {
	var b [20]byte
	n, err := getsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, b[:])
	if err != nil {
		return wire.Window{}, stepErr("get TCP_REPAIR_WINDOW", err)
	}
	if n != len(b) {
		return wire.Window{}, stepErr("get TCP_REPAIR_WINDOW", fmt.Errorf("kernel wrote %d bytes, want 20", n))
	}
	e := binary.NativeEndian
	return wire.Window{SndWl1: e.Uint32(b[0:]), SndWnd: e.Uint32(b[4:]), MaxWindow: e.Uint32(b[8:]),
		RcvWnd: e.Uint32(b[12:]), RcvWup: e.Uint32(b[16:])}, nil
}

func setWindow(fd int, w wire.Window) error {
	var b [20]byte
	e := binary.NativeEndian
	e.PutUint32(b[0:], w.SndWl1)
	e.PutUint32(b[4:], w.SndWnd)
	e.PutUint32(b[8:], w.MaxWindow)
	e.PutUint32(b[12:], w.RcvWnd)
	e.PutUint32(b[16:], w.RcvWup)
	return stepErr("set TCP_REPAIR_WINDOW", setsockoptBytes(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, b[:]))
}
