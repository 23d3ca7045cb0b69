package front

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// The fakes route by path (HTTP) or by SNI (TLS): the first path segment
// or the SNI's first label names a behaviour.
//
//	local    served here
//	nomember the group had no member: served here
//	n2       moved (the fake mover serves it as n2 would)
//	n3       move refused (intact), relayed to a live relay listener
//	n4       move lost
//	n5       move refused, relay listener down: served here
//	n6       move refused, no relay address: served here
//
// Each server (local, n2 after a move, relay) answers with a body naming
// itself, the path, and the SHA-256 and length of the request body, so the
// client checks who served it and that no byte was lost.

func testCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "front.test"},
		DNSNames: []string{"*.example.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serveOne reads one request from c with net/http and answers it.
func serveOne(c net.Conn, who string, check func(*http.Request) error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, req.Body)
	status, body := 200, fmt.Sprintf("%s %s %x %d\n", who, req.URL.Path, h.Sum(nil), n)
	if err == nil && check != nil {
		err = check(req)
	}
	if err != nil {
		status, body = 500, who+": "+err.Error()+"\n"
	}
	fmt.Fprintf(c, "HTTP/1.1 %d X\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", status, len(body), body)
}

type fakeLocal struct{ tls *tls.Config }

func (l *fakeLocal) ServeHTTP(c net.Conn, origin string) {
	defer c.Close()
	serveOne(c, "local", nil)
}

func (l *fakeLocal) ServeTLS(c net.Conn, origin string) {
	defer c.Close()
	serveOne(tls.Server(c, l.tls), "local-tls", nil)
}

// relayServer is a fake relay listener: it checks the PROXY line against
// the X-Client header the test client sends (its own address) and the
// front's listener address, then serves HTTP or TLS.
type relayServer struct {
	ln  net.Listener
	tls *tls.Config
	wg  sync.WaitGroup
	// vip is the front listener's address by port, to check the line's
	// destination.
	vips map[int]netip.AddrPort
}

func (r *relayServer) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := c.Write([]byte{RelayAck}); err != nil {
				return
			}
			f := strings.Fields(line)
			var src, dst netip.AddrPort
			if len(f) == 6 && f[0] == "PROXY" && f[1] == "TCP4" && strings.HasSuffix(line, "\r\n") {
				src, _ = netip.ParseAddrPort(f[2] + ":" + f[4])
				dst, _ = netip.ParseAddrPort(f[3] + ":" + f[5])
			}
			check := func(req *http.Request) error {
				if want := r.vips[int(dst.Port())]; !src.IsValid() || req.Header.Get("X-Client") != src.String() || dst != want {
					return fmt.Errorf("PROXY line %q: want client %s and VIP %s", line, req.Header.Get("X-Client"), want)
				}
				return nil
			}
			bc := &bufConn{Conn: c, r: br}
			if first, err := br.Peek(1); err == nil && first[0] == 0x16 {
				serveOne(tls.Server(bc, r.tls), "relay-tls", check)
				return
			}
			serveOne(bc, "relay", check)
		}()
	}
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

var (
	errRefused = errors.New("fake move: refused")
	errLost    = errors.New("fake move: timeout after HANDOFF")
)

type harness struct {
	t         *testing.T
	srv       *Server
	http, tls string // front listener addresses
	relay     *relayServer
	deadRelay netip.AddrPort
	served    chan error // Serve's results
	reqs      sync.Map   // path or SNI → Request seen by Decide
	clientTLS *tls.Config
}

