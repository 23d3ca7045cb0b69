package peek

import (
	"bytes"
	"path"
	"strconv"
	"strings"
)

// HTTPHead is a parsed HTTP/1.x request head.
type HTTPHead struct {
	Method string
	// Target is the request-target exactly as sent.
	Target string
	// Path is the target's path for routing: percent-decoded, dot segments
	// and repeated slashes removed ("/a/..%2Fb.cgi" is "/b.cgi"), a trailing
	// slash kept, the query dropped. It is "*" for "OPTIONS *" and "" for
	// CONNECT's authority-form.
	Path string
	// ProtoMinor is the minor version: 0 for HTTP/1.0, 1 for HTTP/1.1
	// (HTTP/1.2..1.9 are read as 1.1).
	ProtoMinor int
	// Host is the Host field, or the authority of an absolute-form target
	// (which RFC 9112 §3.2.2 says wins over the field).
	Host string
	// Cookies holds every cookie of every Cookie field, in order.
	Cookies []Cookie
	// ContentLength is -1 when the request has no Content-Length.
	ContentLength int64
	// Chunked is true when Transfer-Encoding ends in chunked.
	Chunked bool
	// Len is the length of the head in bytes, through the empty line that
	// ends it; the body or a pipelined request follows.
	Len int
}

// Cookie is one name=value pair of a Cookie field.
type Cookie struct{ Name, Value string }

// Cookie returns the value of the first cookie called name.
func (h *HTTPHead) Cookie(name string) (string, bool) {
	for _, c := range h.Cookies {
		if c.Name == name {
			return c.Value, true
		}
	}
	return "", false
}

// CookieNames lists the cookie names in order, each once (the form
// control/groups.Match takes).
func (h *HTTPHead) CookieNames() []string {
	var names []string
	for _, c := range h.Cookies {
		seen := false
		for _, n := range names {
			if n == c.Name {
				seen = true
				break
			}
		}
		if !seen {
			names = append(names, c.Name)
		}
	}
	return names
}

// ParseHTTP parses the HTTP/1.x request head at the start of b. It returns
// the head and nil when b holds all of it, or an *Error (see the package
// contract). Only the first MaxHead bytes are looked at.
func ParseHTTP(b []byte) (HTTPHead, error) {
	h := HTTPHead{ContentLength: -1}
	data := b
	if len(data) > MaxHead {
		data = data[:MaxHead]
	}
	incomplete := func(partial []byte, check func([]byte) *Error) (HTTPHead, error) {
		// A CR at the very end may be the first half of a CRLF.
		if e := check(bytes.TrimSuffix(partial, []byte{'\r'})); e != nil {
			return HTTPHead{}, e
		}
		if len(data) >= MaxHead {
			return HTTPHead{}, tooLarge("request head", len(b))
		}
		return HTTPHead{}, errNeedMore
	}

	// Request line, after any empty lines (RFC 9112 §2.2).
	pos := 0
	var line []byte
	for {
		var ok bool
		line, pos, ok = nextLine(data, pos)
		if !ok {
			return incomplete(data[pos:], checkRequestLinePrefix)
		}
		if len(line) > 0 {
			break
		}
	}
	if e := parseRequestLine(&h, line); e != nil {
		return HTTPHead{}, e
	}

	var hosts, lengths, codings []string
	for {
		var ok bool
		line, pos, ok = nextLine(data, pos)
		if !ok {
			return incomplete(data[pos:], checkFieldPrefix)
		}
		if len(line) == 0 {
			break
		}
		name, value, e := parseField(line)
		if e != nil {
			return HTTPHead{}, e
		}
		switch {
		case strings.EqualFold(name, "host"):
			hosts = append(hosts, value)
		case strings.EqualFold(name, "cookie"):
			h.Cookies = appendCookies(h.Cookies, value)
		case strings.EqualFold(name, "content-length"):
			lengths = append(lengths, value)
		case strings.EqualFold(name, "transfer-encoding"):
			codings = append(codings, value)
		}
	}
	h.Len = pos

	if e := checkHost(&h, hosts); e != nil {
		return HTTPHead{}, e
	}
	if e := checkFraming(&h, lengths, codings); e != nil {
		return HTTPHead{}, e
	}
	return h, nil
}

// nextLine returns the line starting at pos without its LF or CRLF, and the
// position after it; ok is false when no LF follows yet.
func nextLine(data []byte, pos int) (line []byte, next int, ok bool) {
	i := bytes.IndexByte(data[pos:], '\n')
	if i < 0 {
		return nil, pos, false
	}
	line = data[pos : pos+i]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, pos + i + 1, true
}

