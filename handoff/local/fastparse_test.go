package local

import (
	"bufio"
	"bytes"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

// FuzzParseFast: parseFast never panics, and it takes a head only when
// net/http reads the same bytes as the same request: method, path,
// protocol, Host, headers, no body, the connection closed or kept alive
// (Request.Close, and the Connection header the response gets: net/http's
// rules, restated from server.go's writeHeader), and exactly the head's
// bytes consumed.
func FuzzParseFast(f *testing.F) {
	for _, req := range fastCorpus("Sat, 28 Nov 2026 01:00:00 GMT") {
		f.Add([]byte(req))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := parseFast(b)
		if !ok {
			return
		}
		br := bufio.NewReaderSize(bytes.NewReader(b), len(b)+16)
		hr, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("fast, but net/http: %v", err)
		}
		want := "GET"
		if r.head {
			want = "HEAD"
		}
		// net/http's server refuses a request with no Host or several;
		// http.ReadRequest takes them (and drops Host from the headers).
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
		tp.ReadLine()
		mh, err := tp.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("fast, but textproto: %v", err)
		}
		hosts := mh.Values("Host")
		h := hr.Header
		switch {
		case hr.Method != want || hr.URL.Path != r.target || hr.RequestURI != r.target || hr.URL.RawQuery != "" || hr.URL.RawPath != "":
			t.Fatalf("fast %s %q, net/http %s %q (%+v)", want, r.target, hr.Method, hr.RequestURI, hr.URL)
		case hr.ProtoMajor != 1 || hr.ProtoMinor != r.minor || hr.Close != r.close || hr.ContentLength != 0 || len(hr.TransferEncoding) != 0:
			t.Fatalf("fast HTTP/1.%d close %v, net/http: %s close %v length %d %v", r.minor, r.close, hr.Proto, hr.Close, hr.ContentLength, hr.TransferEncoding)
		case responseConnection(hr) != r.conn:
			t.Fatalf("fast answers Connection %q, net/http %q", r.conn, responseConnection(hr))
		case hr.Host != r.host || len(hosts) > 1 || len(hosts) == 0 && r.minor == 1:
			t.Fatalf("fast host %q, net/http %q %q", r.host, hr.Host, hosts)
		case !maps.EqualFunc(h, r.header, slices.Equal):
			t.Fatalf("fast headers %q, net/http %q", r.header, h)
		case len(b)-br.Buffered() != r.size:
			t.Fatalf("fast head %d bytes, net/http read %d", r.size, len(b)-br.Buffered())
		}
	})
}

// responseConnection is the Connection header net/http's server writes in
// a response with a Content-Length to hr, or "" for none: HTTP/1.0 with
// keep-alive among the first Connection header's tokens gets keep-alive;
// else HTTP/1.1 with Request.Close or close in the first Connection header
// gets close; else none.
func responseConnection(hr *http.Request) string {
	has := func(token string) bool {
		for f := range strings.SplitSeq(hr.Header.Get("Connection"), ",") {
			if strings.EqualFold(strings.Trim(f, " \t"), token) {
				return true
			}
		}
		return false
	}
	switch {
	case hr.ProtoMinor == 0 && has("keep-alive"):
		return "keep-alive"
	case hr.ProtoMinor == 1 && (hr.Close || has("close")):
		return "close"
	}
	return ""
}

// TestParseFastDecides: the shapes the fast path takes, with what becomes
// of the connection (closed; the response's Connection header), and some
// it must leave to net/http.
func TestParseFastDecides(t *testing.T) {
	const host = "Host: a\r\n"
	for _, c := range []struct {
		req   string
		ok    bool
		close bool
		conn  string
	}{
		{get("/obj/1k"), true, false, ""},
		{"HEAD /obj/1k HTTP/1.1\r\n" + host + "\r\n", true, false, ""},
		{get("/obj/1k") + "GET", true, false, ""}, // the rest is the next request's
		{"GET /obj/1k HTTP/1.1\r\n" + host + "connection: close\r\n\r\n", true, true, "close"},
		{"HEAD /obj/1k HTTP/1.1\r\n" + host + "Connection: CLOSE\r\n\r\n", true, true, "close"},
		{"GET /obj/1k HTTP/1.1\r\n" + host + "Connection: Keep-Alive\r\n\r\n", true, false, ""},
		{"GET /obj/1k HTTP/1.0\r\n" + host + "\r\n", true, true, ""},
		{"GET /obj/1k HTTP/1.0\r\n\r\n", true, true, ""},
		{"GET /obj/1k HTTP/1.0\r\nConnection: close\r\n\r\n", true, true, ""},
		{"GET /obj/1k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true, false, "keep-alive"},
		{get("/obj/1k?x"), false, false, ""},
		{get("/obj/"), false, false, ""},
		{get("/a/index.html"), false, false, ""},
		{get("/a/../b"), false, false, ""},
		{"GET /obj/1k HTTP/1.1\r\n\r\n", false, false, ""}, // no Host
		{"GET /obj/1k HTTP/1.0\r\n" + host + host + "\r\n", false, false, ""},
		{"GET /obj/1k HTTP/1.2\r\n" + host + "\r\n", false, false, ""},
		{"GET /obj/1k HTTP/1.1\r\n" + host, false, false, ""}, // incomplete
		{"GET /obj/1k HTTP/1.1\r\n" + host + "If-None-Match: x\r\n\r\n", false, false, ""},
		{"GET /obj/1k HTTP/1.1\r\n" + host + "Connection: close, te\r\n\r\n", false, false, ""},
		{"GET /obj/1k HTTP/1.1\r\n" + host + "Connection: close\r\nConnection: close\r\n\r\n", false, false, ""},
		{"GET /obj/1k HTTP/1.1\r\n" + host + "Connection: upgrade\r\n\r\n", false, false, ""},
		{"GET /obj/1k HTTP/1.0\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n", false, false, ""},
	} {
		r, ok := parseFast([]byte(c.req))
		if ok != c.ok || ok && (r.close != c.close || r.conn != c.conn) {
			t.Errorf("%q: fast %v close %v Connection %q, want %v %v %q", c.req, ok, r.close, r.conn, c.ok, c.close, c.conn)
		}
	}
}
