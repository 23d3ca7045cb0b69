package transfer

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Pool bounds.
const (
	// maxIdle is how many idle channel connections a peer keeps; more
	// concurrent handoffs dial more, closed when they come back.
	maxIdle = 32
	// idleTimeout retires a channel connection unused for that long.
	idleTimeout = 60 * time.Second
)

// chanConn is one channel connection to a peer. It carries one handoff at
// a time: HANDOFF, READY, COMMIT, ACCEPT (or a REFUSE).
type chanConn struct {
	c        *net.TCPConn
	r        *bufio.Reader
	peer     netip.AddrPort
	lastUsed time.Time
	stop     func() bool
}

// watch bounds the exchange by ctx: its deadline on the socket, and a
// cancellation interrupts a blocked read or write.
func (pc *chanConn) watch(ctx context.Context) {
	if pc.stop != nil {
		pc.stop()
	}
	if d, ok := ctx.Deadline(); ok {
		pc.c.SetDeadline(d)
	}
	pc.stop = context.AfterFunc(ctx, func() { pc.c.SetDeadline(time.Now()) })
}

// unwatch ends the watch; false if ctx ended first (the socket's deadline
// may have fired).
func (pc *chanConn) unwatch() bool {
	ok := pc.stop()
	pc.c.SetDeadline(time.Time{})
	return ok
}

func (pc *chanConn) close() {
	if pc.stop != nil {
		pc.stop()
	}
	pc.c.Close()
}

// alive says whether an idle connection can carry a handoff: the peer has
// not closed or reset it, and no stray byte waits on it. It catches a
// destination that restarted since, before a frame is wasted on it.
func (pc *chanConn) alive() bool {
	if pc.r.Buffered() > 0 {
		return false
	}
	rc, err := pc.c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ok = n < 0 && errors.Is(err, unix.EAGAIN)
	})
	return ok
}

// pool keeps idle channel connections per peer.
type pool struct {
	mu     sync.Mutex
	idle   map[netip.AddrPort][]*chanConn
	closed bool
	dialer net.Dialer
}

func (p *pool) init() { p.idle = map[netip.AddrPort][]*chanConn{} }

// get returns an idle connection to peer (reused) or dials one.
func (p *pool) get(ctx context.Context, peer netip.AddrPort) (pc *chanConn, reused bool, err error) {
	p.mu.Lock()
	for {
		l := p.idle[peer]
		if len(l) == 0 {
			break
		}
		pc = l[len(l)-1]
		p.idle[peer] = l[:len(l)-1]
		if time.Since(pc.lastUsed) < idleTimeout && pc.alive() {
			p.mu.Unlock()
			return pc, true, nil
		}
		pc.close()
	}
	p.mu.Unlock()
	pc, err = p.dial(ctx, peer)
	return pc, false, err
}

// dial opens a fresh connection to peer.
func (p *pool) dial(ctx context.Context, peer netip.AddrPort) (*chanConn, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", peer.String())
	if err != nil {
		return nil, err
	}
	return &chanConn{c: c.(*net.TCPConn), r: bufio.NewReaderSize(c, 4096), peer: peer}, nil
}

// put returns a connection after a complete exchange.
func (p *pool) put(pc *chanConn) {
	pc.lastUsed = time.Now()
	pc.stop = nil
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[pc.peer]) >= maxIdle {
		pc.c.Close()
		return
	}
	p.idle[pc.peer] = append(p.idle[pc.peer], pc)
}

func (p *pool) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for peer, l := range p.idle {
		for _, pc := range l {
			pc.c.Close()
		}
		delete(p.idle, peer)
	}
}

// tracker counts goroutines or operations in flight and waits, bounded,
// for none (a WaitGroup may not be added to while it is waited on).
type tracker struct {
	mu   sync.Mutex
	n    int
	zero chan struct{}
}

func (t *tracker) add() {
	t.mu.Lock()
	if t.n == 0 {
		t.zero = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	if t.n--; t.n == 0 {
		close(t.zero)
	}
	t.mu.Unlock()
}

// wait returns when none is in flight (true) or when stop fires (false).
func (t *tracker) wait(stop <-chan struct{}) bool {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return true
	}
	z := t.zero
	t.mu.Unlock()
	select {
	case <-z:
		return true
	case <-stop:
		return false
	}
}
