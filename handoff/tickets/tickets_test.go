package tickets

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/peek"
)

const serverName = "shoal.test"

var (
	clusterKey = bytes.Repeat([]byte{0x5a}, 32)
	otherKey   = bytes.Repeat([]byte{0xa5}, 32)
	rotation   = time.Hour
	t0         = time.Date(2026, 11, 27, 12, 30, 0, 0, time.UTC)
)

// clock is a settable clock, one per node so that skew can be tested.
type clock struct{ unix atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.unix.Store(t.Unix()); return c }
func (c *clock) now() time.Time   { return time.Unix(c.unix.Load(), 0) }
func (c *clock) add(d time.Duration) {
	c.unix.Add(int64(d / time.Second))
}

var certOnce sync.Once
var cert tls.Certificate
var roots *x509.CertPool

// testCert is one self-signed certificate for serverName, shared by every
// node as a cluster shares its certificate.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: serverName}, DNSNames: []string{serverName},
			NotBefore: t0.Add(-24 * time.Hour), NotAfter: t0.Add(365 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		c, _ := x509.ParseCertificate(der)
		roots = x509.NewCertPool()
		roots.AddCert(c)
	})
	return cert, roots
}

// handshake is what a server saw of one connection.
type handshake struct {
	resumed bool
	version uint16
	hello   peek.ClientHello
	err     error
}

// node is a real crypto/tls server on loopback configured by Configure.
type node struct {
	id   string
	keys *Keys
	clk  *clock
	addr string
	seen chan handshake
}

// recorder keeps the first bytes a server reads: the ClientHello.
type recorder struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	if r.buf.Len() < 16<<10 {
		r.buf.Write(b[:n])
	}
	return n, err
}

func startNode(t *testing.T, id string, key []byte, clk *clock) *node {
	crt, _ := testCert(t)
	n := &node{id: id, clk: clk, keys: NewKeys(key, rotation, clk.now), seen: make(chan handshake, 1)}
	cfg := &tls.Config{Certificates: []tls.Certificate{crt}, Time: clk.now, MinVersion: tls.VersionTLS12}
	n.keys.Configure(cfg, id)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rec := &recorder{Conn: c}
			tc := tls.Server(rec, cfg)
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			h := handshake{err: tc.Handshake()}
			if h.err == nil {
				st := tc.ConnectionState()
				h.resumed, h.version = st.DidResume, st.Version
				h.hello, h.err = peek.ParseClientHello(rec.buf.Bytes())
				io.WriteString(tc, "served by "+id+"\n")
			}
			tc.Close()
			n.seen <- h
		}
	}()
	return n
}

// cache is a client session cache the test can read and overwrite.
type cache struct {
	mu sync.Mutex
	s  *tls.ClientSessionState
}

func (c *cache) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s, c.s != nil
}
func (c *cache) Put(_ string, s *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.s = s
}
func (c *cache) get() *tls.ClientSessionState { s, _ := c.Get(""); return s }

// connect makes one client connection to n and returns what the server
// saw; the client must agree on resumption and read the whole answer
// (which processes the TLS 1.3 tickets).
func connect(t *testing.T, n *node, c *cache, max uint16) handshake {
	t.Helper()
	_, pool := testCert(t)
	conn, err := tls.Dial("tcp", n.addr, &tls.Config{
		ServerName: serverName, RootCAs: pool, ClientSessionCache: c, MaxVersion: max, Time: n.clk.now,
	})
	if err != nil {
		t.Fatalf("dial %s: %v", n.id, err)
	}
	defer conn.Close()
	body, err := io.ReadAll(conn)
	if err != nil || string(body) != "served by "+n.id+"\n" {
		t.Fatalf("%s answered %q, %v", n.id, body, err)
	}
	h := <-n.seen
	if h.err != nil {
		t.Fatalf("%s: %v", n.id, h.err)
	}
	if cr := conn.ConnectionState().DidResume; cr != h.resumed {
		t.Fatalf("%s: client says resumed %v, server %v", n.id, cr, h.resumed)
	}
	if h.version != max {
		t.Fatalf("%s: version %#x, want %#x", n.id, h.version, max)
	}
	return h
}

// presented is the ticket the client presented in its ClientHello: the
// first PSK identity (TLS 1.3) or the session_ticket extension (TLS 1.2).
func presented(h handshake) []byte {
	if len(h.hello.PSKIdentities) > 0 {
		return h.hello.PSKIdentities[0]
	}
	return h.hello.Ticket
}

var versions = []struct {
	name string
	v    uint16
}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}}