func parseRequestLine(h *HTTPHead, line []byte) *Error {
	// The checks a partial line got first, so that a verdict reached early
	// and one reached on the whole line carry the same reason.
	if e := checkRequestLinePrefix(line); e != nil {
		return e
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return bad(ReasonRequestLine, "request line %q: want METHOD SP TARGET SP HTTP/1.x", clip(line))
	}
	method := line[:sp]
	if !isToken(method) {
		return bad(ReasonMethod, "method %q is not a token", clip(method))
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return bad(ReasonRequestLine, "request line %q has no HTTP version", clip(line))
	}
	target, version := rest[:sp], rest[sp+1:]
	if len(version) != 8 || string(version[:5]) != "HTTP/" || !isDigit(version[5]) || version[6] != '.' || !isDigit(version[7]) {
		return bad(ReasonRequestLine, "version %q: want HTTP/1.x, one space apart", clip(version))
	}
	if version[5] != '1' {
		return bad(ReasonVersion, "version %q: only HTTP/1.x is read here", version)
	}
	h.ProtoMinor = min(int(version[7]-'0'), 1)
	h.Method = string(method)
	h.Target = string(target)
	return parseTarget(h)
}

// parseTarget checks the request-target's form (RFC 9112 §3.2) and derives
// Path, and Host for the absolute form.
func parseTarget(h *HTTPHead) *Error {
	t := h.Target
	if t == "" {
		return bad(ReasonTarget, "empty request-target")
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return bad(ReasonTarget, "request-target %q: byte 0x%02x at %d is not allowed", clip([]byte(t)), c, i)
		}
	}
	switch {
	case t[0] == '/':
		return setPath(h, t)
	case t == "*":
		if h.Method != "OPTIONS" {
			return bad(ReasonTarget, "request-target * is only for OPTIONS, not %s", h.Method)
		}
		h.Path = "*"
		return nil
	case h.Method == "CONNECT":
		if strings.ContainsAny(t, "/?#@") || !strings.Contains(t, ":") {
			return bad(ReasonTarget, "CONNECT target %q: want host:port", t)
		}
		h.Host = t
		return nil
	}
	lower := strings.ToLower(t)
	var rest string
	switch {
	case strings.HasPrefix(lower, "http://"):
		rest = t[len("http://"):]
	case strings.HasPrefix(lower, "https://"):
		rest = t[len("https://"):]
	default:
		return bad(ReasonTarget, "request-target %q: want /path, an http(s) URL, * or host:port", clip([]byte(t)))
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority := rest[:end]
	if authority == "" || strings.Contains(authority, "@") || !validHost(authority) {
		return bad(ReasonTarget, "request-target %q: bad authority %q", clip([]byte(t)), authority)
	}
	h.Host = authority
	p := rest[end:]
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return setPath(h, p)
}

// setPath strips the query and fragment, decodes percent-escapes and
// removes dot segments, keeping a trailing slash.
func setPath(h *HTTPHead, p string) *Error {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if strings.IndexByte(p, '%') >= 0 {
		var sb strings.Builder
		for i := 0; i < len(p); i++ {
			if p[i] != '%' {
				sb.WriteByte(p[i])
				continue
			}
			if i+2 >= len(p) || unhex(p[i+1]) < 0 || unhex(p[i+2]) < 0 {
				return bad(ReasonTarget, "request-target %q: bad percent-escape at %d", clip([]byte(h.Target)), i)
			}
			c := byte(unhex(p[i+1])<<4 | unhex(p[i+2]))
			if c == 0 {
				return bad(ReasonTarget, "request-target %q: %%00 in the path", clip([]byte(h.Target)))
			}
			sb.WriteByte(c)
			i += 2
		}
		p = sb.String()
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	h.Path = clean
	return nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// parseField splits "name: value" and checks both (RFC 9112 §5).
func parseField(line []byte) (string, string, *Error) {
	if e := checkFieldPrefix(line); e != nil {
		return "", "", e
	}
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", bad(ReasonHeaderLine, "obsolete line folding (a field line starting with whitespace): %q", clip(line))
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return "", "", bad(ReasonHeaderLine, "field line %q has no colon", clip(line))
	}
	name := line[:colon]
	if !isToken(name) {
		return "", "", bad(ReasonHeaderLine, "field name %q is not a token (whitespace before the colon?)", clip(name))
	}
	value := bytes.Trim(line[colon+1:], " \t")
	for i, c := range value {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return "", "", bad(ReasonHeaderValue, "field %s: control byte 0x%02x at %d of its value", name, c, i)
		}
	}
	return string(name), string(value), nil
}

// checkRequestLinePrefix refuses a partial request line (without the CR a
// CRLF may start with) that no more bytes could make valid, so that garbage
// is refused at once rather than timed out. Complete lines get the same
// checks first, so both ways reach the same reason.
func checkRequestLinePrefix(p []byte) *Error {
	if len(p) == 0 {
		return nil
	}
	sp := bytes.IndexByte(p, ' ')
	method := p
	if sp >= 0 {
		method = p[:sp]
	}
	if sp == 0 || !isToken(method) {
		return bad(ReasonMethod, "request line starts with %q: not a method", clip(p))
	}
	for i, c := range p {
		if c < ' ' || c >= 0x7f {
			return bad(ReasonRequestLine, "request line %q: byte 0x%02x at %d is not allowed", clip(p), c, i)
		}
	}
	return nil
}

