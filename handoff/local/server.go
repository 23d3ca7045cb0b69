package local

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-lb/shoal/handoff/objcache"
)

// Config is what a node's local server needs. Self is required; the rest
// may be zero.
type Config struct {
	// Self is this node's ID, written in X-Shoal-Node.
	Self string
	// Content is the static files root; "" serves none (404).
	Content string
	// SmallFiles bounds the in-memory cache of Content's small files
	// (handoff/objcache; zero: its defaults). MaxFile < 0 turns it off.
	SmallFiles objcache.Options
	// Upstreams maps a group to its local upstream: "host:port" or
	// "unix:/path". Requests of that group are reverse-proxied there.
	Upstreams map[string]string
	// SessionCookie names the persistent-session cookie ("" = none).
	SessionCookie string
	// TLS terminates HTTPS for ServeTLS and relayed TLS; nil refuses them.
	// It is used as given, not copied, so what the caller sets on it later
	// (tickets.Configure, certificate reloads) takes effect. Without "h2"
	// in NextProtos every connection speaks HTTP/1.1.
	TLS *tls.Config
	// Group says which group a request belongs to ("" = none). Nil: none.
	Group func(*http.Request) (group string)
	// Serves says whether this node serves a group from Content. A group
	// with an upstream here is always served. Nil: every group is served
	// (nothing is ever forwarded).
	Serves func(group string) bool
	// Forward names the node, and its relay listener, that should serve a
	// request of a group this node does not serve. Nil or !ok: serve here.
	Forward func(*http.Request) (node string, addr netip.AddrPort, ok bool)
	// OriginOf maps the address a relayed connection comes from to the
	// cluster member that relays it. Nil or !ok: the connection is refused
	// (only members relay).
	OriginOf func(remote netip.Addr) (node string, ok bool)
	// Published, if set, says whether a GET or HEAD request's path is
	// content published by the content distribution system (versions/)
	// and, when this node serves a version of it, opens that version:
	// served with X-Shoal-Version and its ETag (conditional requests and
	// ranges as for any file). A path published but not served here is
	// forwarded (Forward), or answered 503 with Retry-After.
	Published func(r *http.Request) Published
	// ReadHeaderTimeout bounds the wait for a connection's first request
	// head, IdleTimeout the wait for the next request on a kept-alive
	// connection, in net/http and in the fast loop alike. Zero: the
	// defaults (DefaultReadHeaderTimeout, DefaultIdleTimeout).
	ReadHeaderTimeout, IdleTimeout time.Duration
	// NoFastPath sends every connection straight to net/http, without
	// the fast loop that answers GET and HEAD requests of cached small
	// files itself (fast.go), kept alive or closing. The responses are
	// the same but for Date; the fast loop costs less CPU a request.
	NoFastPath bool
	// Source is the address forwarded requests are dialled from (the node
	// address, which the far node's relay listener knows); zero: the
	// kernel's choice.
	Source netip.Addr
	// HandshakeTimeout bounds a TLS handshake and, on the relay listener,
	// the wait for the first byte after the PROXY line. Default 10 s.
	HandshakeTimeout time.Duration
	// Log receives warnings; nil discards.
	Log *slog.Logger
}

// PublishedStatus says where a published path is served.
type PublishedStatus int

// Where a path is served.
const (
	NotPublished       PublishedStatus = iota // not published content: served as any path
	PublishedHere                             // this node serves a version: Published.File
	PublishedElsewhere                        // published, but this node serves no version now
)

// Published is Config.Published's answer.
type Published struct {
	Status PublishedStatus
	// For PublishedHere: the open file (the server closes it), its
	// version, entity tag, modification time and name (for the
	// Content-Type by extension).
	File    *os.File
	Version uint64
	ETag    string
	ModTime time.Time
	Name    string
}

// Defaults of Config.ReadHeaderTimeout and Config.IdleTimeout.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
)

