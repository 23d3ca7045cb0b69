package peek

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// crlf turns a readable head (LF line ends) into wire form.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// Heads as real clients send them. The first three were captured from the
// tools on this machine (testdata/http); the browser heads are typical of
// current Chrome and Firefox.
var chromeGET = crlf(`GET /video/intro.mp4?t=10 HTTP/1.1
Host: www.example.com
Connection: keep-alive
sec-ch-ua: "Chromium";v="120", "Not?A_Brand";v="8"
sec-ch-ua-mobile: ?0
sec-ch-ua-platform: "Linux"
Upgrade-Insecure-Requests: 1
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7
Sec-Fetch-Site: none
Sec-Fetch-Mode: navigate
Sec-Fetch-User: ?1
Sec-Fetch-Dest: document
Accept-Encoding: gzip, deflate, br
Accept-Language: en-US,en;q=0.9
Cookie: _ga=GA1.1.123.456; shoal_session=n3.Zm9v; consent="yes"

`)

var firefoxPOST = append(crlf(`POST /cgi-bin/form.cgi HTTP/1.1
Host: forms.example.org
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8
Accept-Language: en-US,en;q=0.5
Accept-Encoding: gzip, deflate
Content-Type: application/x-www-form-urlencoded
Content-Length: 28
Origin: http://forms.example.org
Connection: keep-alive
Referer: http://forms.example.org/
Cookie: a=1
Cookie: b=2; a=3
Upgrade-Insecure-Requests: 1

`), "name=shoal&comment=hello+you"...)