// checkFieldPrefix does the same for a partial field line.
func checkFieldPrefix(p []byte) *Error {
	if len(p) == 0 {
		return nil
	}
	if p[0] == ' ' || p[0] == '\t' {
		return bad(ReasonHeaderLine, "obsolete line folding (a field line starting with whitespace): %q", clip(p))
	}
	colon := bytes.IndexByte(p, ':')
	name := p
	if colon >= 0 {
		name = p[:colon]
	}
	if colon == 0 || !isToken(name) {
		return bad(ReasonHeaderLine, "field name %q is not a token", clip(name))
	}
	if colon >= 0 {
		for i, c := range p[colon+1:] {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return bad(ReasonHeaderValue, "field %s: control byte 0x%02x at %d of its value", name, c, i)
			}
		}
	}
	return nil
}

// checkHost applies RFC 9112 §3.2: an HTTP/1.1 request has exactly one
// Host; an absolute-form target's authority wins over it.
func checkHost(h *HTTPHead, hosts []string) *Error {
	if len(hosts) > 1 {
		return bad(ReasonHost, "%d Host fields; exactly one is allowed", len(hosts))
	}
	if len(hosts) == 0 {
		if h.ProtoMinor >= 1 {
			return bad(ReasonHost, "HTTP/1.1 request without a Host field")
		}
		return nil
	}
	if !validHost(hosts[0]) {
		return bad(ReasonHost, "Host %q has a byte that cannot appear in a host", clip([]byte(hosts[0])))
	}
	if h.Host == "" {
		h.Host = hosts[0]
	}
	return nil
}

// validHost allows the bytes of a URI authority (RFC 3986 reg-name,
// IP-literal and port): no whitespace, slashes or quotes.
func validHost(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || strings.IndexByte("-._~!$&'()*+,;=:[]%", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// checkFraming decides the body's framing the way RFC 9112 §6 does, and
// refuses every combination a server behind us could read differently.
func checkFraming(h *HTTPHead, lengths, codings []string) *Error {
	var n int64 = -1
	for _, field := range lengths {
		for _, v := range strings.Split(field, ",") {
			v = strings.Trim(v, " \t")
			if v == "" || len(v) > 18 || strings.Trim(v, "0123456789") != "" {
				return bad(ReasonContentLength, "Content-Length %q is not a decimal length", clip([]byte(field)))
			}
			m, _ := strconv.ParseInt(v, 10, 64)
			if n >= 0 && m != n {
				return bad(ReasonContentLength, "Content-Length values %d and %d conflict", n, m)
			}
			n = m
		}
	}
	h.ContentLength = n
	var list []string
	for _, field := range codings {
		for _, v := range strings.Split(field, ",") {
			if v = strings.ToLower(strings.Trim(v, " \t")); v != "" {
				list = append(list, v)
			}
		}
	}
	if len(codings) == 0 {
		return nil
	}
	switch {
	case h.ProtoMinor == 0:
		return bad(ReasonTransferEncoding, "Transfer-Encoding in an HTTP/1.0 request")
	case n >= 0:
		return bad(ReasonTransferEncoding, "Transfer-Encoding together with Content-Length")
	case len(list) == 0 || list[len(list)-1] != "chunked":
		return bad(ReasonTransferEncoding, "Transfer-Encoding %q does not end in chunked", clip([]byte(strings.Join(codings, ", "))))
	}
	for _, c := range list[:len(list)-1] {
		if c == "chunked" {
			return bad(ReasonTransferEncoding, "chunked applied more than once")
		}
	}
	h.Chunked = true
	return nil
}

// appendCookies parses a Cookie field ("a=1; b=2") the lenient way browsers
// and servers do: pairs without a name or '=' are skipped, a quoted value is
// unquoted.
func appendCookies(cs []Cookie, field string) []Cookie {
	for _, pair := range strings.Split(field, ";") {
		pair = strings.Trim(pair, " \t")
		eq := strings.IndexByte(pair, '=')
		if eq <= 0 {
			continue
		}
		name := strings.Trim(pair[:eq], " \t")
		if !isToken([]byte(name)) {
			continue
		}
		value := strings.Trim(pair[eq+1:], " \t")
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		cs = append(cs, Cookie{Name: name, Value: value})
	}
	return cs
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlnum(c byte) bool { return isDigit(c) || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if !isAlnum(c) && strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}

// clip shortens what an error quotes, so a 16 KiB line does not become a
// 16 KiB log line.
func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}