func newHarness(t *testing.T, tune func(*Config)) *harness {
	t.Helper()
	cert := testCert(t)
	scfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	h := &harness{t: t, served: make(chan error, 2),
		clientTLS: &tls.Config{InsecureSkipVerify: true}}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	hl, tl, rl, dead := listen(), listen(), listen(), listen()
	h.http, h.tls = hl.Addr().String(), tl.Addr().String()
	h.deadRelay = dead.Addr().(*net.TCPAddr).AddrPort()
	dead.Close() // a port nobody listens on
	h.relay = &relayServer{ln: rl, tls: scfg, vips: map[int]netip.AddrPort{
		hl.Addr().(*net.TCPAddr).Port: hl.Addr().(*net.TCPAddr).AddrPort(),
		tl.Addr().(*net.TCPAddr).Port: tl.Addr().(*net.TCPAddr).AddrPort(),
	}}
	h.relay.wg.Add(1)
	go h.relay.serve()

	cfg := Config{
		Self:   "n1",
		Peeker: peek.Peeker{FirstBytes: 5 * time.Second, Head: 5 * time.Second},
		Decide: func(r Request) Decision {
			key := r.Host
			if !r.TLS {
				key = r.Path
			}
			h.reqs.Store(key, r)
			if r.SessionNode != "" {
				return Decision{Node: r.SessionNode, Reason: wire.ReasonSession}
			}
			name := strings.Trim(key, "/")
			if r.TLS {
				name, _, _ = strings.Cut(key, ".")
			} else {
				name, _, _ = strings.Cut(name, "/")
			}
			switch name {
			case "nomember":
				return Decision{Local: true, Node: "n1", Group: "g", NoMember: true}
			case "n2", "n3", "n4", "n5", "n6":
				return Decision{Node: name, Group: "g", Reason: wire.ReasonGroup}
			}
			return Decision{Local: true, Node: "n1"}
		},
		Local: &fakeLocal{tls: scfg},
		Move: func(ctx context.Context, c *net.TCPConn, dest string, reason wire.Reason) (bool, error) {
			switch dest {
			case "n2": // the destination serves it; the origin's socket is gone
				go func() { defer c.Close(); serveOne(c, "n2-handoff", nil) }()
				return true, nil
			case "n4":
				return false, errLost
			}
			return true, errRefused
		},
		RelayAddr: func(node string) (netip.AddrPort, bool) {
			switch node {
			case "n3":
				return rl.Addr().(*net.TCPAddr).AddrPort(), true
			case "n5":
				return h.deadRelay, true
			}
			return netip.AddrPort{}, false
		},
		SessionNode: func(hello *peek.ClientHello) string {
			if strings.HasPrefix(hello.SNI, "session-n3.") {
				return "n3"
			}
			return ""
		},
	}
	if tune != nil {
		tune(&cfg)
	}
	h.srv = New(cfg)
	go func() { h.served <- h.srv.Serve(hl, false) }()
	go func() { h.served <- h.srv.Serve(tl, true) }()
	t.Cleanup(func() {
		h.shutdown(5 * time.Second)
		rl.Close()
		h.relay.wg.Wait()
	})
	return h
}

// shutdown shuts the server down once and checks both Serve loops ended.
func (h *harness) shutdown(d time.Duration) error {
	if h.served == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := h.srv.Shutdown(ctx)
	for range 2 {
		if e := <-h.served; !errors.Is(e, ErrServerClosed) {
			h.t.Errorf("Serve returned %v, want ErrServerClosed", e)
		}
	}
	h.served = nil
	return err
}

// result is what a client saw.
type result struct {
	status     int
	header     http.Header
	close      bool // Connection: close
	body       string
	err        error // reading the response, or the connection after it
	elapsed    time.Duration
	clientAddr string
}

