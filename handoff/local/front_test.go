package local

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/front"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// The real front server of node n1 relays (no mover) every cgi connection
// to n2's relay listener, PROXY line first; n2 serves it from its
// upstream with the client's address, HTTP and TLS, and n1 serves the
// rest itself through this package.
func TestFrontRelaysToServeRelay(t *testing.T) {
	dir, _ := content(t)
	srvTLS, cliTLS := testCert(t)
	n2 := newServer(t, Config{Self: "n2", Upstreams: map[string]string{"cgi": app(t)}, Group: cgiGroup, TLS: srvTLS, OriginOf: only("127.0.0.1", "n1")})
	n2Relay := relayListener(t, n2)
	n1 := newServer(t, Config{Self: "n1", Content: dir, TLS: srvTLS})
	f := front.New(front.Config{
		Self:  "n1",
		Local: n1,
		Decide: func(r front.Request) front.Decision {
			if r.TLS || strings.HasSuffix(r.Path, ".cgi") {
				return front.Decision{Node: "n2", Group: "cgi", Reason: wire.ReasonGroup}
			}
			return front.Decision{Node: "n1", Local: true}
		},
		RelayAddr: func(node string) (netip.AddrPort, bool) { return n2Relay, node == "n2" },
	})
	t.Cleanup(func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("front shutdown: %v", err)
		}
	})
	listen := func(isTLS bool) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go f.Serve(ln, isTLS)
		return ln.Addr().String()
	}
	httpAddr, tlsAddr := listen(false), listen(true)
	dial := func(addr string) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.7")}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	c := dial(httpAddr)
	resp, body := exchange(t, c, bufio.NewReader(c), get("/app.cgi"))
	if resp.StatusCode != 200 || string(body) != "app\n" || resp.Header.Get(HeaderNode) != "n2" || resp.Header.Get(HeaderRelay) != "n1" ||
		resp.Header.Get("X-Seen-For") != "127.0.0.7" {
		t.Fatalf("relayed HTTP: %d %q, headers %v", resp.StatusCode, body, resp.Header)
	}
	c = dial(httpAddr)
	resp, _ = exchange(t, c, bufio.NewReader(c), get("/page.html"))
	if resp.StatusCode != 200 || resp.Header.Get(HeaderNode) != "n1" || resp.Header.Get(HeaderRelay) != "" {
		t.Fatalf("local HTTP: %d, headers %v", resp.StatusCode, resp.Header)
	}
	tc := tls.Client(dial(tlsAddr), cliTLS)
	resp, _ = exchange(t, tc, bufio.NewReader(tc), get("/app.cgi"))
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderNode) != "n2" || resp.Header.Get(HeaderRelay) != "n1" ||
		resp.Header.Get("X-Seen-For") != "127.0.0.7" || resp.Header.Get("X-Seen-Proto") != "https" {
		t.Fatalf("relayed TLS: %d, headers %v", resp.StatusCode, resp.Header)
	}
	if n := n2.Counters(); n.ConnsRelayed != 2 || n.RelayProxyErrors != 0 || n.Upstream != 2 {
		t.Fatalf("n2: %+v", n)
	}
}