// ProxyLineTimeout bounds the wait for a relayed connection's PROXY line.
const ProxyLineTimeout = 2 * time.Second

// Server serves connections where they are; see the package contract.
type Server struct {
	c        Config
	log      *slog.Logger
	errLog   *log.Logger // net/http's and httputil's own complaints, as warnings
	srv      *http.Server
	ln       *chanListener
	files    http.Handler
	cache    *objcache.Cache // small files of Content; nil: none
	upstream map[string]*upstream
	n        counters

	ctx    context.Context // canceled by Shutdown: aborts handshakes and PROXY reads
	cancel context.CancelFunc
	wg     sync.WaitGroup // connections not yet given to net/http, relay accept loops

	mu     sync.Mutex
	relays map[net.Listener]struct{}
	closed bool
	fast   map[*fastConn]struct{} // connections in the fast loop (fast.go)

	shutting atomic.Bool // Shutdown has begun: the fast loop takes no further request
}

// New checks c and starts the server's HTTP machinery (no listener of its
// own: connections arrive through ServeHTTP, ServeTLS and ServeRelay).
func New(c Config) (*Server, error) {
	if !validNode(c.Self) {
		return nil, fmt.Errorf("local: self %q is not a node ID", c.Self)
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.ReadHeaderTimeout < 0 || c.IdleTimeout < 0 {
		return nil, fmt.Errorf("local: negative timeout (read header %v, idle %v)", c.ReadHeaderTimeout, c.IdleTimeout)
	}
	lg := c.Log
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	s := &Server{c: c, log: lg, errLog: slog.NewLogLogger(lg.Handler(), slog.LevelWarn), ln: newChanListener(), upstream: map[string]*upstream{}, relays: map[net.Listener]struct{}{}, fast: map[*fastConn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for g, addr := range c.Upstreams {
		u, err := newUpstream(s, g, addr)
		if err != nil {
			return nil, err
		}
		s.upstream[g] = u
	}
	if c.Content != "" {
		s.files = http.FileServer(http.Dir(c.Content))
		if c.SmallFiles.MaxFile >= 0 {
			s.cache = objcache.New(c.Content, c.SmallFiles)
		}
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.handle),
		ReadHeaderTimeout: cmp.Or(c.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       cmp.Or(c.IdleTimeout, DefaultIdleTimeout),
		ConnContext:       connContext,
		ConnState:         s.connState,
		ErrorLog:          s.errLog,
	}
	go s.srv.Serve(s.ln) // returns at Shutdown
	return s, nil
}

// ServeHTTP serves c as plain HTTP; it takes ownership of c. Bytes already
// in c's receive queue (a peeked request head) are the first request.
// origin != "" marks a connection handed off by that node.
func (s *Server) ServeHTTP(c net.Conn, origin string) {
	if serve := s.TakeHTTP(c, origin); serve != nil {
		go serve()
	}
}

// TakeHTTP is ServeHTTP for a caller with a goroutine to lend
// (front.InlineLocal): it takes ownership of c and returns the fast loop,
// which the caller runs at once (Shutdown waits for it from now on), or
// nil when c went to net/http or was closed.
func (s *Server) TakeHTTP(c net.Conn, origin string) (serve func()) {
	s.n.conns(origin, "").Add(1)
	cc := &conn{Conn: c, meta: &connMeta{origin: origin}}
	if s.cache == nil || s.c.NoFastPath {
		s.give(cc)
		return nil
	}
	if !s.track() {
		c.Close()
		return nil
	}
	return func() { s.serveFast(cc) }
}

// ServeTLS terminates TLS on c, then serves HTTP; it takes ownership of c.
func (s *Server) ServeTLS(c net.Conn, origin string) {
	s.n.conns(origin, "").Add(1)
	if !s.track() {
		c.Close()
		return
	}
	go func() {
		defer s.wg.Done()
		s.serveTLS(&conn{Conn: c, meta: &connMeta{origin: origin}})
	}()
}

// serveTLS runs the handshake under HandshakeTimeout, then gives the TLS
// connection to net/http (which sees the finished handshake and fills
// Request.TLS).
func (s *Server) serveTLS(c *conn) {
	if s.c.TLS == nil {
		s.n.TLSFailures.Add(1)
		s.log.Debug("TLS connection but no certificate configured", "client", c.RemoteAddr())
		c.Close()
		return
	}
	tc := tls.Server(c, s.c.TLS)
	ctx, cancel := context.WithTimeout(s.ctx, s.c.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.n.TLSFailures.Add(1)
		s.log.Debug("TLS handshake", "client", c.RemoteAddr(), "err", err)
		tc.Close()
		return
	}
	s.give(tc)
}

// track registers one connection (or loop) that Shutdown must wait for;
// false once shut down.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// give hands c to net/http, or closes it when the server is shut down.
func (s *Server) give(c net.Conn) {
	select {
	case s.ln.conns <- c:
	case <-s.ln.done:
		c.Close()
	}
}

// Shutdown stops the relay listeners and new connections, aborts TLS
// handshakes and PROXY reads in progress, closes idle connections and
// waits, until ctx ends, for requests in flight to finish. After ctx ends
// the remaining connections are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.relays {
		ln.Close()
	}
	s.mu.Unlock()
	s.shutting.Store(true)
	s.closeFast(false) // the idle ones; the busy ones stop after their response
	s.cancel()
	s.ln.Close()               // also when net/http has not yet started serving it
	err := s.srv.Shutdown(ctx) // then drains
	if err != nil {
		s.srv.Close()
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	// As net/http's Shutdown polls its connections, the fast loop's are
	// looked at again while they drain: one that has sent nothing becomes
	// idle after fastNewIdle.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			s.closeFast(false)
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			s.closeFast(true)
			break wait
		}
	}
	for _, u := range s.upstream {
		u.tr.CloseIdleConnections()
	}
	return err
}

