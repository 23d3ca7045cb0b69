package peek

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Default limits of a Peeker (the values of nginx's client_header_timeout
// are much longer; a load balancer's front is the place to be strict).
const (
	DefaultFirstBytes = 5 * time.Second
	DefaultHead       = 10 * time.Second
)

// Peeker waits for a complete head in a connection's receive queue without
// consuming it. The zero value uses the defaults.
type Peeker struct {
	// FirstBytes bounds the wait for the first byte, from the call.
	FirstBytes time.Duration
	// Head bounds the wait for the complete head, from the call.
	Head time.Duration
}

// PeekHTTP waits until c's receive queue holds a complete HTTP/1.x request
// head and returns it with the bytes peeked (the head, perhaps followed by
// part of a body). Nothing is consumed. On failure the error is an *Error
// whose Verdict is Bad, TooLarge, Timeout or Closed.
func (p Peeker) PeekHTTP(c *net.TCPConn) (HTTPHead, []byte, error) {
	var h HTTPHead
	b, err := p.Peek(c, func(b []byte) error {
		var err error
		h, err = ParseHTTP(b)
		return err
	})
	return h, b, err
}

// PeekClientHello does the same for a TLS ClientHello.
func (p Peeker) PeekClientHello(c *net.TCPConn) (ClientHello, []byte, error) {
	var ch ClientHello
	b, err := p.Peek(c, func(b []byte) error {
		var err error
		ch, err = ParseClientHello(b)
		return err
	})
	return ch, b, err
}

// Peek is the loop behind PeekHTTP and PeekClientHello: it peeks at most
// MaxHead bytes each time the socket reports new data and calls parse on
// all the bytes so far, until parse returns anything but a NeedMore *Error.
func (p Peeker) Peek(c *net.TCPConn, parse func([]byte) error) ([]byte, error) {
	first, head := p.FirstBytes, p.Head
	if first <= 0 {
		first = DefaultFirstBytes
	}
	if head <= 0 {
		head = DefaultHead
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, &Error{Verdict: Closed, Reason: ReasonPeerReset, Detail: err.Error()}
	}
	bp := bufs.Get().(*[MaxHead]byte)
	defer bufs.Put(bp)
	buf := bp[:]

	// Usually the head is in the queue by the time the connection is
	// accepted: one peek, and no deadline to set and clear.
	if b, done, err := peekOnce(rc, buf, parse); done {
		return b, err
	}

	start := time.Now()
	defer c.SetReadDeadline(time.Time{})
	if err := c.SetReadDeadline(start.Add(min(first, head))); err != nil {
		return nil, &Error{Verdict: Closed, Reason: ReasonPeerReset, Detail: err.Error()}
	}

	n := 0           // bytes in the queue at the last peek
	var result error // parse's verdict on buf[:n]
	var sockErr error
	closed := false
	for {
		waitingFirst := n == 0
		err := rc.Read(func(fd uintptr) bool {
			m, _, e := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case e == unix.EAGAIN || e == unix.EINTR:
				return false // wait for the next arrival
			case e != nil:
				sockErr = e
				return true
			case m == 0:
				closed = true // FIN with nothing before it
				return true
			case m == n:
				// Woken without new data: a FIN behind the data we already
				// hold, or a spurious wakeup.
				switch peerState(int(fd)) {
				case peerFIN:
					closed = true
					return true
				case peerReset:
					sockErr = unix.ECONNRESET
					return true
				}
				return false
			}
			n = m
			result = parse(buf[:n])
			if VerdictOf(result) != NeedMore {
				return true
			}
			if n == len(buf) {
				result = tooLarge("head", n)
				return true
			}
			return waitingFirst // leave once to stretch the deadline to Head
		})
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if n == 0 {
				return nil, &Error{Verdict: Timeout, Reason: ReasonFirstBytesTimeout,
					Detail: fmt.Sprintf("no byte within %v", first)}
			}
			return bytes.Clone(buf[:n]), &Error{Verdict: Timeout, Reason: ReasonHeadTimeout,
				Detail: fmt.Sprintf("head incomplete after %v (%d bytes)", time.Since(start).Round(time.Millisecond), n)}
		case err != nil:
			return bytes.Clone(buf[:n]), &Error{Verdict: Closed, Reason: ReasonPeerReset, Detail: err.Error()}
		case sockErr != nil:
			return bytes.Clone(buf[:n]), &Error{Verdict: Closed, Reason: ReasonPeerReset, Detail: "recv: " + sockErr.Error()}
		case closed:
			return bytes.Clone(buf[:n]), &Error{Verdict: Closed, Reason: ReasonPeerClosed,
				Detail: fmt.Sprintf("peer closed after %d bytes, before the head was complete", n)}
		case VerdictOf(result) != NeedMore:
			return bytes.Clone(buf[:n]), result
		}
		// The first bytes arrived: from now on the whole head has until
		// start+Head.
		if err := c.SetReadDeadline(start.Add(head)); err != nil {
			return bytes.Clone(buf[:n]), &Error{Verdict: Closed, Reason: ReasonPeerReset, Detail: err.Error()}
		}
	}
}

// bufs holds the peek buffers: a head may take MaxHead bytes, and a fresh
// 16 KiB buffer per connection was the front's largest allocation.
var bufs = sync.Pool{New: func() any { return new([MaxHead]byte) }}

// peekOnce peeks once without waiting; done says it reached a verdict
// (anything but NeedMore on the bytes there), and then b is a copy of
// what it peeked.
func peekOnce(rc syscall.RawConn, buf []byte, parse func([]byte) error) (b []byte, done bool, err error) {
	m := 0
	cerr := rc.Control(func(fd uintptr) {
		m, _, _ = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	if cerr != nil || m <= 0 {
		return nil, false, nil // nothing yet, closed, or an error: the loop tells which
	}
	if err := parse(buf[:m]); VerdictOf(err) != NeedMore {
		return bytes.Clone(buf[:m]), true, err
	}
	return nil, false, nil
}

type peer int

const (
	peerOpen peer = iota
	peerFIN
	peerReset
)

// peerState tells, from the socket's TCP state, whether the peer is still
// there, sent its FIN (CLOSE_WAIT), or reset the connection (CLOSE), when
// the receive queue still holds data in front of that news.
func peerState(fd int) peer {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	switch {
	case err != nil || ti.State == tcpClose:
		return peerReset
	case ti.State == tcpEstablished:
		return peerOpen
	}
	return peerFIN
}

// States from include/net/tcp_states.h.
const (
	tcpEstablished = 1
	tcpClose       = 7
)
