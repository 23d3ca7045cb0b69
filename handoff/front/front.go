package front

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// Request is what the front knows of a connection when it asks where it
// belongs. It has the fields of route.Request, which the node adapts.
type Request struct {
	TLS bool
	// Path is the cleaned path of the HTTP head (peek.HTTPHead.Path).
	Path string
	// Host is the HTTP Host without its port, or the TLS SNI; lowercased.
	Host string
	// Cookies are the HTTP head's cookies.
	Cookies []peek.Cookie
	// SessionNode is the node a TLS session names (Config.SessionNode),
	// "" if none.
	SessionNode string
	// Client is the client's address and port.
	Client netip.AddrPort
	// Server is the address and port the client reached (the VIP, or the
	// node's own address).
	Server netip.AddrPort
}

// RelayAck is the byte a relay listener (handoff/local) answers once it
// accepted a relayed connection's PROXY line.
const RelayAck = '+'

// Decision says who serves a connection. It has the fields of
// route.Decision plus NoMember.
type Decision struct {
	// Node serves the connection; "" or Config.Self means here.
	Node string
	// Local is true when this node serves it.
	Local bool
	// Group is the group the request matched, "" when none.
	Group string
	// Reason says why it moves when it is not local.
	Reason wire.Reason
	// NoMember is true when the request's group had no member available,
	// so it is served here; counted as no_member.
	NoMember bool
}

// Local serves connections on this node. Both methods take ownership of c;
// origin is "" for a connection that did not arrive by handoff.
type Local interface {
	ServeHTTP(c net.Conn, origin string)
	ServeTLS(c net.Conn, origin string)
}

// InlineLocal is a Local that can serve a plain HTTP connection in the
// goroutine that peeked it: TakeHTTP takes ownership of c as ServeHTTP
// does and returns what is left to do (nil: nothing), which the caller
// runs at once, in its own goroutine, once it no longer holds c. The front
// uses it for the connections it serves here, so a connection costs one
// goroutine from accept to close, not two, and its serving starts on a
// stack the peek has already grown.
type InlineLocal interface {
	Local
	TakeHTTP(c net.Conn, origin string) (serve func())
}

// Defaults for the Config durations left zero.
const (
	DefaultDrain     = time.Second
	DefaultRelayDial = time.Second
	// DefaultRelayIdle is the data plane's default flow idle timeout: a
	// relay ends no sooner than the flow it carries would.
	DefaultRelayIdle = 900 * time.Second
	// DrainBytes bounds what the front discards from a refused connection
	// before it closes it anyway.
	DrainBytes = 1 << 20
	// forceWait bounds the wait for connection goroutines once Shutdown
	// has cancelled and closed everything.
	forceWait = 2 * time.Second
)

