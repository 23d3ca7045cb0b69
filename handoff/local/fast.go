package local

import (
	"context"
	"mime"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/shoal-lb/shoal/handoff/objcache"
)

// The fast path: a plain HTTP connection (ServeHTTP) is read first by a
// lean loop that answers the requests it can answer byte for byte as
// net/http and serveCached would (a GET or HEAD of a small cached file,
// parseFast), and gives the connection to net/http, with the bytes it has
// read and not answered replayed first, the moment a request is anything
// else. A connection never comes back from net/http. A request that ends
// the connection (Connection: close, HTTP/1.0 without keep-alive) is
// answered and the connection closed, as net/http closes it.

// fastConn is one connection in the fast loop.
type fastConn struct {
	c     *conn
	start time.Time    // when the loop took it
	state atomic.Int32 // fastNew, fastBusy, fastIdle, fastClosed
}

const (
	fastNew    = iota // waiting for its first request; Shutdown closes it once older than fastNewIdle
	fastBusy          // reading or answering a request; Shutdown waits for it
	fastIdle          // waiting for the next request; Shutdown closes it
	fastClosed        // closed by Shutdown
)

// fastNewIdle is when net/http's Shutdown starts to treat a connection
// that has sent nothing as idle (and closes it): 5 s.
const fastNewIdle = 5 * time.Second

// fastReadBuf is the fast loop's read buffer: net/http's own is 4 KiB.
const fastReadBuf = 4096

// fastFlush is what the loop buffers of responses to pipelined requests
// before writing them.
const fastFlush = 64 << 10

// fastKeep is the largest response buffer a connection keeps between
// reads.
const fastKeep = 8 << 10

// serveFast runs the fast loop on c; it owns c. The caller tracked it
// (s.wg).
func (s *Server) serveFast(c *conn) {
	defer s.wg.Done()
	fc := &fastConn{c: c, start: time.Now()}
	if !s.addFast(fc) {
		c.Close()
		return
	}
	handed := false
	defer func() {
		s.dropFast(fc)
		if !handed {
			c.Close()
		}
	}()
	bufs := fastPool.Get().(*fastBufs)
	buf, out := bufs.read[:], bufs.out[:0]
	defer func() {
		// Every write has returned and what net/http gets is a copy.
		bufs.out = nil
		if cap(out) <= fastKeep {
			bufs.out = out[:0]
		}
		fastPool.Put(bufs)
	}()
	rc := fastRequestContext{s: s, c: c}
	var memo fastMemo
	first := true
	answered := false // a response went out: net/http would wait for the next request as idle
	kept := 0         // bytes of buf carried over from the last read
	for {
		// The first request is read under ReadHeaderTimeout, as net/http
		// reads a new connection's; later ones wait up to IdleTimeout.
		wait := s.srv.ReadHeaderTimeout
		from := int32(fastNew)
		if !first {
			wait = s.srv.IdleTimeout
			from = fastIdle
			if !fc.state.CompareAndSwap(fastBusy, fastIdle) || s.shutting.Load() {
				return
			}
		}
		c.Conn.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Conn.Read(buf[kept:])
		if !fc.state.CompareAndSwap(from, fastBusy) {
			return // closed by Shutdown
		}
		first = false
		if n == 0 || err != nil {
			return // EOF, timeout or error: net/http closes silently too
		}
		n += kept
		kept = 0
		if s.shutting.Load() {
			return // net/http too closes a connection whose request it read after Shutdown began
		}
		off := 0
		closing := false
		for off < n && !closing {
			r, ok := parseFast(buf[off:n])
			if !ok {
				break
			}
			resp, ok := s.answerFast(&rc, &r, &memo, out)
			if !ok {
				break
			}
			out = resp
			answered = true
			closing = r.close
			off += r.size
			if len(out) >= fastFlush {
				if _, err := c.Conn.Write(out); err != nil {
					return
				}
				out = out[:0]
			}
		}
		if len(out) > 0 {
			if _, err := c.Conn.Write(out); err != nil {
				return
			}
			out = out[:0]
		}
		if closing {
			// net/http closes after a response that ends the connection
			// (Connection: close, HTTP/1.0): a plain close, no half-close
			// and no lingering, whatever else the client sent.
			return
		}
		if cap(out) > fastKeep {
			out = nil // a pipeline's worth is not kept for the connection's life
		}
		if off < n && answered && n-off < 4 {
			// Between requests net/http waits, as idle, for 4 bytes
			// before it reads a head, and closes silently when they do
			// not come: so does the loop, keeping the few it has.
			kept = copy(buf, buf[off:n])
			continue
		}
		if off < n {
			// A request the fast path does not answer (or an incomplete
			// head): net/http reads the connection from here.
			c.Conn.SetReadDeadline(time.Time{})
			handed = true
			s.dropFast(fc)
			s.give(&conn{Conn: c.Conn, meta: c.meta, buf: append([]byte(nil), buf[off:n]...)})
			return
		}
	}
}

