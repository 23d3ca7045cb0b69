package local

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/front"
)

// The front server hands its local connections to this package.
var _ front.InlineLocal = (*Server)(nil)

// A handed-off connection arrives with its request already in the receive
// queue (the front server only peeked it, the restore put it back): that
// request is served, marked with the origin, and 19 more on the same
// connection are served too.
func TestHandedOffQueuedRequestAndKeepAlive(t *testing.T) {
	dir, obj := content(t)
	s := newServer(t, Config{Self: "n2", Content: dir})
	client, server := tcpPair(t, "")
	if _, err := io.WriteString(client, get("/obj/1m")); err != nil {
		t.Fatal(err)
	}
	// The request is in server's receive queue before the server sees it.
	s.ServeHTTP(server, "n1")
	br := bufio.NewReader(client)
	resp, body := readResponse(t, br)
	if resp.StatusCode != 200 || !bytes.Equal(body, obj) {
		t.Fatalf("queued request: status %d, %d bytes (want 200, the object's %d)", resp.StatusCode, len(body), len(obj))
	}
	for i := 1; i < 20; i++ {
		if i > 1 {
			resp, body = exchange(t, client, br, get("/page.html"))
		}
		if got := resp.Header.Get(HeaderHandoff); got != "n1" {
			t.Fatalf("request %d: X-Shoal-Handoff %q, want n1", i, got)
		}
		if got := resp.Header.Get(HeaderNode); got != "n2" {
			t.Fatalf("request %d: X-Shoal-Node %q, want n2", i, got)
		}
		if resp.Header.Get(HeaderRelay) != "" {
			t.Fatalf("request %d: X-Shoal-Relay on a handed-off connection", i)
		}
		if i > 1 && string(body) != "<p>page</p>\n" {
			t.Fatalf("request %d: body %q", i, body)
		}
	}
	n := s.Counters()
	if n.ConnsHandedOff != 1 || n.Requests != 19 || n.Static != 19 {
		t.Fatalf("counters %+v, want 1 handed-off connection, 19 static requests", n)
	}
	// One more makes 20 requests on the connection.
	resp, _ = exchange(t, client, br, get("/obj/nothing"))
	if resp.StatusCode != 404 || resp.Header.Get(HeaderHandoff) != "n1" {
		t.Fatalf("20th request: %d, handoff %q", resp.StatusCode, resp.Header.Get(HeaderHandoff))
	}
	if n := s.Counters(); n.Requests != 20 || n.Status4xx != 1 {
		t.Fatalf("counters %+v, want 20 requests, one 4xx", n)
	}
}

// A connection accepted here carries X-Shoal-Node only.
func TestLocalConnectionHasNoHandoffHeader(t *testing.T) {
	dir, _ := content(t)
	s := newServer(t, Config{Self: "n2", Content: dir})
	client, server := tcpPair(t, "")
	s.ServeHTTP(server, "")
	resp, _ := exchange(t, client, bufio.NewReader(client), get("/page.html"))
	if resp.Header.Get(HeaderNode) != "n2" || resp.Header.Get(HeaderHandoff) != "" || resp.StatusCode != 200 {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if n := s.Counters(); n.ConnsLocal != 1 || n.ConnsHandedOff != 0 {
		t.Fatalf("counters %+v", n)
	}
}

func TestStaticRange(t *testing.T) {
	dir, obj := content(t)
	s := newServer(t, Config{Self: "n2", Content: dir})
	client, server := tcpPair(t, "")
	s.ServeHTTP(server, "n1")
	br := bufio.NewReader(client)
	for _, r := range []struct{ from, to int }{{0, 0}, {100, 199}, {len(obj) - 4096, len(obj) - 1}, {12345, 654321}} {
		resp, body := exchange(t, client, br, fmt.Sprintf("GET /obj/1m HTTP/1.1\r\nHost: shop.example\r\nRange: bytes=%d-%d\r\n\r\n", r.from, r.to))
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("range %v: status %d", r, resp.StatusCode)
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", r.from, r.to, len(obj)); resp.Header.Get("Content-Range") != want {
			t.Fatalf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), want)
		}
		if !bytes.Equal(body, obj[r.from:r.to+1]) {
			t.Fatalf("range %v: %d bytes, not the object's", r, len(body))
		}
	}
	resp, _ := exchange(t, client, br, "GET /obj/1m HTTP/1.1\r\nHost: shop.example\r\nRange: bytes=2000000-\r\n\r\n")
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: %d", resp.StatusCode)
	}
}

