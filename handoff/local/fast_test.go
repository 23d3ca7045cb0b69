package local

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/objcache"
)

// fastCorpus is the differential test's requests: each is written whole on
// a new connection, whose write side is then closed.
func fastCorpus(lm string) map[string]string {
	const h = "Host: shop.example\r\n"
	big := strings.Repeat("a", 8000)
	huge := strings.Repeat("b", 1<<20+8192)
	return map[string]string{
		"get":                get("/obj/1k"),
		"head":               "HEAD /obj/1k HTTP/1.1\r\n" + h + "\r\n",
		"get-html":           get("/page.html"),
		"get-text":           get("/t.txt"),
		"get-empty":          get("/empty"),
		"http10":             "GET /obj/1k HTTP/1.0\r\n\r\n",
		"http10-keepalive":   "GET /obj/1k HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /t.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"close":              "GET /obj/1k HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n" + get("/t.txt"),
		"pipelined":          get("/obj/1k") + get("/t.txt"),
		"pipelined-head":     get("/obj/1k") + "HEAD /obj/1k HTTP/1.1\r\n" + h + "\r\n" + get("/obj/1k"),
		"pipelined-fallback": get("/obj/1k") + "GET /obj/1k HTTP/1.1\r\n" + h + "Range: bytes=0-9\r\n\r\n" + get("/obj/1k"),
		"range":              "GET /obj/1k HTTP/1.1\r\n" + h + "Range: bytes=0-9\r\n\r\n",
		"if-modified-since":  "GET /obj/1k HTTP/1.1\r\n" + h + "If-Modified-Since: " + lm + "\r\n\r\n",
		"if-none-match":      "GET /obj/1k HTTP/1.1\r\n" + h + "If-None-Match: \"x\"\r\n\r\n",
		"query":              get("/obj/1k?x=1"),
		"encoded":            get("/obj/%31k"),
		"dotdot":             get("/obj/../obj/1k"),
		"dot":                get("/./obj/1k"),
		"double-slash":       get("//obj/1k"),
		"trailing-slash":     get("/obj/"),
		"directory":          get("/obj"),
		"index":              get("/obj/index.html"),
		"missing":            get("/nope") + get("/obj/1k"),
		"large":              get("/obj/1m"),
		"body":               "GET /obj/1k HTTP/1.1\r\n" + h + "Content-Length: 5\r\n\r\nhello" + get("/obj/1k"),
		"post":               "POST /obj/1k HTTP/1.1\r\n" + h + "Content-Length: 5\r\n\r\nhello",
		"chunked":            "GET /obj/1k HTTP/1.1\r\n" + h + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"expect":             "GET /obj/1k HTTP/1.1\r\n" + h + "Expect: 100-continue\r\n\r\n",
		"casing":             "GET /obj/1k HTTP/1.1\r\nhOST: shop.example\r\nuser-AGENT: x\r\naccept: */*\r\n\r\n",
		"obs-fold":           "GET /obj/1k HTTP/1.1\r\n" + h + "X-A: a\r\n b\r\n\r\n",
		"bare-lf":            "GET /obj/1k HTTP/1.1\nHost: shop.example\n\n",
		"bare-cr":            "GET /obj/1k HTTP/1.1\r\n" + h + "X-A: a\rb\r\n\r\n",
		"big-head":           "GET /obj/1k HTTP/1.1\r\n" + h + "X-Big: " + big + "\r\n\r\n",
		"oversized-head":     "GET /obj/1k HTTP/1.1\r\n" + h + "X-Huge: " + huge + "\r\n\r\n",
		"cookie":             "GET /obj/1k HTTP/1.1\r\n" + h + "Cookie: a=b; shoal=n2~x\r\n\r\n",
		// A response, then fewer than 4 bytes and the end: net/http
		// waits for 4 bytes as idle and closes silently.
		"tail-crlf":           get("/t.txt") + "\r\n",
		"tail-1":              get("/t.txt") + "G",
		"tail-3":              get("/t.txt") + "GET",
		"tail-nul":            get("/t.txt") + "\x00\x00",
		"no-host":             "GET /obj/1k HTTP/1.1\r\n\r\n",
		"two-hosts":           "GET /obj/1k HTTP/1.1\r\n" + h + h + "\r\n",
		"empty-host":          "GET /obj/1k HTTP/1.1\r\nHost:\r\n\r\n",
		"bad-host":            "GET /obj/1k HTTP/1.1\r\nHost: a b\r\n\r\n",
		"lowercase-method":    "get /obj/1k HTTP/1.1\r\n" + h + "\r\n",
		"absolute-form":       "GET http://shop.example/obj/1k HTTP/1.1\r\n" + h + "\r\n",
		"space-in-name":       "GET /obj/1k HTTP/1.1\r\n" + h + "X-A : b\r\n\r\n",
		"value-spaces":        "GET /obj/1k HTTP/1.1\r\nHost:   shop.example \t \r\nX-A:\t v \r\n\r\n",
		"pragma":              "GET /obj/1k HTTP/1.1\r\n" + h + "Pragma: no-cache\r\n\r\n",
		"http11-keepalive":    "GET /obj/1k HTTP/1.1\r\n" + h + "Connection: keep-alive\r\n\r\n" + get("/obj/1k"),
		"leading-crlf":        "\r\n" + get("/obj/1k"),
		"incomplete":          "GET /obj/1k HTTP/1.1\r\n" + h,
		"html-group":          get("/page.html") + get("/x.cgi"),
		"obs-text":            "GET /obj/1k HTTP/1.1\r\n" + h + "X-A: \xe9\r\n\r\n",
		"ctl-in-value":        "GET /obj/1k HTTP/1.1\r\n" + h + "X-A: a\x01b\r\n\r\n",
		"http2-preface":       "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"many-headers":        "GET /obj/1k HTTP/1.1\r\n" + h + strings.Repeat("X-A: 1\r\n", 40) + "\r\n",
		"options":             "OPTIONS * HTTP/1.1\r\n" + h + "\r\n",
		"head-then-get-large": "HEAD /obj/1m HTTP/1.1\r\n" + h + "\r\n" + get("/obj/1m"),
		// Requests that end the connection: answered, then closed,
		// whatever follows.
		"close-head":           "HEAD /obj/1k HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n",
		"close-case":           "GET /obj/1k HTTP/1.1\r\n" + h + "connection: CLOSE\r\n\r\n",
		"close-in-pipeline":    get("/t.txt") + "GET /obj/1k HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n" + get("/t.txt"),
		"close-then-tail":      "GET /obj/1k HTTP/1.1\r\n" + h + "Connection: close\r\n\r\nGE",
		"close-list":           "GET /obj/1k HTTP/1.1\r\n" + h + "Connection: close, x-a\r\n\r\n",
		"close-twice":          "GET /obj/1k HTTP/1.1\r\n" + h + "Connection: close\r\nConnection: close\r\n\r\n",
		"close-upgrade":        "GET /obj/1k HTTP/1.1\r\n" + h + "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		"close-missing":        "GET /nope HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n",
		"close-large":          "GET /obj/1m HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n",
		"close-cgi":            "GET /x.cgi HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n",
		"close-html":           "GET /page.html HTTP/1.1\r\n" + h + "Connection: close\r\n\r\n",
		"close-range":          "GET /obj/1k HTTP/1.1\r\n" + h + "Connection: close\r\nRange: bytes=0-9\r\n\r\n",
		"keepalive-header":     "GET /t.txt HTTP/1.1\r\n" + h + "Connection: Keep-Alive\r\n\r\n" + get("/t.txt"),
		"http10-head":          "HEAD /obj/1k HTTP/1.0\r\n\r\n",
		"http10-host":          "GET /obj/1k HTTP/1.0\r\n" + h + "User-Agent: ab\r\n\r\n" + get("/t.txt"),
		"http10-close":         "GET /t.txt HTTP/1.0\r\nConnection: close\r\n\r\n",
		"http10-two-hosts":     "GET /obj/1k HTTP/1.0\r\n" + h + h + "\r\n",
		"http10-empty-host":    "GET /obj/1k HTTP/1.0\r\nHost:\r\n\r\n",
		"http10-keepalive-end": "GET /obj/1k HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\nHEAD /t.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /t.txt HTTP/1.0\r\n\r\n" + get("/t.txt"),
		"http10-keepalive-fallback": "GET /obj/1k HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /obj/1k HTTP/1.0\r\nConnection: keep-alive\r\nRange: bytes=1-2\r\n\r\n" +
			"GET /obj/1k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"http10-keepalive-args": "GET /obj/1k HTTP/1.0\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
		"http10-missing":        "GET /nope HTTP/1.0\r\n\r\n",
		"http10-html":           "GET /page.html HTTP/1.0\r\n\r\n",
		"http09":                "GET /obj/1k\r\n\r\n",
		"http2-version":         "GET /obj/1k HTTP/2.0\r\n" + h + "\r\n",
	}
}