func TestParseHTTPRealHeads(t *testing.T) {
	file := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "http", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want HTTPHead // Len is checked against the position of the empty line
	}{
		{"curl GET (captured)", file("curl-get.http"), HTTPHead{Method: "GET", Target: "/app.cgi?x=1", Path: "/app.cgi", ProtoMinor: 1,
			Host: "shop.example:18081", Cookies: []Cookie{{"shoal_session", "n2.abc123"}, {"theme", "dark"}}, ContentLength: -1}},
		{"curl POST with body (captured)", file("curl-post.http"), HTTPHead{Method: "POST", Target: "/upload", Path: "/upload", ProtoMinor: 1,
			Host: "127.0.0.1:18082", ContentLength: 300}},
		{"wget (captured)", file("wget.http"), HTTPHead{Method: "GET", Target: "/page.html", Path: "/page.html", ProtoMinor: 1,
			Host: "127.0.0.1:18083", ContentLength: -1}},
		{"chrome", chromeGET, HTTPHead{Method: "GET", Target: "/video/intro.mp4?t=10", Path: "/video/intro.mp4", ProtoMinor: 1,
			Host: "www.example.com", Cookies: []Cookie{{"_ga", "GA1.1.123.456"}, {"shoal_session", "n3.Zm9v"}, {"consent", "yes"}}, ContentLength: -1}},
		{"firefox POST, two Cookie fields", firefoxPOST, HTTPHead{Method: "POST", Target: "/cgi-bin/form.cgi", Path: "/cgi-bin/form.cgi", ProtoMinor: 1,
			Host: "forms.example.org", Cookies: []Cookie{{"a", "1"}, {"b", "2"}, {"a", "3"}}, ContentLength: 28}},
		{"go net/http client", crlf("GET /obj/1k HTTP/1.1\nHost: 198.18.0.100\nUser-Agent: Go-http-client/1.1\nAccept-Encoding: gzip\n\n"),
			HTTPHead{Method: "GET", Target: "/obj/1k", Path: "/obj/1k", ProtoMinor: 1, Host: "198.18.0.100", ContentLength: -1}},
		{"wrk", crlf("GET / HTTP/1.1\nHost: 198.18.0.100:80\n\n"),
			HTTPHead{Method: "GET", Target: "/", Path: "/", ProtoMinor: 1, Host: "198.18.0.100:80", ContentLength: -1}},
		{"HTTP/1.0 without Host (ab, health checks)", crlf("HEAD /health HTTP/1.0\nUser-Agent: ApacheBench/2.3\n\n"),
			HTTPHead{Method: "HEAD", Target: "/health", Path: "/health", ProtoMinor: 0, ContentLength: -1}},
		{"chunked upload", crlf("PUT /upload HTTP/1.1\nHost: h\nTransfer-Encoding: gzip, chunked\n\n"),
			HTTPHead{Method: "PUT", Target: "/upload", Path: "/upload", ProtoMinor: 1, Host: "h", ContentLength: -1, Chunked: true}},
		{"absolute form: the target's authority wins", crlf("GET http://Other.example:8080/a/../b.cgi?q HTTP/1.1\nHost: h\n\n"),
			HTTPHead{Method: "GET", Target: "http://Other.example:8080/a/../b.cgi?q", Path: "/b.cgi", ProtoMinor: 1, Host: "Other.example:8080", ContentLength: -1}},
		{"absolute form without a path", crlf("GET https://x.example HTTP/1.1\nHost: x.example\n\n"),
			HTTPHead{Method: "GET", Target: "https://x.example", Path: "/", ProtoMinor: 1, Host: "x.example", ContentLength: -1}},
		{"percent-escapes and dot segments are resolved", crlf("GET /static/..%2Fapp.cgi HTTP/1.1\nHost: h\n\n"),
			HTTPHead{Method: "GET", Target: "/static/..%2Fapp.cgi", Path: "/app.cgi", ProtoMinor: 1, Host: "h", ContentLength: -1}},
		{"trailing slash kept, slashes merged", crlf("GET //video//a/ HTTP/1.1\nHost: h\n\n"),
			HTTPHead{Method: "GET", Target: "//video//a/", Path: "/video/a/", ProtoMinor: 1, Host: "h", ContentLength: -1}},
		{"OPTIONS *", crlf("OPTIONS * HTTP/1.1\nHost: h\n\n"),
			HTTPHead{Method: "OPTIONS", Target: "*", Path: "*", ProtoMinor: 1, Host: "h", ContentLength: -1}},
		{"CONNECT authority form", crlf("CONNECT db.example:5432 HTTP/1.1\nHost: db.example:5432\n\n"),
			HTTPHead{Method: "CONNECT", Target: "db.example:5432", ProtoMinor: 1, Host: "db.example:5432", ContentLength: -1}},
		{"bare LF line ends and a leading empty line", []byte("\r\nGET /x HTTP/1.1\nHost: h\nContent-Length: 0\n\n"),
			HTTPHead{Method: "GET", Target: "/x", Path: "/x", ProtoMinor: 1, Host: "h", ContentLength: 0}},
		{"equal Content-Lengths in a list", crlf("POST /u HTTP/1.1\nHost: h\nContent-Length: 5, 5\nContent-Length: 5\n\n"),
			HTTPHead{Method: "POST", Target: "/u", Path: "/u", ProtoMinor: 1, Host: "h", ContentLength: 5}},
		{"malformed cookie pairs are skipped", crlf("GET / HTTP/1.1\nHost: h\nCookie: ; =x; novalue; ok=1;bad name=2; q=\"\"\n\n"),
			HTTPHead{Method: "GET", Target: "/", Path: "/", ProtoMinor: 1, Host: "h", Cookies: []Cookie{{"ok", "1"}, {"q", ""}}, ContentLength: -1}},
		{"HTTP/1.2 is read as 1.1, obs-text allowed in values", crlf("GET / HTTP/1.2\nHost: h\nX-Name: caf\xc3\xa9\n\n"),
			HTTPHead{Method: "GET", Target: "/", Path: "/", ProtoMinor: 1, Host: "h", ContentLength: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHTTP(tc.in)
			if err != nil {
				t.Fatalf("ParseHTTP: %v", err)
			}
			end := bytes.Index(tc.in, []byte("\r\n\r\n")) + 4
			if lf := bytes.Index(tc.in, []byte("\n\n")) + 2; lf > 1 && (end < 4 || lf < end) {
				end = lf
			}
			tc.want.Len = end
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			// Every strict prefix of a valid head is NeedMore, never Bad:
			// the early refusal of garbage must not refuse a slow client.
			for k := 0; k < got.Len; k++ {
				if _, err := ParseHTTP(tc.in[:k]); VerdictOf(err) != NeedMore {
					t.Fatalf("prefix of %d bytes: %v, want need_more", k, err)
				}
			}
		})
	}
}