// The session cookie: the upstream sees its own value, the client gets
// it prefixed with the node that served it.
func TestUpstreamSessionCookie(t *testing.T) {
	s := newServer(t, Config{Self: "n2", Upstreams: map[string]string{"cgi": app(t)}, SessionCookie: "shoal_session", Group: cgiGroup})
	client, server := tcpPair(t, "127.0.0.5:0")
	s.ServeHTTP(server, "n1")
	br := bufio.NewReader(client)

	resp, body := exchange(t, client, br, get("/app.cgi"))
	if resp.StatusCode != 200 || string(body) != "app\n" {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 1 || got[0] != "shoal_session=n2~s3cr3t; Path=/" {
		t.Fatalf("Set-Cookie %q, want the value prefixed with n2~", got)
	}
	if got := resp.Header.Values(HeaderNode); len(got) != 1 || got[0] != "n2" {
		t.Fatalf("X-Shoal-Node %q: the upstream's own value must not pass", got)
	}
	if resp.Header.Get(HeaderHandoff) != "n1" {
		t.Fatalf("X-Shoal-Handoff %q", resp.Header.Get(HeaderHandoff))
	}
	if resp.Header.Get("X-Seen-For") != "127.0.0.5" || resp.Header.Get("X-Seen-Proto") != "http" || resp.Header.Get("X-Seen-Host") != "shop.example" {
		t.Fatalf("upstream saw X-Forwarded-For %q, proto %q, Host %q", resp.Header.Get("X-Seen-For"), resp.Header.Get("X-Seen-Proto"), resp.Header.Get("X-Seen-Host"))
	}

	resp, _ = exchange(t, client, br, "GET /app.cgi HTTP/1.1\r\nHost: shop.example\r\nCookie: a=1; shoal_session=n2~s3cr3t; b=x~y\r\n\r\n")
	if got := resp.Header.Get("X-Seen-Cookie"); got != "a=1; shoal_session=s3cr3t; b=x~y" {
		t.Fatalf("upstream saw Cookie %q, want the session prefix stripped and the rest intact", got)
	}
	if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
		t.Fatalf("Set-Cookie %q on a request that has the session", got)
	}
	if n := s.Counters(); n.Upstream != 2 || n.Static != 0 || n.UpstreamErrors != 0 {
		t.Fatalf("counters %+v", n)
	}
}

// A 1 MiB body sent after a 100 Continue streams through the upstream.
func TestUpstreamUploadExpectContinue(t *testing.T) {
	s := newServer(t, Config{Self: "n3", Upstreams: map[string]string{"cgi": app(t)}, Group: cgiGroup})
	client, server := tcpPair(t, "")
	s.ServeHTTP(server, "")
	br := bufio.NewReader(client)
	body := make([]byte, 1<<20)
	for i := 0; i < 3; i++ { // three uploads on one connection
		rand.Read(body)
		sum := sha256.Sum256(body)
		resp, _ := exchange(t, client, br, fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body)))
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("upload %d: interim status %d, want 100", i, resp.StatusCode)
		}
		if _, err := client.Write(body); err != nil {
			t.Fatal(err)
		}
		resp, got := readFinal(t, br)
		if want := fmt.Sprintf("%s %d\n", hex.EncodeToString(sum[:]), len(body)); resp.StatusCode != 200 || string(got) != want {
			t.Fatalf("upload %d: %d %q, want %q", i, resp.StatusCode, got, want)
		}
	}
	// And a body sent right behind the head, without Expect (as in the lab).
	rand.Read(body)
	sum := sha256.Sum256(body)
	resp, got := exchange(t, client, br, fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if want := fmt.Sprintf("%s %d\n", hex.EncodeToString(sum[:]), len(body)); resp.StatusCode != 200 || string(got) != want {
		t.Fatalf("upload without Expect: %d %q, want %q", resp.StatusCode, got, want)
	}
}