// Config configures a Server.
type Config struct {
	// Self is this node's ID, sent in X-Shoal-Node on refusals.
	Self string
	// Peeker reads heads (its zero value uses peek's default timeouts).
	Peeker peek.Peeker
	// Decide says who serves a request; nil serves everything here.
	Decide func(Request) Decision
	// Local serves connections here; required.
	Local Local
	// Move hands an established connection to dest. On success the
	// connection is no longer this node's. On failure intact says whether
	// c is still usable. Nil disables handoff: remote connections are
	// relayed.
	Move func(ctx context.Context, c *net.TCPConn, dest string, reason wire.Reason) (intact bool, err error)
	// RelayAddr is node's relay listener; nil or !ok: no relay.
	RelayAddr func(node string) (netip.AddrPort, bool)
	// Alternate, when a decision's node could be neither moved to nor
	// relayed to (down, or not yet known dead), decides the same request
	// again without the failed node: another member of the group, or
	// local. nil or !ok: serve here.
	Alternate func(r Request, failed string) (Decision, bool)
	// Skip names nodes not worth a relay attempt now (they failed a
	// handoff lately); nil: none.
	Skip func(node string) bool
	// Source is the address relays are dialled from (the node address);
	// zero: the kernel's choice.
	Source netip.Addr
	// SessionNode names the node that issued the session a ClientHello
	// resumes ("" if none); nil: TLS sessions route nowhere in particular.
	SessionNode func(hello *peek.ClientHello) string
	// Drain bounds the discarding of a refused connection's input before
	// it closes (DefaultDrain). RelayDial bounds the relay dial
	// (DefaultRelayDial), RelayIdle a relay with no byte moving
	// (DefaultRelayIdle).
	Drain, RelayDial, RelayIdle time.Duration
	// Log, nil: discard.
	Log *slog.Logger
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("front: server closed")

// Server is the front server. Create it with New.
type Server struct {
	c      Config
	log    *slog.Logger
	ctx    context.Context // cancelled when Shutdown gives up waiting
	cancel context.CancelFunc

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	wg        sync.WaitGroup // Serve loops and connections held
	next      chan job       // to a connection goroutine waiting for one (work)
	idle      atomic.Int32   // connection goroutines waiting
	parked    sync.WaitGroup // the same, for Shutdown to wait for

	n counters
}

// phase is where a connection is in the front, for Shutdown: a moving
// connection is in the mover's hands (cancelled through ctx), every other
// one is closed when Shutdown gives up.
type phase int32

const (
	phasePeek phase = iota
	phaseMove
	phaseOther
)

type conn struct {
	c     *net.TCPConn
	phase atomic.Int32
}

// New returns a Server for c. It panics if c.Local is nil (a wiring error).
func New(c Config) *Server {
	if c.Local == nil {
		panic("front: Config.Local is nil")
	}
	if c.Drain <= 0 {
		c.Drain = DefaultDrain
	}
	if c.RelayDial <= 0 {
		c.RelayDial = DefaultRelayDial
	}
	if c.RelayIdle <= 0 {
		c.RelayIdle = DefaultRelayIdle
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		c: c, log: log, ctx: ctx, cancel: cancel,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		next:      make(chan job),
	}
}

// Serve accepts connections on ln until Shutdown (then it returns
// ErrServerClosed) or a permanent accept error. tls says whether ln is the
// HTTPS listener. Serve closes ln.
func (s *Server) Serve(ln net.Listener, tls bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	lc := s.n.listener(tls)
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.shuttingDown() {
				return ErrServerClosed
			}
			lc.acceptErrors.Add(1)
			var te interface{ Temporary() bool }
			if errors.Is(err, net.ErrClosed) || !errors.As(err, &te) || !te.Temporary() {
				return fmt.Errorf("front: accept on %v: %w", ln.Addr(), err)
			}
			// Out of descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("front: accept failed; retrying", "listener", ln.Addr(), "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
			}
			continue
		}
		backoff = 0
		lc.accepted.Add(1)
		tc, ok := nc.(*net.TCPConn)
		if !ok {
			lc.refused.add("not_tcp")
			nc.Close()
			continue
		}
		cn := &conn{c: tc}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			tc.Close()
			return ErrServerClosed
		}
		s.conns[cn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.n.active.Add(1)
		select {
		case s.next <- job{cn, tls}: // a goroutine done with its last connection
		default:
			go s.work(job{cn, tls})
		}
	}
}

// job is a connection for a connection goroutine.
type job struct {
	cn  *conn
	tls bool
}

// idleMax bounds the connection goroutines that wait for the next
// connection instead of exiting.
const idleMax = 16

// work is a connection goroutine: it runs a connection from its peek to
// its end, then waits for the next one if fewer than idleMax do, else
// exits, so a connection rarely pays for a goroutine's creation and the
// growth of its stack (the peek's frames outgrow a new goroutine's
// stack: issue 14, 4 % of a loaded node's CPU).
func (s *Server) work(j job) {
	for {
		// What handle leaves to do (serving the connection here, see
		// InlineLocal) runs after the front has let go of it.
		var parked bool
		if serve := s.hold(j.cn, j.tls); serve != nil {
			s.wg.Done()
			serve()
			parked = s.park()
		} else {
			// Parked before the front lets go: Shutdown, once its
			// wait for the held connections ends, waits for parked
			// goroutines too, so none of the front's outlives it.
			parked = s.park()
			s.wg.Done()
		}
		if !parked {
			return
		}
		select {
		case j = <-s.next:
			s.unpark()
		case <-s.ctx.Done(): // Shutdown
			s.unpark()
			return
		}
	}
}

// park counts a connection goroutine as waiting for the next connection;
// false: it exits instead (idleMax wait already, or Shutdown began).
func (s *Server) park() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.idle.Load() >= idleMax {
		return false
	}
	s.idle.Add(1)
	s.parked.Add(1)
	return true
}

// unpark ends what park began.
func (s *Server) unpark() {
	s.idle.Add(-1)
	s.parked.Done()
}

// hold runs handle while the front holds cn; the caller ends the hold
// (s.wg.Done, which Shutdown waits for).
func (s *Server) hold(cn *conn, tls bool) (serve func()) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, cn)
		s.mu.Unlock()
		s.n.active.Add(-1)
	}()
	return s.handle(cn, tls)
}

func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Shutdown stops accepting and waits for the connections the front holds
// (see the package contract). It returns nil when they all finished, or
// ctx's error when it had to cut them short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		s.parked.Wait()
		return nil
	case <-ctx.Done():
	}

	// Cut short: cancel moves and relays, close what the front holds.
	s.cancel()
	s.mu.Lock()
	for cn := range s.conns {
		if phase(cn.phase.Load()) != phaseMove {
			cn.c.Close()
		}
	}
	s.mu.Unlock()
	defer s.parked.Wait()
	select {
	case <-done:
		return ctx.Err()
	case <-time.After(forceWait):
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		return fmt.Errorf("front: %d connections still busy %v after shutdown was cut short: %w", n, forceWait, ctx.Err())
	}
}
