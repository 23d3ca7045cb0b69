package app

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, c *http.Client, url string, cookie *http.Cookie) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestAppCGI(t *testing.T) {
	srv := httptest.NewServer(New("n2"))
	defer srv.Close()
	c := srv.Client()
	resp, body := get(t, c, srv.URL+"/app.cgi", nil)
	if resp.StatusCode != 200 || body != "app.cgi node=n2 count=1\n" || resp.Header.Get("X-Shoal-App") != "n2" {
		t.Fatalf("first: %s %q %v", resp.Status, body, resp.Header)
	}
	sc := resp.Header.Values("Set-Cookie")
	if len(sc) != 1 || !regexp.MustCompile(`^shoal_session=[0-9a-f]{32}; Path=/; HttpOnly$`).MatchString(sc[0]) {
		t.Fatalf("Set-Cookie %q; want shoal_session=<32 hex>; Path=/; HttpOnly", sc)
	}
	ck := resp.Cookies()[0]
	resp, body = get(t, c, srv.URL+"/app.cgi", ck)
	if body != "app.cgi node=n2 count=2\n" || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("with the cookie: %q, Set-Cookie %q; want count=2 and no new cookie", body, resp.Header.Get("Set-Cookie"))
	}
	// Another cookie does not count as the session.
	resp, _ = get(t, c, srv.URL+"/app.cgi", &http.Cookie{Name: "other", Value: "x"})
	if resp.Header.Get("Set-Cookie") == "" {
		t.Fatal("a request without shoal_session got no Set-Cookie")
	}
	resp2, _ := get(t, c, srv.URL+"/app.cgi", nil)
	if resp2.Cookies()[0].Value == resp.Cookies()[0].Value {
		t.Fatal("two sessions got the same value")
	}
	for path, want := range map[string]int{"/": 404, "/page.html": 404, "/app.cgi/x": 404, "/upload": 405} {
		if resp, _ := get(t, c, srv.URL+path, nil); resp.StatusCode != want {
			t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
		}
	}
	if resp, err := c.Post(srv.URL+"/app.cgi", "text/plain", strings.NewReader("x")); err != nil || resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /app.cgi: %v %v", resp, err)
	}
}

// TestUploadStreams: the sum and length of bodies of many sizes, one of
// them sent chunked from a pipe in pieces, so the handler cannot need the
// whole body before it starts.
func TestUploadStreams(t *testing.T) {
	srv := httptest.NewServer(New("n3"))
	defer srv.Close()
	for _, size := range []int{0, 1, 65535, 65536, 1 << 20, 9<<20 + 7} {
		body := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(size)}).Read(body)
		sum := sha256.Sum256(body)
		want := fmt.Sprintf("%s %d\n", hex.EncodeToString(sum[:]), size)
		pr, pw := io.Pipe()
		go func() {
			for b := body; len(b) > 0; {
				n := min(len(b), 7777)
				pw.Write(b[:n])
				b = b[n:]
			}
			pw.Close()
		}()
		resp, err := srv.Client().Post(srv.URL+"/upload", "application/octet-stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != want {
			t.Errorf("%d bytes: %s %q, want %q", size, resp.Status, got, want)
		}
	}
}

// TestUploadExpectContinue: a raw client that sends the head with Expect:
// 100-continue gets "100 Continue" before it sends a byte of the body, then
// the sum; and a client that sends the body right behind the head anyway
// (as the lab's e2e test does) gets the sum too.
func TestUploadExpectContinue(t *testing.T) {
	srv := httptest.NewServer(New("n2"))
	defer srv.Close()
	body := strings.Repeat("shoal", 100000)
	sum := sha256.Sum256([]byte(body))
	want := fmt.Sprintf("%s %d\n", hex.EncodeToString(sum[:]), len(body))
	head := fmt.Sprintf("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, head)
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("after the head: %q %v; want 100 Continue", line, err)
	}
	if l, _ := br.ReadString('\n'); l != "\r\n" {
		t.Fatalf("100 Continue followed by %q", l)
	}
	io.WriteString(c, body)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}

	c2, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c2, head+body) // one write: the body does not wait
	br2 := bufio.NewReader(c2)
	resp, err = http.ReadResponse(br2, nil)
	if err == nil && resp.StatusCode == 100 {
		resp, err = http.ReadResponse(br2, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	if string(got) != want {
		t.Fatalf("body behind the head: got %q, want %q", got, want)
	}
}

func TestListenAndServeUnix(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	for _, bad := range []string{"unix:rel.sock", "nothing", "127.0.0.1:99999"} {
		if _, err := Listen(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("Listen(%q) = %v; want an error naming it", bad, err)
		}
	}
	ln, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, "n3") }()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, body := get(t, c, "http://app/app.cgi", nil)
	if resp.StatusCode != 200 || body != "app.cgi node=n3 count=1\n" {
		t.Fatalf("%s %q", resp.Status, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	// A socket file left behind (a killed app) is replaced.
	ln2, err := Listen("unix:" + sock)
	if err != nil {
		t.Fatalf("listening again: %v", err)
	}
	ln2.Close()
}