func TestUpstreamDown(t *testing.T) {
	s := newServer(t, Config{Self: "n3", Upstreams: map[string]string{"cgi": "unix:/nonexistent/shoal.sock", "tcp": "127.0.0.1:1"},
		Group: func(r *http.Request) string { return strings.TrimPrefix(r.URL.Path, "/") }})
	client, server := tcpPair(t, "")
	s.ServeHTTP(server, "n1")
	br := bufio.NewReader(client)
	for _, g := range []string{"cgi", "tcp"} {
		resp, _ := exchange(t, client, br, get("/"+g))
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(HeaderNode) != "n3" || resp.Header.Get(HeaderHandoff) != "n1" {
			t.Fatalf("%s: status %d, headers %v", g, resp.StatusCode, resp.Header)
		}
	}
	if n := s.Counters(); n.UpstreamErrors != 2 || n.Status5xx != 2 {
		t.Fatalf("counters %+v, want 2 upstream errors, 2 5xx", n)
	}
}

func TestNewRefusesBadUpstream(t *testing.T) {
	for _, up := range []string{"unix:relative.sock", "nohostport", "host:"} {
		if _, err := New(Config{Self: "n1", Upstreams: map[string]string{"cgi": up}}); err == nil || !strings.Contains(err.Error(), "cgi") {
			t.Errorf("upstream %q: error %v, want one naming the group", up, err)
		}
	}
	if _, err := New(Config{Self: "n~1"}); err == nil {
		t.Error("self n~1 accepted")
	}
}

// A relayed connection: the PROXY line's client is the request's remote
// address, the relaying member is named, HTTP and TLS both.
func TestServeRelay(t *testing.T) {
	srvTLS, cliTLS := testCert(t)
	s := newServer(t, Config{Self: "n2", Upstreams: map[string]string{"cgi": app(t)}, Group: cgiGroup, TLS: srvTLS, OriginOf: only("127.0.0.1", "n1")})
	addr := relayListener(t, s)
	proxy := "PROXY TCP4 198.18.0.9 198.18.0.1 40000 80\r\n"

	t.Run("http", func(t *testing.T) {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The PROXY line and the request in one segment, as a relay sends them.
		resp, _ := exchange(t, c, bufio.NewReader(acked(t, c)), proxy+get("/app.cgi"))
		checkRelayed(t, resp, "http")
	})
	t.Run("unknown client", func(t *testing.T) {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		resp, _ := exchange(t, c, bufio.NewReader(acked(t, c)), "PROXY UNKNOWN\r\n"+get("/app.cgi"))
		if resp.StatusCode != 200 || resp.Header.Get(HeaderRelay) != "n1" || resp.Header.Get("X-Seen-For") != "127.0.0.1" {
			t.Fatalf("PROXY UNKNOWN: status %d, headers %v, want served with the relaying socket's address", resp.StatusCode, resp.Header)
		}
	})
	t.Run("tls", func(t *testing.T) {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, strings.Replace(proxy, " 80\r", " 443\r", 1)); err != nil {
			t.Fatal(err)
		}
		var ack [1]byte
		if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != RelayAck {
			t.Fatalf("relay acknowledgement %q, %v", ack[0], err)
		}
		tc := tls.Client(c, cliTLS)
		for i := 0; i < 2; i++ {
			resp, _ := exchange(t, tc, bufio.NewReader(tc), get("/app.cgi"))
			checkRelayed(t, resp, "https")
			if i == 0 {
				continue
			}
		}
	})
	if n := s.Counters(); n.ConnsRelayed != 3 || n.RelayProxyErrors != 0 || n.RelayUnknown != 0 || n.TLSFailures != 0 {
		t.Fatalf("counters %+v", n)
	}
}