// fastBufs are a connection's buffers while the loop has it: the read
// buffer (net/http's is 4 KiB too) and the responses. They are pooled: a
// fresh connection per request (Connection: close) would otherwise
// allocate them for every request.
type fastBufs struct {
	read [fastReadBuf]byte
	out  []byte
}

var fastPool = sync.Pool{New: func() any { return new(fastBufs) }}

// fastRequestContext makes, once per connection and only when a callback
// needs one, the context of the requests the configuration's callbacks
// see: what net/http's holds.
type fastRequestContext struct {
	s      *Server
	c      *conn
	ctx    context.Context
	remote string
}

// request is the request the callbacks see for r.
func (rc *fastRequestContext) request(r *fastRequest) *http.Request {
	if rc.ctx == nil {
		ctx := context.WithValue(context.Background(), http.ServerContextKey, rc.s.srv)
		ctx = context.WithValue(ctx, http.LocalAddrContextKey, rc.c.LocalAddr())
		rc.ctx = connContext(ctx, rc.c)
		rc.remote = rc.c.RemoteAddr().String()
	}
	hr := &http.Request{Method: http.MethodGet, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Close: r.close,
		URL: &url.URL{Path: r.target}, RequestURI: r.target, Host: r.host, Header: r.header, Body: http.NoBody, RemoteAddr: rc.remote}
	if r.head {
		hr.Method = http.MethodHead
	}
	if r.minor == 0 {
		hr.Proto, hr.ProtoMinor = "HTTP/1.0", 0
	}
	return hr.WithContext(rc.ctx)
}

// answerFast appends the response to r to out when handle would serve it
// from the cache (serveCached), and counts it; false leaves r to net/http
// untouched (nothing counted, nothing written).
func (s *Server) answerFast(rc *fastRequestContext, r *fastRequest, memo *fastMemo, out []byte) ([]byte, bool) {
	m := rc.c.meta
	group := ""
	if s.c.Group != nil || s.c.Published != nil {
		hr := rc.request(r)
		if s.c.Group != nil {
			group = s.c.Group(hr)
		}
		if s.c.Published != nil {
			// A published path is net/http's, which asks again: the
			// answer opens a file, or names the node to forward to.
			if p := s.c.Published(hr); p.Status != NotPublished {
				if p.File != nil {
					p.File.Close()
				}
				return out, false
			}
		}
	}
	if group != "" {
		if s.upstream[group] != nil {
			return out, false
		}
		if m.relay == "" && s.c.Serves != nil && !s.c.Serves(group) && s.c.Forward != nil {
			return out, false // maybe forwarded: net/http asks Forward
		}
	}
	e, ok := s.cache.Lookup(r.target)
	if !ok {
		return out, false
	}
	s.n.requests.Add(1)
	s.n.static.Add(1)
	s.n.cached.Add(1)
	s.n.fast.Add(1)
	var head []byte
	if m.origin == "" && m.relay == "" {
		// The head of most connections, the same for all: kept with the
		// entry (this server's cache), built once per file version.
		if h := e.Memo.Load(); h != nil {
			head = *h
		} else {
			head = s.fastHead(e, m)
			e.Memo.Store(&head)
		}
	} else {
		if w := weak.Make(e); memo.e != w {
			memo.e, memo.head = w, s.fastHead(e, m)
		}
		head = memo.head
	}
	if r.minor == 0 {
		out = append(out, "HTTP/1.0 200 OK\r\n"...)
	} else {
		out = append(out, "HTTP/1.1 200 OK\r\n"...)
	}
	out = append(out, head...)
	out = append(out, "Date: "...)
	out = append(out, httpDate()...)
	if r.conn != "" {
		out = append(out, "\r\nConnection: "...)
		out = append(out, r.conn...)
	}
	out = append(out, "\r\n\r\n"...)
	if !r.head {
		out = append(out, e.Data...)
	}
	return out, true
}

