package local

import (
	"bytes"
	"net/http"
)

// fastRequest is a request head the fast path (fast.go) may answer: what
// net/http would make of the same bytes, for the fields that matter.
type fastRequest struct {
	head   bool        // HEAD, else GET
	minor  int         // the protocol's minor version: HTTP/1.1 or HTTP/1.0
	close  bool        // the connection ends after the response (net/http's Request.Close)
	conn   string      // the response's Connection header: "", "close" or "keep-alive"
	target string      // the request-target: an absolute path, no query
	host   string      // the one Host header ("" for HTTP/1.0 without one)
	header http.Header // every other header, canonical keys, as net/http builds it
	size   int         // bytes of the head, blank line included
}

// Bounds of a head the fast path takes; anything larger goes to net/http.
const (
	fastMaxHead    = 4096
	fastMaxHeaders = 32
)

// fastRefused are the request headers that make net/http or the file
// server do something other than a plain 200 from the cache (a body,
// connection handling other than Connection's close and keep-alive,
// ranges, conditions, Pragma's Cache-Control fix-up): such a request goes
// to net/http.
var fastRefused = map[string]bool{
	"Content-Length": true, "Transfer-Encoding": true, "Expect": true,
	"Proxy-Connection": true, "Keep-Alive": true, "Upgrade": true, "Te": true, "Trailer": true,
	"Range": true, "Pragma": true, "Http2-Settings": true,
}

// parseFast reads the request head at the start of b. ok is true only for
// a head the fast path can answer exactly as net/http would: a complete
// head within fastMaxHead, every line ended by CRLF; "GET" or "HEAD", an
// absolute path of [A-Za-z0-9-._~/] (no "//", no dot segment or dot file,
// no trailing slash, not ".../index.html"), "HTTP/1.1" with one Host of
// host characters or "HTTP/1.0" with at most one; header names of token
// characters and values of visible ASCII, space and tab (no obs-fold);
// none of fastRefused nor If-*; at most one Connection, whose value is
// one token, "close" or "keep-alive" in any case. Anything else, and an
// incomplete head, is net/http's to read. It never fails otherwise: it
// decides.
//
// The connection's fate is net/http's (shouldClose, and the response's
// chunkWriter.writeHeader): HTTP/1.1 keeps it unless Connection is close,
// and then answers with "Connection: close"; HTTP/1.0 closes it unless
// Connection is keep-alive, and then answers with "Connection:
// keep-alive"; a closing HTTP/1.0 response has no Connection header.
func parseFast(b []byte) (r fastRequest, ok bool) {
	if len(b) > fastMaxHead {
		b = b[:fastMaxHead]
	}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return r, false
	}
	r.size = end + 4
	head := b[:end+2] // lines, each with its CRLF
	nl := bytes.Index(head, []byte("\r\n"))
	line := head[:nl]
	rest := head[nl+2:]
	switch {
	case bytes.HasPrefix(line, []byte("GET ")):
		line = line[4:]
	case bytes.HasPrefix(line, []byte("HEAD ")):
		r.head = true
		line = line[5:]
	default:
		return r, false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 || !fastPath(line[:sp]) {
		return r, false
	}
	switch string(line[sp+1:]) {
	case "HTTP/1.1":
		r.minor = 1
	case "HTTP/1.0":
	default:
		return r, false
	}
	r.target = string(line[:sp])
	n := bytes.Count(rest, []byte("\r\n"))
	if n > fastMaxHeaders {
		return r, false
	}
	r.header = make(http.Header, n)
	hosts := 0
	keepAlive := false
	for len(rest) > 0 {
		nl := bytes.Index(rest, []byte("\r\n"))
		line, rest = rest[:nl], rest[nl+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !fastToken(line[:colon]) {
			return r, false
		}
		v := bytes.Trim(line[colon+1:], " \t")
		if !fastValue(v) {
			return r, false
		}
		key := http.CanonicalHeaderKey(string(line[:colon]))
		if fastRefused[key] || len(key) >= 3 && key[:3] == "If-" {
			return r, false
		}
		switch key {
		case "Host":
			if hosts > 0 || !fastHost(v) {
				return r, false
			}
			hosts++
			r.host = string(v)
			continue
		case "Connection":
			if r.header[key] != nil {
				return r, false
			}
			switch {
			case asciiEqualFold(v, "close"):
				r.close = true
			case asciiEqualFold(v, "keep-alive"):
				keepAlive = true
			default:
				return r, false
			}
		}
		r.header[key] = append(r.header[key], string(v))
	}
	if r.minor == 1 {
		if hosts == 0 {
			return r, false
		}
		if r.close {
			r.conn = "close"
		}
	} else {
		r.close = r.close || !keepAlive
		if !r.close {
			r.conn = "keep-alive"
		}
	}
	return r, true
}

// asciiEqualFold: b is s in any ASCII case (s is lower case).
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// fastPath: an absolute path the cache maps as the file server does and
// that neither redirects nor needs decoding.
func fastPath(p []byte) bool {
	if len(p) < 2 || p[0] != '/' || p[len(p)-1] == '/' || len(p) > 1024 ||
		bytes.HasSuffix(p, []byte("/index.html")) || bytes.Contains(p, []byte("//")) || bytes.Contains(p, []byte("/.")) {
		return false
	}
	for _, c := range p {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
			return false
		}
	}
	return true
}

func fastToken(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0) {
			return false
		}
	}
	return len(b) > 0
}

func fastValue(b []byte) bool {
	for _, c := range b {
		if c != '\t' && (c < ' ' || c > '~') {
			return false
		}
	}
	return true
}

func fastHost(b []byte) bool {
	for _, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == ':' || c == '_' || c == '[' || c == ']') {
			return false
		}
	}
	return len(b) > 0
}