func checkRelayed(t *testing.T, resp *http.Response, proto string) {
	t.Helper()
	if resp.StatusCode != 200 || resp.Header.Get(HeaderRelay) != "n1" || resp.Header.Get(HeaderNode) != "n2" || resp.Header.Get(HeaderHandoff) != "" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if got := resp.Header.Get("X-Seen-For"); got != "198.18.0.9" {
		t.Fatalf("upstream saw X-Forwarded-For %q, want the PROXY line's client", got)
	}
	if got := resp.Header.Get("X-Seen-Proto"); got != proto {
		t.Fatalf("upstream saw X-Forwarded-Proto %q, want %s", got, proto)
	}
}

// Bad PROXY lines, a silent relay, an unknown member: closed, counted,
// nothing answered.
func TestServeRelayRefusals(t *testing.T) {
	dir, _ := content(t)
	s := newServer(t, Config{Self: "n2", Content: dir, OriginOf: only("127.0.0.1", "n1")})
	addr := relayListener(t, s)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for i, bad := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"PROXY TCP4 198.18.0.9 198.18.0.1 40000\r\n" + get("/page.html"),
		"PROXY TCP4 198.18.0.9 198.18.0.1 40000 80" + strings.Repeat(" ", 80) + "\r\n",
		strings.Repeat("A", 200),
	} {
		c := dial()
		io.WriteString(c, bad)
		waitClosed(t, c, time.Second)
		if n := s.Counters(); n.RelayProxyErrors != uint64(i+1) {
			t.Fatalf("case %d: RelayProxyErrors %d", i, n.RelayProxyErrors)
		}
	}
	// Half a line, then nothing: closed after ProxyLineTimeout.
	c := dial()
	io.WriteString(c, "PROXY TCP4 198.18.")
	if took := waitClosed(t, c, ProxyLineTimeout+time.Second); took < ProxyLineTimeout-100*time.Millisecond {
		t.Fatalf("closed after %v, before the %v timeout", took, ProxyLineTimeout)
	}
	if n := s.Counters(); n.RelayProxyErrors != 5 || n.Requests != 0 || n.ConnsRelayed != 0 {
		t.Fatalf("counters %+v", n)
	}

	// Only members relay: the same good line from an address no member has.
	other := newServer(t, Config{Self: "n3", Content: dir, OriginOf: only("127.0.0.2", "n1")})
	c, err := net.Dial("tcp", relayListener(t, other).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PROXY TCP4 198.18.0.9 198.18.0.1 40000 80\r\n"+get("/page.html"))
	waitClosed(t, c, time.Second)
	if n := other.Counters(); n.RelayUnknown != 1 || n.Requests != 0 {
		t.Fatalf("counters %+v, want one unknown relay", n)
	}
}