var dateLine = regexp.MustCompile("\r\nDate: [^\r]*\r\n")

// TestFastAsNetHTTP: every request of fastCorpus gets, through the fast
// path, the bytes net/http alone (the same server without it) sends, but
// for Date, and the same end (the connection closed by the server, with
// no reset); both servers count the same; and the Group callback sees the
// same requests in both (method, target, protocol, Close, Host, headers,
// remote address).
func TestFastAsNetHTTP(t *testing.T) {
	dir, _ := content(t)
	for name, b := range map[string][]byte{"obj/1k": bytes.Repeat([]byte{0, 0xfe, 7, 9}, 256), "obj/index.html": []byte("<p>i</p>"), "t.txt": []byte("text\n"), "empty": nil} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fi, _ := os.Stat(filepath.Join(dir, "obj", "1k"))
	lm := fi.ModTime().UTC().Format(http.TimeFormat)
	// seen[server] is what Group saw of the current case's requests, as
	// a set: net/http asks again for a request the fast path passed on.
	var mu sync.Mutex
	seen := map[string]map[string]bool{}
	group := func(server string) func(*http.Request) string {
		return func(r *http.Request) string {
			mu.Lock()
			defer mu.Unlock()
			if seen[server] == nil {
				seen[server] = map[string]bool{}
			}
			seen[server][fmt.Sprintf("%s %s %s %s %d.%d close=%v host=%q %q remote=%v",
				r.Method, r.RequestURI, r.URL.Path, r.Proto, r.ProtoMajor, r.ProtoMinor, r.Close, r.Host, r.Header, r.RemoteAddr != "")] = true
			return cgiGroup(r)
		}
	}
	cfg := Config{Self: "n1", Content: dir, SmallFiles: objcache.Options{Settle: time.Nanosecond}, Group: group("fast"),
		Serves: func(g string) bool { return g != "cgi" }}
	fast := newServer(t, cfg)
	cfg.NoFastPath = true
	cfg.Group = group("plain")
	plain := newServer(t, cfg)
	send := func(s *Server, origin, req string) []byte {
		client, server := tcpPair(t, "")
		s.ServeHTTP(server, origin)
		client.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			io.WriteString(client, req)
			client.CloseWrite()
		}()
		b, err := io.ReadAll(client)
		if err != nil {
			t.Errorf("%q: %v", req[:min(len(req), 40)], err)
		}
		return dateLine.ReplaceAll(b, []byte("\r\nDate: -\r\n"))
	}
	for name, req := range fastCorpus(lm) {
		for _, origin := range []string{"", "n9"} {
			mu.Lock()
			clear(seen)
			mu.Unlock()
			want, got := send(plain, origin, req), send(fast, origin, req)
			if !bytes.Equal(got, want) {
				t.Errorf("%s (origin %q): fast path sent\n%q\nnet/http\n%q", name, origin, trim(got), trim(want))
			}
			mu.Lock()
			if !maps.Equal(seen["fast"], seen["plain"]) {
				t.Errorf("%s (origin %q): Group saw, through the fast path\n%q\nnet/http alone\n%q", name, origin, slices.Sorted(maps.Keys(seen["fast"])), slices.Sorted(maps.Keys(seen["plain"])))
			}
			mu.Unlock()
		}
	}
	cf, cp := fast.Counters(), plain.Counters()
	// 41 of the corpus's requests are the fast path's, per origin: get,
	// head, get-html, get-text, get-empty, pipelined (2), pipelined-head
	// (3), the first of pipelined-fallback, value-spaces, casing, cookie,
	// html-group's first (its group, "html", is served here), the four
	// tail-* requests; http10, http10-keepalive (2), close's first,
	// http11-keepalive (2); close-head, close-case, close-in-pipeline (2),
	// close-then-tail, close-html, keepalive-header (2), http10-head,
	// http10-host's first, http10-close, http10-keepalive-end's first
	// three, http10-keepalive-fallback's first and http10-html.
	if cp.StaticFast != 0 || cf.StaticFast != 82 {
		t.Errorf("%d requests by the fast path, %d without it", cf.StaticFast, cp.StaticFast)
	}
	cf.StaticFast = 0
	if cf != cp {
		t.Errorf("counters differ:\nfast     %+v\nnet/http %+v", cf, cp)
	}
	if cf.StaticCached < 20 {
		t.Errorf("only %d requests from the cache", cf.StaticCached)
	}
}

