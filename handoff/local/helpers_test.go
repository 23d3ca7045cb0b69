package local

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newServer starts a Server that the test shuts down.
func newServer(t *testing.T, c Config) *Server {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// tcpPair returns the two ends of a real loopback TCP connection; the
// client end is bound to from (e.g. "127.0.0.5:0").
func tcpPair(t *testing.T, from string) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{}
	if from != "" {
		d.LocalAddr, _ = net.ResolveTCPAddr("tcp", from)
	}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// exchange writes one request on c and reads its response and body.
func exchange(t *testing.T, c net.Conn, br *bufio.Reader, req string) (*http.Response, []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, br)
}

func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp, body
}

// readFinal reads the final response, skipping interim ones: both this
// server (when the handler reads the body) and an upstream or far node
// (ReverseProxy forwards 1xx) may say 100 Continue, and a client skips
// interim responses.
func readFinal(t *testing.T, br *bufio.Reader) (*http.Response, []byte) {
	t.Helper()
	resp, body := readResponse(t, br)
	for resp.StatusCode >= 100 && resp.StatusCode < 200 {
		resp, body = readResponse(t, br)
	}
	return resp, body
}

func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: shop.example\r\n\r\n"
}

// content makes a content directory with /obj/1m (random bytes) and
// /page.html.
func content(t *testing.T) (dir string, obj []byte) {
	t.Helper()
	dir = t.TempDir()
	obj = make([]byte, 1<<20)
	rand.Read(obj)
	if err := os.MkdirAll(filepath.Join(dir, "obj"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "obj", "1m"), obj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "page.html"), []byte("<p>page</p>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, obj
}

// cgiGroup puts *.cgi and /upload in group "cgi" and *.html in "html".
func cgiGroup(r *http.Request) string {
	switch {
	case strings.HasSuffix(r.URL.Path, ".cgi"), r.URL.Path == "/upload":
		return "cgi"
	case strings.HasSuffix(r.URL.Path, ".html"):
		return "html"
	}
	return ""
}

// app is the lab's upstream application, served on a unix socket: GET
// /app.cgi echoes the Cookie and X-Forwarded-* headers it received and sets
// the session cookie when absent; POST /upload answers the hex SHA-256 and
// length of the body. It also tries to name a node, which the server
// must not let through.
func app(t *testing.T) (addr string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal-local")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/app.cgi", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderNode, "upstream-says")
		w.Header().Set("X-Seen-Cookie", r.Header.Get("Cookie"))
		w.Header().Set("X-Seen-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
		w.Header().Set("X-Seen-Host", r.Host)
		if _, err := r.Cookie("shoal_session"); err != nil {
			http.SetCookie(w, &http.Cookie{Name: "shoal_session", Value: "s3cr3t", Path: "/"})
		}
		fmt.Fprintln(w, "app")
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %d\n", hex.EncodeToString(h.Sum(nil)), n)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "unix:" + sock
}

// testCert returns a server config with a fresh self-signed certificate
// for shop.example and a client config trusting it.
func testCert(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "shop.example"},
		DNSNames:     []string{"shop.example"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{RootCAs: pool, ServerName: "shop.example"}
	return server, client
}

// relayListener starts s.ServeRelay on a fresh loopback port.
func relayListener(t *testing.T, s *Server) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeRelay(ln)
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// only maps one address to one member.
func only(a, node string) func(netip.Addr) (string, bool) {
	want := netip.MustParseAddr(a)
	return func(got netip.Addr) (string, bool) { return node, got == want }
}

// waitClosed asserts that the server closes c (EOF or reset) within d,
// without sending anything.
func waitClosed(t *testing.T, c net.Conn, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	b := make([]byte, 64)
	n, err := c.Read(b)
	if n > 0 {
		t.Fatalf("server sent %q, want a silent close", b[:n])
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", d)
	}
	return time.Since(start)
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// slowApp answers /slow.cgi once release is closed.
func slowApp(t *testing.T, started, release chan struct{}) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoal-local")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "slow.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		fmt.Fprintln(w, "slow")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "unix:" + sock
}

// settle reads s's counters until ok holds or a second passes: a
// connection's close can reach the client just before the server counts it.
func settle(s *Server, ok func(Counters) bool) Counters {
	deadline := time.Now().Add(time.Second)
	for {
		n := s.Counters()
		if ok(n) || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}