func TestHTTPCookieAccessors(t *testing.T) {
	h, err := ParseHTTP(firefoxPOST)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := h.Cookie("a"); !ok || v != "1" {
		t.Errorf(`Cookie("a") = %q, %v; want the first, "1"`, v, ok)
	}
	if _, ok := h.Cookie("shoal_session"); ok {
		t.Error("Cookie found a cookie the request does not carry")
	}
	if got := h.CookieNames(); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("CookieNames = %v, want [a b]", got)
	}
}

type refusal struct {
	name    string
	in      []byte
	verdict Verdict
	reason  string
}

// httpRefusals are heads that are not (yet) complete; they also seed
// testdata/fuzz/FuzzHTTPHead (go test -run SeedCorpus -write-corpus).
var httpRefusals = []refusal{
	{"TLS on the HTTP port, refused on its first bytes", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}, Bad, ReasonMethod},
	{"binary garbage", []byte{0x00, 0xff, 0x13}, Bad, ReasonMethod},
	{"space first", []byte(" GET / HTTP/1.1"), Bad, ReasonMethod},
	{"control byte in a partial request line", []byte("GET /a\x01"), Bad, ReasonRequestLine},
	{"HTTP/0.9", crlf("GET /index.html\n\n"), Bad, ReasonRequestLine},
	{"two spaces", crlf("GET  / HTTP/1.1\nHost: h\n\n"), Bad, ReasonRequestLine},
	{"space in the target", crlf("GET /a b HTTP/1.1\nHost: h\n\n"), Bad, ReasonRequestLine},
	{"lower-case version", crlf("GET / http/1.1\nHost: h\n\n"), Bad, ReasonRequestLine},
	{"HTTP/2 preface", []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Bad, ReasonVersion},
	{"HTTP/3.0", crlf("GET / HTTP/3.0\nHost: h\n\n"), Bad, ReasonVersion},
	{"non-ASCII target", crlf("GET /caf\xc3\xa9 HTTP/1.1\nHost: h\n\n"), Bad, ReasonRequestLine},
	{"asterisk for GET", crlf("GET * HTTP/1.1\nHost: h\n\n"), Bad, ReasonTarget},
	{"relative target", crlf("GET index.html HTTP/1.1\nHost: h\n\n"), Bad, ReasonTarget},
	{"bad percent-escape", crlf("GET /a%zz HTTP/1.1\nHost: h\n\n"), Bad, ReasonTarget},
	{"percent-encoded NUL", crlf("GET /a%00.cgi HTTP/1.1\nHost: h\n\n"), Bad, ReasonTarget},
	{"userinfo in an absolute target", crlf("GET http://u@h/ HTTP/1.1\nHost: h\n\n"), Bad, ReasonTarget},
	{"whitespace before the colon", crlf("GET / HTTP/1.1\nHost : h\n\n"), Bad, ReasonHeaderLine},
	{"obsolete line folding", crlf("GET / HTTP/1.1\nHost: h\nX-A: 1\n  2\n\n"), Bad, ReasonHeaderLine},
	{"field without colon", crlf("GET / HTTP/1.1\nHost: h\nnonsense\n\n"), Bad, ReasonHeaderLine},
	{"empty field name", crlf("GET / HTTP/1.1\n: h\n\n"), Bad, ReasonHeaderLine},
	{"NUL in a value", crlf("GET / HTTP/1.1\nHost: h\nX: a\x00b\n\n"), Bad, ReasonHeaderValue},
	{"bare CR in a value", crlf("GET / HTTP/1.1\nHost: h\nX: a\rb\n\n"), Bad, ReasonHeaderValue},
	{"HTTP/1.1 without Host", crlf("GET / HTTP/1.1\nAccept: */*\n\n"), Bad, ReasonHost},
	{"two Hosts", crlf("GET / HTTP/1.1\nHost: a\nHost: b\n\n"), Bad, ReasonHost},
	{"Host with a space", crlf("GET / HTTP/1.1\nHost: a b\n\n"), Bad, ReasonHost},
	{"Host with a slash", crlf("GET / HTTP/1.1\nHost: a/b\n\n"), Bad, ReasonHost},
	{"negative Content-Length", crlf("POST / HTTP/1.1\nHost: h\nContent-Length: -1\n\n"), Bad, ReasonContentLength},
	{"conflicting Content-Lengths", crlf("POST / HTTP/1.1\nHost: h\nContent-Length: 12\nContent-Length: 13\n\n"), Bad, ReasonContentLength},
	{"conflicting Content-Length list", crlf("POST / HTTP/1.1\nHost: h\nContent-Length: 12, 13\n\n"), Bad, ReasonContentLength},
	{"Content-Length overflow", crlf("POST / HTTP/1.1\nHost: h\nContent-Length: 99999999999999999999\n\n"), Bad, ReasonContentLength},
	{"Transfer-Encoding and Content-Length", crlf("POST / HTTP/1.1\nHost: h\nContent-Length: 3\nTransfer-Encoding: chunked\n\n"), Bad, ReasonTransferEncoding},
	{"Transfer-Encoding not ending in chunked", crlf("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked, gzip\n\n"), Bad, ReasonTransferEncoding},
	{"chunked twice", crlf("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n"), Bad, ReasonTransferEncoding},
	{"Transfer-Encoding in HTTP/1.0", crlf("POST / HTTP/1.0\nTransfer-Encoding: chunked\n\n"), Bad, ReasonTransferEncoding},
	{"incomplete", crlf("GET / HTTP/1.1\nHost: h\n"), NeedMore, ReasonNeedMore},
	{"nothing yet", nil, NeedMore, ReasonNeedMore},
	{"a CR of the first line end", []byte("\r"), NeedMore, ReasonNeedMore},
}

