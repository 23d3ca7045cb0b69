package local

import (
	"bufio"
	"bytes"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"testing"
)

// FuzzParseFast: parseFast never panics, and it takes a head only when
// net/http reads the same bytes as the same request: method, path,
// protocol, Host, headers, no body, kept alive, and exactly the head's
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
		case hr.Proto != "HTTP/1.1" || hr.Close || hr.ContentLength != 0 || len(hr.TransferEncoding) != 0:
			t.Fatalf("net/http: %s close %v length %d %v", hr.Proto, hr.Close, hr.ContentLength, hr.TransferEncoding)
		case hr.Host != r.host || len(hosts) != 1:
			t.Fatalf("fast host %q, net/http %q %q", r.host, hr.Host, hosts)
		case !maps.EqualFunc(h, r.header, slices.Equal):
			t.Fatalf("fast headers %q, net/http %q", r.header, h)
		case len(b)-br.Buffered() != r.size:
			t.Fatalf("fast head %d bytes, net/http read %d", r.size, len(b)-br.Buffered())
		}
	})
}

// TestParseFastDecides: the shapes the fast path takes, and some it must
// leave to net/http.
func TestParseFastDecides(t *testing.T) {
	for req, want := range map[string]bool{
		get("/obj/1k"): true,
		"HEAD /obj/1k HTTP/1.1\r\nHost: a\r\n\r\n": true,
		get("/obj/1k") + "GET":                     true, // the rest is the next request's
		get("/obj/1k?x"):                           false,
		get("/obj/"):                               false,
		get("/a/index.html"):                       false,
		get("/a/../b"):                             false,
		"GET /obj/1k HTTP/1.0\r\nHost: a\r\n\r\n":  false,
		"GET /obj/1k HTTP/1.1\r\nHost: a\r\n":      false, // incomplete
		"GET /obj/1k HTTP/1.1\r\nHost: a\r\nIf-None-Match: x\r\n\r\n":  false,
		"GET /obj/1k HTTP/1.1\r\nHost: a\r\nconnection: close\r\n\r\n": false,
	} {
		if _, ok := parseFast([]byte(req)); ok != want {
			t.Errorf("%q: fast %v, want %v", req, ok, want)
		}
	}
}