func trim(b []byte) []byte {
	if len(b) > 600 {
		return append(b[:600:600], "..."...)
	}
	return b
}

// TestFastShutdown: Shutdown closes a connection idle in the fast loop at
// once, as net/http closes its idle ones, and refuses new connections.
func TestFastShutdown(t *testing.T) {
	dir, _ := content(t)
	s, err := New(Config{Self: "n1", Content: dir})
	if err != nil {
		t.Fatal(err)
	}
	client, server := tcpPair(t, "")
	s.ServeHTTP(server, "")
	br := bufio.NewReader(client)
	for range 2 {
		if resp, body := exchange(t, client, br, get("/page.html")); resp.StatusCode != 200 || string(body) != "<p>page</p>\n" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	if n := s.Counters().StaticFast; n != 2 {
		t.Fatalf("%d requests by the fast path, want 2", n)
	}
	shutdownAtOnce(t, s, client)
	c2, s2 := tcpPair(t, "")
	s.ServeHTTP(s2, "")
	waitClosed(t, c2, time.Second)
}

// TestFastTimeouts: the fast loop closes a connection silently after
// IdleTimeout between requests and after ReadHeaderTimeout before the
// first, as net/http does (timeouts shortened for the test).
func TestFastTimeouts(t *testing.T) {
	dir, _ := content(t)
	for _, noFast := range []bool{false, true} {
		s, err := New(Config{Self: "n1", Content: dir, NoFastPath: noFast,
			ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		client, server := tcpPair(t, "")
		s.ServeHTTP(server, "")
		br := bufio.NewReader(client)
		if resp, _ := exchange(t, client, br, get("/page.html")); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if d := waitClosed(t, client, 3*time.Second); d < 200*time.Millisecond {
			t.Errorf("without the fast path %v: idle connection closed after %v, want 300 ms", noFast, d)
		}
		c2, s2 := tcpPair(t, "")
		s.ServeHTTP(s2, "")
		if d := waitClosed(t, c2, 3*time.Second); d < 200*time.Millisecond {
			t.Errorf("without the fast path %v: silent new connection closed after %v, want 300 ms", noFast, d)
		}
		if n := s.Counters().StaticFast; noFast == (n != 0) {
			t.Errorf("without the fast path %v: %d requests by the fast path", noFast, n)
		}
		ctx, cancel := contextWithTimeout(5 * time.Second)
		s.Shutdown(ctx)
		cancel()
	}
}

// TestFastIdleMemory: an idle connection of the fast loop keeps neither a
// large response buffer (after a pipelined pair of 40 KiB files) nor the
// bytes of a cache entry the cache has since replaced: per idle
// connection it holds less than 32 KiB (before the fix, 72–96 KiB; net/http
// alone about 10 KiB).
func TestFastIdleMemory(t *testing.T) {
	dir, _ := content(t)
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("y"), 40<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Config{Self: "n1", Content: dir, SmallFiles: objcache.Options{Settle: time.Nanosecond}})
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	const n = 100
	for i := range n {
		// A new version of the file for every connection: the cache
		// replaces its entry, which only an idle connection could keep.
		if err := os.WriteFile(big, bytes.Repeat([]byte{byte('a' + i%26)}, 40<<10), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(big, time.Now(), time.Unix(int64(1e9+i), 0)); err != nil {
			t.Fatal(err)
		}
		client, server := tcpPair(t, "")
		s.ServeHTTP(server, "")
		client.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(client)
		if _, err := io.WriteString(client, get("/big")+get("/big")); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || len(b) != 40<<10 {
				t.Fatalf("status %d, %d bytes", resp.StatusCode, len(b))
			}
		}
	}
	if f := s.Counters().StaticFast; f < n {
		t.Fatalf("only %d requests by the fast path", f)
	}
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if per := (int64(m1.HeapAlloc) - int64(m0.HeapAlloc)) / n; per > 32<<10 {
		t.Errorf("%d bytes of heap per idle connection", per)
	} else {
		t.Logf("%d bytes of heap per idle connection", per)
	}
}

// TestFastSilentNewAtShutdown: a connection that has sent nothing for
// more than 5 s is idle to Shutdown, as net/http treats its own: Shutdown
// closes it and returns at once instead of waiting for its context.
func TestFastSilentNewAtShutdown(t *testing.T) {
	dir, _ := content(t)
	s, err := New(Config{Self: "n1", Content: dir})
	if err != nil {
		t.Fatal(err)
	}
	client, server := tcpPair(t, "")
	s.ServeHTTP(server, "")
	time.Sleep(fastNewIdle + 300*time.Millisecond)
	shutdownAtOnce(t, s, client)
}

// shutdownAtOnce shuts s down, which must succeed within a second (its
// only connection, client's, being idle), and waits for client to be
// closed.
func shutdownAtOnce(t *testing.T, s *Server, client net.Conn) {
	t.Helper()
	ctx, cancel := contextWithTimeout(5 * time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v with only an idle connection", d)
	}
	waitClosed(t, client, time.Second)
}

// TestFastCloseAsNetHTTP: a request that ends the connection (HTTP/1.1
// with Connection: close, HTTP/1.0 without keep-alive) is answered, and
// the server closes the connection as net/http does, while the client's
// side stays open: the response, then the end of the stream, and the
// socket closed whole (a byte the client sends then is answered by a
// reset), not half-closed and lingering.
func TestFastCloseAsNetHTTP(t *testing.T) {
	dir, _ := content(t)
	cfg := Config{Self: "n1", Content: dir, SmallFiles: objcache.Options{Settle: time.Nanosecond}}
	fast := newServer(t, cfg)
	cfg.NoFastPath = true
	plain := newServer(t, cfg)
	end := func(s *Server, req string) (resp []byte, after string) {
		client, server := tcpPair(t, "")
		s.ServeHTTP(server, "")
		client.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(client, req); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(client)
		if err != nil {
			t.Fatalf("%q: %v after %q", req, err, b)
		}
		// The server has sent its FIN: bytes the client sends now reach
		// a socket that is gone, whose kernel answers with a reset (the
		// client's next write fails: EPIPE, as it had the FIN), or one
		// still open (half-closed, lingering), which takes them.
		client.Write([]byte("GET"))
		time.Sleep(100 * time.Millisecond)
		_, err = client.Write([]byte("GET"))
		switch {
		case errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET):
			after = "reset"
		case err == nil:
			after = "still open"
		default:
			after = fmt.Sprint(err)
		}
		return dateLine.ReplaceAll(b, []byte("\r\nDate: -\r\n")), after
	}
	for _, req := range []string{
		"GET /page.html HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"HEAD /page.html HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GET /page.html HTTP/1.0\r\n\r\n",
		"GET /page.html HTTP/1.0\r\nConnection: close\r\n\r\n",
		get("/page.html") + "GET /page.html HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	} {
		want, wantAfter := end(plain, req)
		got, gotAfter := end(fast, req)
		if !bytes.Equal(got, want) || gotAfter != wantAfter || !bytes.Contains(got, []byte("200 OK")) {
			t.Errorf("%q: fast path sent %q and then %s; net/http %q and then %s", req, got, gotAfter, want, wantAfter)
		}
	}
	if n := fast.Counters().StaticFast; n != 6 {
		t.Errorf("%d requests by the fast path, want 6", n)
	}
}