// exchange dials addr, writes what write writes (given the client's own
// address), then reads one response and the connection to its end. A
// reset at any point is in err.
func exchange(addr string, write func(c *net.TCPConn, self string) error) result {
	start := time.Now()
	nc, err := net.Dial("tcp4", addr)
	if err != nil {
		return result{err: err}
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	self := c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if err := write(c, self); err != nil {
		return result{err: fmt.Errorf("write: %w", err), clientAddr: self}
	}
	return readAll(c, start, self)
}

func readAll(r io.Reader, start time.Time, self string) result {
	res := result{clientAddr: self}
	br := bufio.NewReader(r)
	resp, err := http.ReadResponse(br, nil)
	res.elapsed = time.Since(start)
	if err != nil {
		res.err = fmt.Errorf("response: %w", err)
		return res
	}
	b, err := io.ReadAll(resp.Body)
	res.status, res.header, res.body, res.close = resp.StatusCode, resp.Header, string(b), resp.Close
	if err != nil {
		res.err = fmt.Errorf("body: %w", err)
		return res
	}
	// Connection: close: the server's FIN must follow, not a reset.
	if _, err := io.Copy(io.Discard, br); err != nil {
		res.err = fmt.Errorf("after the response: %w", err)
	}
	return res
}

func get(path string) func(c *net.TCPConn, self string) error {
	return func(c *net.TCPConn, self string) error {
		_, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: Front.Example.test:80\r\nCookie: a=1; shoal_session=n2~x\r\nX-Client: %s\r\n\r\n", path, self)
		return err
	}
}

func post(path string, body []byte) func(c *net.TCPConn, self string) error {
	return func(c *net.TCPConn, self string) error {
		head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: front.example.test\r\nX-Client: %s\r\nContent-Length: %d\r\n\r\n", path, self, len(body))
		_, err := c.Write(append([]byte(head), body...))
		return err
	}
}

func raw(b []byte) func(c *net.TCPConn, self string) error {
	return func(c *net.TCPConn, _ string) error { _, err := c.Write(b); return err }
}

func wantServed(t *testing.T, r result, who, path string, body []byte) {
	t.Helper()
	sum := sha256.Sum256(body)
	want := fmt.Sprintf("%s %s %x %d\n", who, path, sum, len(body))
	if r.err != nil || r.status != 200 || r.body != want {
		t.Fatalf("got %d %q (err %v), want 200 %q", r.status, r.body, r.err, want)
	}
}

// waitFor polls cond until it holds or 5 s pass (counters move just
// after the client sees the outcome).
func waitFor(t *testing.T, what string, cond func(Stats) bool) Stats {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st := h0(t)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, st)
		}
	}
}

var currentHarness sync.Map // *testing.T → *harness

func h0(t *testing.T) Stats {
	h, _ := currentHarness.Load(t)
	return h.(*harness).srv.Stats()
}

func start(t *testing.T, tune func(*Config)) *harness {
	h := newHarness(t, tune)
	currentHarness.Store(t, h)
	t.Cleanup(func() { currentHarness.Delete(t) })
	return h
}