// A request of a group this node does not serve goes to the group's node
// through its relay listener, on one relayed connection per client
// connection, and the far node never forwards it again.
func TestForward(t *testing.T) {
	dirB, _ := content(t)
	noHTML := func(g string) bool { return g != "html" && g != "cgi" }
	var a, b *Server
	var aRelay, bRelay netip.AddrPort
	b = newServer(t, Config{Self: "n2", Content: dirB, Upstreams: map[string]string{"cgi": app(t)}, Group: cgiGroup,
		SessionCookie: "shoal_session",
		Serves:        noHTML, // b does not serve html either: a forward from a must still be served, not sent back
		Forward:       func(*http.Request) (string, netip.AddrPort, bool) { return "n1", aRelay, true },
		OriginOf:      only("127.0.0.1", "n1")})
	a = newServer(t, Config{Self: "n1", Group: cgiGroup, SessionCookie: "shoal_session", Serves: noHTML,
		Forward:  func(*http.Request) (string, netip.AddrPort, bool) { return "n2", bRelay, true },
		OriginOf: only("127.0.0.1", "n2")})
	bRelay, aRelay = relayListener(t, b), relayListener(t, a)

	client, server := tcpPair(t, "127.0.0.5:0")
	a.ServeHTTP(server, "n3")
	br := bufio.NewReader(client)
	for i := 0; i < 3; i++ {
		resp, body := exchange(t, client, br, get("/page.html"))
		if resp.StatusCode != 200 || string(body) != "<p>page</p>\n" {
			t.Fatalf("status %d, body %q", resp.StatusCode, body)
		}
		if resp.Header.Get(HeaderNode) != "n2" || resp.Header.Get(HeaderRelay) != "n1" || resp.Header.Get(HeaderHandoff) != "n3" {
			t.Fatalf("headers %v, want served by n2, relayed by n1, handed off by n3", resp.Header)
		}
	}
	resp, _ := exchange(t, client, br, "GET /app.cgi HTTP/1.1\r\nHost: shop.example\r\nCookie: shoal_session=n2~abc\r\n\r\n")
	if resp.Header.Get("X-Seen-For") != "127.0.0.5" || resp.Header.Get("X-Seen-Cookie") != "shoal_session=abc" || resp.Header.Get(HeaderNode) != "n2" {
		t.Fatalf("forwarded to the upstream: headers %v, want the client 127.0.0.5 and the stripped cookie", resp.Header)
	}
	resp, _ = exchange(t, client, br, get("/app.cgi"))
	if got := resp.Header.Values("Set-Cookie"); len(got) != 1 || got[0] != "shoal_session=n2~s3cr3t; Path=/" {
		t.Fatalf("Set-Cookie %q through a forward, want prefixed once by n2", got)
	}
	// An upload with Expect: 100-continue through the forward and b's upstream.
	up := make([]byte, 1<<20)
	rand.Read(up)
	sum := sha256.Sum256(up)
	resp, _ = exchange(t, client, br, fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(up)))
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("forwarded upload: interim status %d, want 100", resp.StatusCode)
	}
	client.Write(up)
	resp, body := readFinal(t, br)
	if want := fmt.Sprintf("%s %d\n", hex.EncodeToString(sum[:]), len(up)); resp.StatusCode != 200 || string(body) != want {
		t.Fatalf("forwarded upload: %d %q, want %q", resp.StatusCode, body, want)
	}
	// Not for a forward: a path in no group is served by a itself.
	resp, _ = exchange(t, client, br, get("/obj/1m"))
	if resp.StatusCode != 404 || resp.Header.Get(HeaderNode) != "n1" {
		t.Fatalf("no-group request: %d from %q, want a's own 404", resp.StatusCode, resp.Header.Get(HeaderNode))
	}
	na, nb := a.Counters(), b.Counters()
	if na.Forwarded != 6 || na.Static != 1 || na.ForwardErrors != 0 {
		t.Fatalf("a: %+v", na)
	}
	if nb.Forwarded != 0 || nb.Static != 3 || nb.Upstream != 3 || nb.ConnsRelayed != 1 || nb.Requests != 6 {
		t.Fatalf("b: %+v, want 3 static and 3 upstream requests on one relayed connection, no forward", nb)
	}

	// The far node gone: 502 from a, counted.
	ctx, cancel := contextWithTimeout(2 * time.Second)
	defer cancel()
	b.Shutdown(ctx)
	client2, server2 := tcpPair(t, "")
	a.ServeHTTP(server2, "")
	resp, _ = exchange(t, client2, bufio.NewReader(client2), get("/page.html"))
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get(HeaderNode) != "n1" {
		t.Fatalf("far node down: %d from %q", resp.StatusCode, resp.Header.Get(HeaderNode))
	}
	if n := a.Counters(); n.ForwardErrors != 1 {
		t.Fatalf("a: %+v, want one forward error", n)
	}
}

