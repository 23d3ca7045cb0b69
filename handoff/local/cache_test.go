package local

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/objcache"
)

// TestCachedAsFileServer: every request answered from the small-file cache
// gets the response the file server gives without it (status, headers but
// Date, body), and requests the cache must not take (redirects, large
// files, directories, errors, methods) are still the file server's.
func TestCachedAsFileServer(t *testing.T) {
	dir, _ := content(t)
	small := bytes.Repeat([]byte{0, 0xfe, 7, 9}, 256)
	for name, b := range map[string][]byte{"obj/1k": small, "obj/index.html": []byte("<p>i</p>"), "t.txt": []byte("text\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fi, _ := os.Stat(filepath.Join(dir, "obj", "1k"))
	lm := fi.ModTime().UTC().Format(http.TimeFormat)
	before := fi.ModTime().Add(-time.Hour).UTC().Format(http.TimeFormat)
	plain := newServer(t, Config{Self: "n1", Content: dir, SmallFiles: objcache.Options{MaxFile: -1}})
	cached := newServer(t, Config{Self: "n1", Content: dir, SmallFiles: objcache.Options{Settle: time.Nanosecond}})
	open := func(s *Server) func(string) (*http.Response, []byte) {
		client, server := tcpPair(t, "")
		s.ServeHTTP(server, "")
		br := bufio.NewReader(client)
		return func(req string) (*http.Response, []byte) {
			// http.ReadResponse needs the request to know a HEAD has no body.
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(req)))
			if err != nil {
				t.Fatal(err)
			}
			client.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(client, req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, r)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			return resp, body
		}
	}
	ask, askCached := open(plain), open(cached)
	reqs := []string{
		get("/obj/1k"), get("/obj/1k"), get("/t.txt"), get("/page.html"),
		"HEAD /obj/1k HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /obj/1k HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n",
		"GET /obj/1k HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1,5-6\r\n\r\n",
		"GET /obj/1k HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: " + lm + "\r\n\r\n",
		"GET /obj/1k HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: " + before + "\r\n\r\n",
		"GET /obj/1k HTTP/1.1\r\nHost: x\r\nIf-Unmodified-Since: " + before + "\r\n\r\n",
		get("/obj/1k/"), get("/obj/index.html"), get("/obj"), get("/obj/"), get("/missing"), get("/obj/1m"),
		get("/obj/../t.txt"), get("/%2e%2e/t.txt"),
		"POST /obj/1k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
	}
	for _, req := range reqs {
		want, wantBody := ask(req)
		got, gotBody := askCached(req)
		want.Header.Del("Date")
		got.Header.Del("Date")
		if strings.HasPrefix(want.Header.Get("Content-Type"), "multipart/byteranges") {
			// Each multipart answer draws its own boundary.
			want.Header.Del("Content-Type")
			got.Header.Del("Content-Type")
			wantBody, gotBody = nil, nil
		}
		if got.StatusCode != want.StatusCode || !bytes.Equal(gotBody, wantBody) || !sameHeader(got.Header, want.Header) {
			t.Errorf("%q:\n cached %d %v %d bytes\n plain  %d %v %d bytes", req, got.StatusCode, got.Header, len(gotBody), want.StatusCode, want.Header, len(wantBody))
		}
	}
	n := cached.Counters()
	if n.StaticCached != 12 || n.Cache.Loads != 3 || n.Cache.Hits != 9 {
		t.Errorf("counters %+v; want 12 answers from the cache: 3 loads (1k, t.txt, page.html) and 9 hits", n)
	}
	if n := plain.Counters(); n.StaticCached != 0 {
		t.Errorf("cache off: %d answers from a cache", n.StaticCached)
	}
}

func sameHeader(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestCachedSeesUpdates: a small file rewritten in place or replaced by
// rename is served in its new form by the next request on the same
// connection.
func TestCachedSeesUpdates(t *testing.T) {
	dir, _ := content(t)
	name := filepath.Join(dir, "obj", "v")
	s := newServer(t, Config{Self: "n1", Content: dir, SmallFiles: objcache.Options{Settle: time.Nanosecond}})
	client, server := tcpPair(t, "")
	s.ServeHTTP(server, "")
	br := bufio.NewReader(client)
	for i, step := range []func(b []byte) error{
		func(b []byte) error { return os.WriteFile(name, b, 0o644) },
		func(b []byte) error { return os.WriteFile(name, b, 0o644) },
		func(b []byte) error {
			if err := os.WriteFile(name+".new", b, 0o644); err != nil {
				return err
			}
			return os.Rename(name+".new", name)
		},
	} {
		b := []byte{'v', byte('0' + i)}
		if err := step(b); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			resp, body := exchange(t, client, br, get("/obj/v"))
			if resp.StatusCode != 200 || !bytes.Equal(body, b) {
				t.Fatalf("step %d: %d %q, want 200 %q", i, resp.StatusCode, body, b)
			}
		}
	}
	if n := s.Counters(); n.Cache.Loads != 3 || n.Cache.Hits != 3 {
		t.Fatalf("cache %+v; want 3 loads and 3 hits", n.Cache)
	}
}