// fastMemo is a connection's last response head (without Date), by entry,
// for a connection handed off or relayed (its head names the node).
// It holds the entry weakly: an idle connection must not keep the bytes of
// an entry the cache has dropped (the cache's MaxTotal bounds them).
type fastMemo struct {
	e    weak.Pointer[objcache.Entry]
	head []byte
}

// fastHead is the head net/http writes for http.ServeContent's 200 of e,
// after the status line and up to Date: the handler's headers in
// net/http's (sorted) order. Date and Connection follow, in this order,
// as net/http's extraHeader writes them. Content-Type is ServeContent's:
// by the name's extension, else sniffed from the first 512 bytes.
func (s *Server) fastHead(e *objcache.Entry, m *connMeta) []byte {
	ctype := mime.TypeByExtension(filepath.Ext(e.Name))
	if ctype == "" {
		ctype = http.DetectContentType(e.Data[:min(len(e.Data), 512)])
	}
	b := []byte("Accept-Ranges: bytes\r\nContent-Length: ")
	b = strconv.AppendInt(b, int64(len(e.Data)), 10)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, ctype...)
	b = append(b, "\r\n"...)
	if !e.ModTime.IsZero() && !e.ModTime.Equal(time.Unix(0, 0)) {
		b = append(b, "Last-Modified: "...)
		b = e.ModTime.UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	if m.origin != "" {
		b = append(b, HeaderHandoff+": "+m.origin+"\r\n"...)
	}
	b = append(b, HeaderNode+": "+s.c.Self+"\r\n"...)
	if m.relay != "" {
		b = append(b, HeaderRelay+": "+m.relay+"\r\n"...)
	}
	return b
}

// httpDate is the Date net/http writes now, formatted once a second.
func httpDate() []byte {
	now := time.Now()
	if d := dateNow.Load(); d != nil && d.sec == now.Unix() {
		return d.b
	}
	d := &dateCache{sec: now.Unix(), b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	dateNow.Store(d)
	return d.b
}

type dateCache struct {
	sec int64
	b   []byte
}

var dateNow atomic.Pointer[dateCache]

// addFast registers fc for Shutdown; false once shut down.
func (s *Server) addFast(fc *fastConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.fast[fc] = struct{}{}
	return true
}

func (s *Server) dropFast(fc *fastConn) {
	s.mu.Lock()
	delete(s.fast, fc)
	s.mu.Unlock()
}

// closeFast closes the fast loop's connections: the idle ones (and, as
// net/http, those that have sent nothing for fastNewIdle), or all.
func (s *Server) closeFast(all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for fc := range s.fast {
		if fc.state.CompareAndSwap(fastIdle, fastClosed) ||
			time.Since(fc.start) > fastNewIdle && fc.state.CompareAndSwap(fastNew, fastClosed) || all {
			fc.state.Store(fastClosed)
			fc.c.Close()
		}
	}
}