// ServeTLS: the handshake, then HTTP with the origin's mark; a failed
// handshake is counted and closed; with no certificate TLS is refused.
func TestServeTLS(t *testing.T) {
	dir, obj := content(t)
	srvTLS, cliTLS := testCert(t)
	s := newServer(t, Config{Self: "n2", Content: dir, TLS: srvTLS, HandshakeTimeout: 300 * time.Millisecond})
	client, server := tcpPair(t, "")
	s.ServeTLS(server, "n1")
	tc := tls.Client(client, cliTLS)
	br := bufio.NewReader(tc)
	resp, body := exchange(t, tc, br, get("/obj/1m"))
	if resp.StatusCode != 200 || !bytes.Equal(body, obj) || resp.Header.Get(HeaderHandoff) != "n1" || resp.Header.Get(HeaderNode) != "n2" {
		t.Fatalf("status %d, %d bytes, headers %v", resp.StatusCode, len(body), resp.Header)
	}
	resp, body = exchange(t, tc, br, "GET /obj/1m HTTP/1.1\r\nHost: shop.example\r\nRange: bytes=10-19\r\n\r\n")
	if resp.StatusCode != 206 || !bytes.Equal(body, obj[10:20]) {
		t.Fatalf("range over TLS: %d, %d bytes", resp.StatusCode, len(body))
	}

	// Garbage instead of a ClientHello, and a client that never speaks.
	c1, s1 := tcpPair(t, "")
	s.ServeTLS(s1, "")
	io.WriteString(c1, get("/"))
	waitClosed(t, c1, 2*time.Second)
	c2, s2 := tcpPair(t, "")
	s.ServeTLS(s2, "")
	if took := waitClosed(t, c2, 2*time.Second); took < 250*time.Millisecond {
		t.Fatalf("silent client closed after %v, before the 300ms handshake timeout", took)
	}
	// HandshakeContext closes the socket on the timeout before serveTLS counts it.
	if n := settle(s, func(n Counters) bool { return n.TLSFailures == 2 }); n.TLSFailures != 2 || n.Requests != 2 {
		t.Fatalf("counters %+v, want 2 TLS failures, 2 requests", n)
	}

	plain := newServer(t, Config{Self: "n3", Content: dir})
	c3, s3 := tcpPair(t, "")
	plain.ServeTLS(s3, "")
	go tls.Client(c3, cliTLS).Handshake()
	waitClosed(t, c3, 2*time.Second)
	if n := settle(plain, func(n Counters) bool { return n.TLSFailures == 1 }); n.TLSFailures != 1 {
		t.Fatalf("no certificate: %+v", n)
	}
}