// TestResumeOnAnotherNode: a session issued by n1 resumes on n2 (same
// cluster key, separate Keys as on separate machines), and the ticket in
// the ClientHello names n1.
func TestResumeOnAnotherNode(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			clk := newClock(t0)
			n1, n2 := startNode(t, "n1", clusterKey, clk), startNode(t, "n2", clusterKey, clk)
			c := &cache{}
			if h := connect(t, n1, c, ver.v); h.resumed || len(presented(h)) != 0 {
				t.Fatalf("first connection resumed %v, presented %d bytes", h.resumed, len(presented(h)))
			}
			if c.get() == nil {
				t.Fatal("n1 issued no ticket")
			}
			h := connect(t, n2, c, ver.v)
			if !h.resumed {
				t.Fatal("n2 did not resume n1's session")
			}
			if node, ok := NodeOf(presented(h)); !ok || node != "n1" {
				t.Fatalf("ClientHello ticket names %q %v, want n1", node, ok)
			}
			if ver.v == tls.VersionTLS13 && len(h.hello.Ticket) != 0 {
				t.Fatal("TLS 1.3 client sent the ticket in session_ticket too")
			}
			if s1, s2 := n1.keys.Stats(), n2.keys.Stats(); s1.Issued < 1 || s2.Accepted != 1 || s2.Auth+s2.Expired+s2.Foreign != 0 {
				t.Fatalf("stats n1 %+v n2 %+v", s1, s2)
			}
			// n2 resumed and re-issued (TLS 1.3 sends a ticket on every
			// handshake): the next hello names n2, and n1 resumes it.
			if ver.v == tls.VersionTLS13 {
				h := connect(t, n1, c, ver.v)
				if node, _ := NodeOf(presented(h)); !h.resumed || node != "n2" {
					t.Fatalf("n1 resuming n2's ticket: resumed %v, tag %q", h.resumed, node)
				}
			}
		})
	}
}

// TestOtherClusterFullHandshake: a ticket of another cluster key is not
// resumed; the handshake completes in full, with no error, and is counted.
func TestOtherClusterFullHandshake(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			clk := newClock(t0)
			n1, x := startNode(t, "n1", clusterKey, clk), startNode(t, "n2", otherKey, clk)
			c := &cache{}
			connect(t, n1, c, ver.v)
			h := connect(t, x, c, ver.v)
			if node, _ := NodeOf(presented(h)); h.resumed || node != "n1" {
				t.Fatalf("other cluster: resumed %v, tag %q", h.resumed, node)
			}
			if s := x.keys.Stats(); s.Auth != 1 || s.Accepted != 0 {
				t.Fatalf("other cluster stats %+v, want one auth failure", s)
			}
		})
	}
}

// TestRotation: a ticket is resumed in its own period, the next one, and
// by a node whose clock is one period behind the issuer's; not two or
// three periods later, nor by a node two periods behind.
func TestRotation(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			issuerClk, clk := newClock(t0), newClock(t0)
			n1, n2 := startNode(t, "n1", clusterKey, issuerClk), startNode(t, "n2", clusterKey, clk)
			c := &cache{}
			connect(t, n1, c, ver.v)
			session := c.get()
			for _, step := range []struct {
				name    string
				advance time.Duration // n2's clock minus the issuer's
				resume  bool
			}{
				{"same period", 0, true},
				{"next period", rotation, true},
				{"issuer one period ahead", -rotation, true},
				{"two periods later", 2 * rotation, false},
				{"three periods later", 3 * rotation, false},
				{"issuer two periods ahead", -2 * rotation, false},
			} {
				clk.unix.Store(issuerClk.now().Add(step.advance).Unix())
				c.Put("", session)
				before := n2.keys.Stats()
				h := connect(t, n2, c, ver.v)
				after := n2.keys.Stats()
				if h.resumed != step.resume {
					t.Errorf("%s: resumed %v, want %v", step.name, h.resumed, step.resume)
				}
				if !step.resume && after.Expired != before.Expired+1 {
					t.Errorf("%s: expired count %d -> %d", step.name, before.Expired, after.Expired)
				}
			}
			if n2.keys.Stats().Rotations == 0 {
				t.Error("n2's keys never rotated")
			}
		})
	}
}

// TestTamperedTag: a ticket whose clear tag was edited to name another
// node (same length, so the rest parses) does not decrypt anywhere: the
// tag is the AEAD's additional data. The front would read n2 from it; n2
// makes a full handshake.
func TestTamperedTag(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			clk := newClock(t0)
			n1, n2 := startNode(t, "n1", clusterKey, clk), startNode(t, "n2", clusterKey, clk)
			c := &cache{}
			connect(t, n1, c, ver.v)
			ticket, state, err := c.get().ResumptionState()
			if err != nil {
				t.Fatal(err)
			}
			forged := bytes.Clone(ticket)
			if string(forged[5:7]) != "n1" {
				t.Fatalf("tag %q", forged[:7])
			}
			forged[6] = '2'
			fs, err := tls.NewResumptionState(forged, state)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []*node{n2, n1} {
				c.Put("", fs)
				h := connect(t, n, c, ver.v)
				if node, _ := NodeOf(presented(h)); h.resumed || node != "n2" {
					t.Fatalf("%s: forged tag resumed %v, tag %q", n.id, h.resumed, node)
				}
				if s := n.keys.Stats(); s.Auth != 1 {
					t.Fatalf("%s: stats %+v, want one auth failure", n.id, s)
				}
			}
		})
	}
}