// connMeta is what a connection carries into its requests.
type connMeta struct {
	origin string // handed off by this node ("" = accepted here)
	relay  string // relayed by this node (ServeRelay); never forwarded again

	mu      sync.Mutex
	forward map[netip.AddrPort]*http.Transport // one relay connection per far node, for this client connection
}

// conn is a connection with its meta, and, for a relayed one, the client
// and VIP named by the PROXY line and the bytes read past it.
type conn struct {
	net.Conn
	meta          *connMeta
	buf           []byte // read past the PROXY line, served first
	remote, local net.Addr
}

func (c *conn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// ReadFrom keeps sendfile/splice for static files: net/http uses it when
// the connection has it.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite lets net/http half-close before closing, as on a TCPConn.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

func (c *conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

type metaKey struct{}

func metaOf(c net.Conn) *connMeta {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if w, ok := c.(*conn); ok {
		return w.meta
	}
	return nil
}

func connContext(ctx context.Context, c net.Conn) context.Context {
	if m := metaOf(c); m != nil {
		ctx = context.WithValue(ctx, metaKey{}, m)
	}
	return ctx
}

// connState closes a connection's forwarding transports with it.
func (s *Server) connState(c net.Conn, st http.ConnState) {
	if st != http.StateClosed && st != http.StateHijacked {
		return
	}
	if m := metaOf(c); m != nil {
		m.mu.Lock()
		for _, tr := range m.forward {
			tr.CloseIdleConnections()
		}
		m.forward = nil
		m.mu.Unlock()
	}
}

// chanListener is the net.Listener net/http serves: connections arrive on
// a channel from ServeHTTP, ServeTLS and ServeRelay.
type chanListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return chanAddr{} }

type chanAddr struct{}

func (chanAddr) Network() string { return "shoal" }
func (chanAddr) String() string  { return "handoff/local" }

// addrPort reads a net.Addr as an AddrPort (unmapped).
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	case nil:
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