// Shutdown lets a request in flight finish and refuses later connections.
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	sock := slowApp(t, started, release)
	s, err := New(Config{Self: "n2", Upstreams: map[string]string{"cgi": sock}, Group: cgiGroup})
	if err != nil {
		t.Fatal(err)
	}
	client, server := tcpPair(t, "")
	s.ServeHTTP(server, "")
	io.WriteString(client, get("/slow.cgi"))
	<-started
	done := make(chan error, 1)
	go func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	resp, body := readResponse(t, bufio.NewReader(client))
	if resp.StatusCode != 200 || string(body) != "slow\n" {
		t.Fatalf("in-flight request: %d %q", resp.StatusCode, body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c2, s2 := tcpPair(t, "")
	s.ServeHTTP(s2, "")
	waitClosed(t, c2, time.Second)
}

// acked reads c after checking the relay listener's acknowledgement byte,
// which comes first.
func acked(t *testing.T, c net.Conn) io.Reader {
	return &ackReader{t: t, c: c}
}

type ackReader struct {
	t    *testing.T
	c    net.Conn
	seen bool
}

func (a *ackReader) Read(p []byte) (int, error) {
	if !a.seen {
		var b [1]byte
		if _, err := io.ReadFull(a.c, b[:]); err != nil {
			return 0, err
		}
		if b[0] != RelayAck {
			a.t.Errorf("first byte %q, want the relay acknowledgement %q", b[0], RelayAck)
		}
		a.seen = true
	}
	return a.c.Read(p)
}

// TestPublished: a published path served here carries its version and
// ETag, answers conditional and range requests like a file; one published
// but not served here is forwarded to the node Forward names, and with no
// such node answered 503 with Retry-After; an unpublished path is served
// as before.
func TestPublished(t *testing.T) {
	dir, _ := content(t)
	obj := filepath.Join(t.TempDir(), "v2")
	if err := os.WriteFile(obj, []byte("version two\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	published := func(where PublishedStatus) func(r *http.Request) Published {
		return func(r *http.Request) Published {
			if r.URL.Path != "/news.html" {
				return Published{}
			}
			if where != PublishedHere {
				return Published{Status: where}
			}
			f, err := os.Open(obj)
			if err != nil {
				t.Error(err)
				return Published{}
			}
			return Published{Status: PublishedHere, File: f, Version: 2, ETag: `"v2-abc"`, ModTime: time.Unix(1e9, 0), Name: "news.html"}
		}
	}
	far := newServer(t, Config{Self: "n2", Content: dir, Published: published(PublishedHere), OriginOf: only("127.0.0.1", "n1")})
	farRelay := relayListener(t, far)
	near := newServer(t, Config{Self: "n1", Content: dir, Published: published(PublishedElsewhere),
		Forward: func(*http.Request) (string, netip.AddrPort, bool) { return "n2", farRelay, true }})
	none := newServer(t, Config{Self: "n3", Content: dir, Published: published(PublishedElsewhere)})

	client, server := tcpPair(t, "")
	far.ServeHTTP(server, "")
	br := bufio.NewReader(client)
	resp, body := exchange(t, client, br, get("/news.html"))
	if resp.StatusCode != 200 || string(body) != "version two\n" || resp.Header.Get(HeaderVersion) != "2" ||
		resp.Header.Get("ETag") != `"v2-abc"` || resp.Header.Get(HeaderNode) != "n2" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("served here: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, _ = exchange(t, client, br, "GET /news.html HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v2-abc\"\r\n\r\n")
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match with the ETag: %d, want 304", resp.StatusCode)
	}
	resp, body = exchange(t, client, br, "GET /news.html HTTP/1.1\r\nHost: x\r\nRange: bytes=8-\r\n\r\n")
	if resp.StatusCode != http.StatusPartialContent || string(body) != "two\n" {
		t.Fatalf("range: %d %q", resp.StatusCode, body)
	}
	if resp, body := exchange(t, client, br, get("/page.html")); resp.StatusCode != 200 || resp.Header.Get(HeaderVersion) != "" || string(body) != "<p>page</p>\n" {
		t.Fatalf("an unpublished path: %d %q %v", resp.StatusCode, body, resp.Header)
	}

	client, server = tcpPair(t, "")
	near.ServeHTTP(server, "")
	resp, body = exchange(t, client, bufio.NewReader(client), get("/news.html"))
	if resp.StatusCode != 200 || string(body) != "version two\n" || resp.Header.Get(HeaderNode) != "n2" || resp.Header.Get(HeaderRelay) != "n1" {
		t.Fatalf("published elsewhere: %d %q %v, want forwarded to n2", resp.StatusCode, body, resp.Header)
	}

	client, server = tcpPair(t, "")
	none.ServeHTTP(server, "")
	resp, _ = exchange(t, client, bufio.NewReader(client), get("/news.html"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("published nowhere reachable: %d %v, want 503 with Retry-After", resp.StatusCode, resp.Header)
	}
	if c := near.Counters(); c.Forwarded != 1 {
		t.Errorf("near counters %+v", c)
	}
	if c := far.Counters(); c.Versioned != 4 { // 200, 304, 206, and the request near forwarded
		t.Errorf("far counters %+v", c)
	}
	if c := none.Counters(); c.VersionUnavailable != 1 {
		t.Errorf("none counters %+v", c)
	}
}

// TestForwardedProto: a request forwarded from a TLS connection reaches
// the far node's upstream as https (the hop between nodes is plain); a
// client that claims it on a connection of its own is not believed.
func TestForwardedProto(t *testing.T) {
	srvTLS, cliTLS := testCert(t)
	var bRelay netip.AddrPort
	b := newServer(t, Config{Self: "n2", Upstreams: map[string]string{"cgi": app(t)}, Group: cgiGroup, OriginOf: only("127.0.0.1", "n1")})
	a := newServer(t, Config{Self: "n1", Group: cgiGroup, TLS: srvTLS, Serves: func(string) bool { return false },
		Forward: func(*http.Request) (string, netip.AddrPort, bool) { return "n2", bRelay, true }})
	bRelay = relayListener(t, b)

	client, server := tcpPair(t, "")
	a.ServeTLS(server, "")
	tc := tls.Client(client, cliTLS)
	resp, _ := exchange(t, tc, bufio.NewReader(tc), get("/app.cgi"))
	if resp.Header.Get(HeaderNode) != "n2" || resp.Header.Get("X-Seen-Proto") != "https" {
		t.Fatalf("forwarded from TLS: node %q, upstream saw proto %q; want n2 and https", resp.Header.Get(HeaderNode), resp.Header.Get("X-Seen-Proto"))
	}
	client, server = tcpPair(t, "")
	b.ServeHTTP(server, "")
	resp, _ = exchange(t, client, bufio.NewReader(client), "GET /app.cgi HTTP/1.1\r\nHost: x\r\nX-Shoal-Forwarded-Proto: https\r\n\r\n")
	if got := resp.Header.Get("X-Seen-Proto"); got != "http" {
		t.Fatalf("a client's own claim: upstream saw proto %q, want http", got)
	}
}

// writeCounter is a server-side connection that counts how a response
// leaves: Write calls and ReadFrom calls (sendfile, on a TCPConn).
type writeCounter struct {
	*net.TCPConn
	writes, readFroms atomic.Int32
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.TCPConn.Write(p)
}

func (c *writeCounter) ReadFrom(r io.Reader) (int64, error) {
	c.readFroms.Add(1)
	return c.TCPConn.ReadFrom(r)
}

// TestSmallFileOneWrite: a static file up to smallBody bytes leaves with
// its head in one write; a larger one still goes by the connection's
// ReadFrom (sendfile), both intact.
func TestSmallFileOneWrite(t *testing.T) {
	dir, obj := content(t)
	small := obj[:1024]
	if err := os.WriteFile(filepath.Join(dir, "obj", "1k"), small, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Config{Self: "n2", Content: dir})
	client, server := tcpPair(t, "")
	wc := &writeCounter{TCPConn: server}
	s.ServeHTTP(wc, "")
	br := bufio.NewReader(client)
	for _, c := range []struct {
		path      string
		want      []byte
		writes    int32 // at most
		readFroms int32
	}{
		{"/obj/1k", small, 1, 0},
		{"/page.html", []byte("<p>page</p>\n"), 1, 0},
		{"/obj/1m", obj, 2, 1},
	} {
		w0, r0 := wc.writes.Load(), wc.readFroms.Load()
		resp, body := exchange(t, client, br, get(c.path))
		if resp.StatusCode != 200 || !bytes.Equal(body, c.want) {
			t.Fatalf("%s: status %d, %d bytes, want 200 and the file's %d", c.path, resp.StatusCode, len(body), len(c.want))
		}
		w, r := wc.writes.Load()-w0, wc.readFroms.Load()-r0
		if w > c.writes || r != c.readFroms {
			t.Errorf("%s (%d bytes): %d writes and %d ReadFrom calls, want at most %d writes and %d ReadFrom", c.path, len(c.want), w, r, c.writes, c.readFroms)
		}
	}
}