func TestParseHTTPRefuses(t *testing.T) {
	for _, tc := range httpRefusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHTTP(tc.in)
			if VerdictOf(err) != tc.verdict || ReasonOf(err) != tc.reason {
				t.Fatalf("got %v (reason %q), want %v (reason %q)", err, ReasonOf(err), tc.verdict, tc.reason)
			}
		})
	}
}

// headOfSize builds a valid head of exactly n bytes.
func headOfSize(n int) []byte {
	start, end := "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ", "\r\n\r\n"
	return []byte(start + strings.Repeat("p", n-len(start)-len(end)) + end)
}

func TestParseHTTPSizeLimit(t *testing.T) {
	if h, err := ParseHTTP(headOfSize(MaxHead)); err != nil || h.Len != MaxHead {
		t.Fatalf("a head of exactly MaxHead bytes: Len %d, %v; want %d, nil", h.Len, err, MaxHead)
	}
	if _, err := ParseHTTP(headOfSize(MaxHead + 1)); VerdictOf(err) != TooLarge || err.(*Error).Verdict.HTTPStatus() != 431 {
		t.Fatalf("a head of MaxHead+1 bytes: %v, want too_large (431)", err)
	}
	// A head that has not ended by MaxHead is too large before its end
	// arrives.
	if _, err := ParseHTTP(headOfSize(3 * MaxHead)[:MaxHead]); VerdictOf(err) != TooLarge {
		t.Fatalf("MaxHead bytes without an end: %v, want too_large", err)
	}
	if _, err := ParseHTTP(headOfSize(3 * MaxHead)[:MaxHead-1]); VerdictOf(err) != NeedMore {
		t.Fatalf("MaxHead-1 bytes without an end: %v, want need_more", err)
	}
	// A body after a small head is never counted against the limit.
	big := append(headOfSize(200), bytes.Repeat([]byte("b"), 3*MaxHead)...)
	if h, err := ParseHTTP(big); err != nil || h.Len != 200 {
		t.Fatalf("small head, big body: Len %d, %v", h.Len, err)
	}
}

func TestVerdictStatus(t *testing.T) {
	want := map[Verdict]int{Complete: 0, NeedMore: 0, Bad: 400, TooLarge: 431, Timeout: 408, Closed: 0}
	for v, code := range want {
		if v.HTTPStatus() != code {
			t.Errorf("%v.HTTPStatus() = %d, want %d", v, v.HTTPStatus(), code)
		}
	}
}