// TestLocalGetsUnreadHead: a complete head (and the body right behind it)
// is still in the socket when Local reads it with net/http, and Decide saw
// the cleaned path, the Host without port lowercased, the cookies and the
// client's address.
func TestLocalGetsUnreadHead(t *testing.T) {
	h := start(t, nil)
	body := bytes.Repeat([]byte("shoal front "), 1<<16) // 768 KiB behind the head
	r := exchange(h.http, post("/up/../upload", body))
	wantServed(t, r, "local", "/up/../upload", body)

	r = exchange(h.http, get("/local/a//b/../c.html?q=1"))
	wantServed(t, r, "local", "/local/a//b/../c.html", nil)
	v, ok := h.reqs.Load("/local/a/c.html")
	if !ok {
		t.Fatal("Decide did not see the cleaned path /local/a/c.html")
	}
	req := v.(Request)
	if req.TLS || req.Host != "front.example.test" || req.Client.String() != r.clientAddr ||
		len(req.Cookies) != 2 || req.Cookies[1] != (peek.Cookie{Name: "shoal_session", Value: "n2~x"}) {
		t.Fatalf("Decide saw %+v (client %s)", req, r.clientAddr)
	}
	st := h.srv.Stats()
	if st.HTTP.Accepted != 2 || st.HTTP.Complete != 2 || st.Decisions.Local != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestFINAfterHead: a client that half-closes right after its head still
// gets its answer: the request is complete.
func TestFINAfterHead(t *testing.T) {
	h := start(t, nil)
	r := exchange(h.http, func(c *net.TCPConn, self string) error {
		if err := get("/local/fin")(c, self); err != nil {
			return err
		}
		return c.CloseWrite()
	})
	wantServed(t, r, "local", "/local/fin", nil)
}

func wantAnswer(t *testing.T, r result, status int, reason string) {
	t.Helper()
	if r.err != nil || r.status != status || r.header.Get("X-Shoal-Node") != "n1" || !r.close ||
		!strings.Contains(r.body, reason) {
		t.Fatalf("got %d %v %q (err %v), want %d naming %s", r.status, r.header, r.body, r.err, status, reason)
	}
}

// TestRefusalsAnsweredWithoutReset: 431, 400 and the peer's own close are
// each counted; the answered ones reach the client whole, followed by a
// FIN, although the client's bytes were never read (closing with them
// unread would have sent RST).
func TestRefusalsAnsweredWithoutReset(t *testing.T) {
	h := start(t, nil)
	big := "GET /local HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 17<<10) + "\r\n\r\n"
	wantAnswer(t, exchange(h.http, raw([]byte(big))), 431, "too_large")
	// Garbage followed by more than a socket's worth of bytes.
	junk := append([]byte("\x16\x03\x01\x02\x00"), bytes.Repeat([]byte{0xee}, 256<<10)...)
	wantAnswer(t, exchange(h.http, raw(junk)), 400, "method")
	wantAnswer(t, exchange(h.http, raw([]byte("GET /x HTTP/1.1\r\nHost : a\r\n\r\n"))), 400, "header_line")

	// FIN before the head is complete: counted, not answered.
	r := exchange(h.http, func(c *net.TCPConn, _ string) error {
		c.Write([]byte("GET /x HTTP/1.1\r\nHo"))
		return c.CloseWrite()
	})
	if r.err == nil || !errors.Is(r.err, io.ErrUnexpectedEOF) && !errors.Is(r.err, io.EOF) {
		t.Fatalf("a client that closed first got %+v, want EOF and no answer", r)
	}
	// RST before the head is complete: counted.
	c, err := net.Dial("tcp4", h.http)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET /x HTTP/1.1\r\n"))
	time.Sleep(20 * time.Millisecond)
	c.(*net.TCPConn).SetLinger(0)
	c.Close()

	st := waitFor(t, "refusals counted", func(st Stats) bool {
		return st.HTTP.Refused["closed"] == 2 && st.HTTP.Reasons["peer_reset"] == 1
	})
	if st.HTTP.Refused["too_large"] != 1 || st.HTTP.Refused["bad"] != 2 || st.HTTP.Reasons["peer_closed"] != 1 ||
		st.HTTP.Reasons["method"] != 1 || st.HTTP.Reasons["header_line"] != 1 ||
		st.HTTP.Answered["431"] != 1 || st.HTTP.Answered["400"] != 2 || len(st.HTTP.Answered) != 2 ||
		st.HTTP.Accepted != 5 || st.HTTP.Complete != 0 || st.Decisions.Local != 0 {
		t.Fatalf("stats %+v", st.HTTP)
	}
}

// TestTimeoutAnswered: 408 arrives after the configured timeout and soon
// after it, not before: FirstBytes for a silent client, Head for one whose
// head never completes (a drip does not extend it).
func TestTimeoutAnswered(t *testing.T) {
	const first, head, slack = 300 * time.Millisecond, 600 * time.Millisecond, 400 * time.Millisecond
	h := start(t, func(c *Config) { c.Peeker = peek.Peeker{FirstBytes: first, Head: head} })
	check := func(r result, limit time.Duration, reason string) {
		t.Helper()
		wantAnswer(t, r, 408, reason)
		t.Logf("408 (%s) after %v (limit %v)", reason, r.elapsed.Round(time.Millisecond), limit)
		if r.elapsed < limit || r.elapsed > limit+slack {
			t.Fatalf("408 (%s) after %v, want between %v and %v", reason, r.elapsed, limit, limit+slack)
		}
	}
	check(exchange(h.http, raw(nil)), first, "first_bytes_timeout")
	check(exchange(h.http, func(c *net.TCPConn, _ string) error {
		for _, p := range []string{"GET /local HTTP/1.1\r\n", "Host: a\r\n", "X-A: 1\r\n", "X-B: 2\r\n"} {
			if _, err := c.Write([]byte(p)); err != nil {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}), head, "head_timeout")
	st := h.srv.Stats()
	if st.HTTP.Refused["timeout"] != 2 || st.HTTP.Answered["408"] != 2 {
		t.Fatalf("stats %+v", st.HTTP)
	}
}

// tlsExchange runs a TLS client through the front's TLS listener.
func tlsExchange(h *harness, sni, path string) result {
	start := time.Now()
	nc, err := net.Dial("tcp4", h.tls)
	if err != nil {
		return result{err: err}
	}
	defer nc.Close()
	self := nc.LocalAddr().String()
	nc.SetDeadline(time.Now().Add(15 * time.Second))
	cfg := h.clientTLS.Clone()
	cfg.ServerName = sni
	c := tls.Client(nc, cfg)
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nX-Client: %s\r\n\r\n", path, sni, self); err != nil {
		return result{err: err}
	}
	return readAll(c, start, self)
}

// TestTLS: a ClientHello on the TLS listener goes to Local.ServeTLS, which
// completes the handshake on the untouched socket; a session naming n3
// (Config.SessionNode) is moved, refused, and relayed to n3's relay
// listener, which terminates TLS behind the PROXY line; garbage on the TLS
// listener is closed without an answer and counted.
func TestTLS(t *testing.T) {
	h := start(t, nil)
	wantServed(t, tlsExchange(h, "Shop.example.test", "/a.html"), "local-tls", "/a.html", nil)
	v, ok := h.reqs.Load("shop.example.test")
	if !ok || !v.(Request).TLS {
		t.Fatalf("Decide saw %+v, want the lowercased SNI", v)
	}
	wantServed(t, tlsExchange(h, "session-n3.example.test", "/s"), "relay-tls", "/s", nil)
	if v, _ := h.reqs.Load("session-n3.example.test"); v.(Request).SessionNode != "n3" {
		t.Fatalf("Decide saw %+v, want SessionNode n3", v)
	}
	r := exchange(h.tls, raw([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")))
	if r.err == nil || !errors.Is(r.err, io.ErrUnexpectedEOF) && !errors.Is(r.err, io.EOF) {
		t.Fatalf("HTTP on the TLS listener got %+v, want EOF", r)
	}
	st := waitFor(t, "TLS refusal", func(st Stats) bool { return st.TLS.Refused["bad"] == 1 })
	if st.TLS.Accepted != 3 || st.TLS.Complete != 2 || st.TLS.Reasons["record"] != 1 || len(st.TLS.Answered) != 0 ||
		st.Decisions.Local != 1 || st.Decisions.Remote["session"] != 1 || st.Moves.FailedIntact != 1 || st.Relays.Started != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRemote: every remote outcome, one connection each.
func TestRemote(t *testing.T) {
	h := start(t, nil)
	body := bytes.Repeat([]byte{7}, 300<<10)
	wantServed(t, exchange(h.http, post("/n2/x.cgi", body)), "n2-handoff", "/n2/x.cgi", body)
	wantServed(t, exchange(h.http, post("/n3/x.cgi", body)), "relay", "/n3/x.cgi", body)
	wantServed(t, exchange(h.http, get("/n5/x.cgi")), "local", "/n5/x.cgi", nil)
	wantServed(t, exchange(h.http, get("/n6/x.cgi")), "local", "/n6/x.cgi", nil)
	wantServed(t, exchange(h.http, get("/nomember/x.cgi")), "local", "/nomember/x.cgi", nil)
	r := exchange(h.http, get("/n4/x.cgi"))
	if r.err == nil || r.status != 0 {
		t.Fatalf("a lost connection got %+v, want it closed without an answer", r)
	}
	st := waitFor(t, "relay finished", func(st Stats) bool { return st.Relays.Finished == 1 && st.Active == 0 })
	want := Stats{
		Decisions: DecisionStats{Local: 0, NoMember: 1, Remote: map[string]uint64{"group": 5}},
		Moves:     MoveStats{OK: 1, FailedIntact: 3, FailedLost: 1},
		Relays: RelayStats{Started: 1, Finished: 1, DialFailed: 1,
			ToUpstream: st.Relays.ToUpstream, ToClient: st.Relays.ToClient},
		FallbackLocal: 2,
	}
	st.HTTP, st.TLS = ListenerStats{}, ListenerStats{}
	if fmt.Sprint(st) != fmt.Sprint(want) || st.Relays.ToUpstream < uint64(len(body)) || st.Relays.ToClient == 0 {
		t.Fatalf("stats\n %+v\nwant\n %+v", st, want)
	}
}

// TestMoveNilRelays: with handoff disabled (Move nil) a remote connection
// is relayed straight away.
func TestMoveNilRelays(t *testing.T) {
	h := start(t, func(c *Config) { c.Move = nil })
	wantServed(t, exchange(h.http, get("/n3/a")), "relay", "/n3/a", nil)
	wantServed(t, exchange(h.http, get("/n2/a")), "local", "/n2/a", nil) // no relay address for n2
	st := waitFor(t, "relay", func(st Stats) bool { return st.Relays.Finished == 1 })
	if st.Moves != (MoveStats{}) || st.FallbackLocal != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAlternate: a destination that can be neither moved to nor relayed
// to (n5: the move is refused, its relay port is dead) is replaced once by
// the alternative decision: relayed to n3; an alternative that is local is
// served here; without an alternative the connection is served here.
func TestAlternate(t *testing.T) {
	h := start(t, func(c *Config) {
		c.Alternate = func(r Request, failed string) (Decision, bool) {
			if r.Path != "/"+failed+"/a" {
				t.Errorf("Alternate(%+v, %q): not the request decided for the failed node", r, failed)
			}
			switch failed {
			case "n5":
				return Decision{Node: "n3", Group: "g", Reason: wire.ReasonGroup}, true
			case "n6":
				return Decision{Node: "n1", Local: true, Group: "g"}, true
			}
			return Decision{}, false
		}
	})
	wantServed(t, exchange(h.http, get("/n5/a")), "relay", "/n5/a", nil)
	wantServed(t, exchange(h.http, get("/n6/a")), "local", "/n6/a", nil)
	st := waitFor(t, "relay", func(st Stats) bool { return st.Relays.Finished == 1 && st.Active == 0 })
	if st.Alternate != 1 || st.AlternateLocal != 1 || st.FallbackLocal != 0 || st.Moves.FailedIntact != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// TestConcurrentMixAndShutdown: 200 connections at once, of every kind,
// each with its expected outcome; the counters add up; Shutdown returns
// nil and leaves no goroutine behind.
func TestConcurrentMixAndShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	h := newHarness(t, nil)
	body := bytes.Repeat([]byte("mix"), 10000)
	big := []byte("GET /local HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("x", 17<<10) + "\r\n\r\n")
	type kind struct {
		name  string
		run   func() result
		check func(result) error
	}
	served := func(who, path string, b []byte) func(result) error {
		sum := sha256.Sum256(b)
		want := fmt.Sprintf("%s %s %x %d\n", who, path, sum, len(b))
		return func(r result) error {
			if r.err != nil || r.status != 200 || r.body != want {
				return fmt.Errorf("got %d %q (%v), want %q", r.status, r.body, r.err, want)
			}
			return nil
		}
	}
	answered := func(status int) func(result) error {
		return func(r result) error {
			if r.err != nil || r.status != status {
				return fmt.Errorf("got %d (%v), want %d", r.status, r.err, status)
			}
			return nil
		}
	}
	kinds := []kind{
		{"local", func() result { return exchange(h.http, get("/local/m")) }, served("local", "/local/m", nil)},
		{"post", func() result { return exchange(h.http, post("/p", body)) }, served("local", "/p", body)},
		{"moved", func() result { return exchange(h.http, post("/n2/m", body)) }, served("n2-handoff", "/n2/m", body)},
		{"relayed", func() result { return exchange(h.http, post("/n3/m", body)) }, served("relay", "/n3/m", body)},
		{"fallback", func() result { return exchange(h.http, get("/n5/m")) }, served("local", "/n5/m", nil)},
		{"lost", func() result { return exchange(h.http, get("/n4/m")) }, func(r result) error {
			if r.status != 0 || r.err == nil {
				return fmt.Errorf("got %d (%v), want no answer", r.status, r.err)
			}
			return nil
		}},
		{"431", func() result { return exchange(h.http, raw(big)) }, answered(431)},
		{"400", func() result { return exchange(h.http, raw([]byte("HELLO\r\n\r\n"))) }, answered(400)},
		{"tls", func() result { return tlsExchange(h, "local.example.test", "/t") }, served("local-tls", "/t", nil)},
		{"tls-relay", func() result { return tlsExchange(h, "session-n3.example.test", "/t") }, served("relay-tls", "/t", nil)},
	}
	const n = 200
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		k := kinds[i%len(kinds)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := k.check(k.run()); err != nil {
				errs <- fmt.Errorf("%s: %w", k.name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if err := h.shutdown(10 * time.Second); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	st := h.srv.Stats()
	per := uint64(n / len(kinds))
	if st.HTTP.Accepted != 8*per || st.TLS.Accepted != 2*per || st.Active != 0 ||
		st.HTTP.Answered["431"] != per || st.HTTP.Answered["400"] != per ||
		st.Decisions.Local != 3*per || st.Decisions.Remote["group"] != 4*per || st.Decisions.Remote["session"] != per ||
		st.Moves.OK != per || st.Moves.FailedLost != per || st.Moves.FailedIntact != 3*per ||
		st.Relays.Started != 2*per || st.Relays.Finished != 2*per || st.FallbackLocal != per {
		t.Fatalf("stats %+v", st)
	}
	h.relay.ln.Close()
	h.relay.wg.Wait()
	noLeak(t, before)
}

// noLeak waits for the goroutine count to come back to before (a small
// slack for the runtime's and net/http's own).
func noLeak(t *testing.T, before int) {
	t.Helper()
	var now int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= before+2 {
			return
		}
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines after Shutdown, %d before:\n%s", now, before, buf[:runtime.Stack(buf, true)])
}

// TestShutdownCutShort: a connection stuck in its peek holds Shutdown until
// ctx ends; then Shutdown closes it (without an answer), returns ctx's
// error and leaves no goroutine.
func TestShutdownCutShort(t *testing.T) {
	before := runtime.NumGoroutine()
	h := newHarness(t, nil) // FirstBytes 5 s
	c, err := net.Dial("tcp4", h.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitActive := time.Now().Add(5 * time.Second)
	for h.srv.Stats().Active != 1 && time.Now().Before(waitActive) {
		time.Sleep(5 * time.Millisecond)
	}
	t0 := time.Now()
	err = h.shutdown(200 * time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > time.Second {
		t.Fatalf("Shutdown returned %v after %v, want the deadline after 200ms", err, time.Since(t0))
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("the held connection read %d, %v; want it closed", n, err)
	}
	if st := h.srv.Stats(); st.HTTP.Refused["shutdown"] != 1 || st.Active != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := net.Dial("tcp4", h.http); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
	h.relay.ln.Close()
	h.relay.wg.Wait()
	noLeak(t, before)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestHostOnly(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM:8080": "example.com", "example.com.": "example.com", "[::1]:80": "::1", "[::1]": "::1",
		"198.18.0.100": "198.18.0.100", "": "",
	} {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

// inlineLocal is an InlineLocal: TakeHTTP notes the goroutine it runs in
// and returns a serve that notes its own, the front's count of held
// connections, and waits for release before answering.
type inlineLocal struct {
	fakeLocal
	srv      *Server
	took     chan uint64
	serving  chan [2]int64 // goroutine, Stats().Active while serving
	release  chan struct{}
	takeCall atomic.Int32
}

func (l *inlineLocal) TakeHTTP(c net.Conn, origin string) func() {
	l.takeCall.Add(1)
	l.took <- goroutineID()
	return func() {
		defer c.Close()
		l.serving <- [2]int64{int64(goroutineID()), l.srv.Stats().Active}
		<-l.release
		serveOne(c, "inline", nil)
	}
}

func goroutineID() uint64 {
	var b [64]byte
	f := strings.Fields(string(b[:runtime.Stack(b[:], false)])) // "goroutine N [running]:"
	id, _ := strconv.ParseUint(f[1], 10, 64)
	return id
}

// TestInlineLocal: a plain HTTP connection served here by an InlineLocal
// is served in the goroutine that peeked it, after the front has let go of
// it (no longer counted as held, not waited for by Shutdown).
func TestInlineLocal(t *testing.T) {
	l := &inlineLocal{took: make(chan uint64, 1), serving: make(chan [2]int64, 1), release: make(chan struct{})}
	l.tls = &tls.Config{Certificates: []tls.Certificate{testCert(t)}}
	srv := New(Config{Self: "n1", Local: l})
	l.srv = srv
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln, false) }()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	var took uint64
	select {
	case took = <-l.took:
	case <-time.After(5 * time.Second):
		t.Fatal("TakeHTTP was not called")
	}
	s := <-l.serving
	if uint64(s[0]) != took || s[1] != 0 {
		t.Fatalf("served in goroutine %d with %d connections held, want %d (TakeHTTP's) and 0", s[0], s[1], took)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown waited for a connection the front had let go: %v", err)
	}
	if err := <-served; err != ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	close(l.release)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "inline /x ") || l.takeCall.Load() != 1 {
		t.Fatalf("%d %q after %d TakeHTTP calls", resp.StatusCode, body, l.takeCall.Load())
	}
	if st := srv.Stats(); st.Decisions.Local != 1 || st.Active != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// idLocal serves each connection inline and notes its goroutine.
type idLocal struct {
	fakeLocal
	ids chan uint64
}

func (l *idLocal) TakeHTTP(c net.Conn, origin string) func() {
	return func() {
		defer c.Close()
		l.ids <- goroutineID()
		serveOne(c, "inline", nil)
	}
}

// TestGoroutinesReused: connections one after another are served by the
// goroutine the first one had (it waits for the next connection instead
// of exiting), and Shutdown leaves no goroutine waiting.
func TestGoroutinesReused(t *testing.T) {
	before := runtime.NumGoroutine()
	l := &idLocal{ids: make(chan uint64, 10)}
	srv := New(Config{Self: "n1", Local: l})
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln, false)
	ids := map[uint64]bool{}
	for i := range 10 {
		r := exchange(ln.Addr().String(), get(fmt.Sprintf("/x%d", i)))
		if r.err != nil || r.status != 200 {
			t.Fatalf("connection %d: %+v", i, r)
		}
		ids[<-l.ids] = true
		waitActive := time.Now().Add(5 * time.Second)
		for srv.idle.Load() != 1 && time.Now().Before(waitActive) {
			time.Sleep(time.Millisecond)
		}
	}
	if len(ids) != 1 {
		t.Errorf("10 connections one after another served by %d goroutines, want 1", len(ids))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := srv.idle.Load(); n != 0 {
		t.Errorf("%d goroutines still waiting after Shutdown", n)
	}
	noLeak(t, before)
}
