package local

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// The response headers shoal writes.
const (
	HeaderNode    = "X-Shoal-Node"    // the node that served the request
	HeaderHandoff = "X-Shoal-Handoff" // the node that handed the connection off to it
	HeaderRelay   = "X-Shoal-Relay"   // the node that relayed the connection (or forwarded the request) to it
	HeaderVersion = "X-Shoal-Version" // the version of published content served

	// headerForwardedProto carries "https" from a node forwarding a
	// request that arrived over TLS to the node that serves it (the hop
	// between them is plain HTTP), which tells its upstream.
	headerForwardedProto = "X-Shoal-Forwarded-Proto"
)

// handle serves one request: a local upstream for its group, else another
// node for a group this node does not serve, else Content.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	s.n.requests.Add(1)
	rec := &recorder{ResponseWriter: w}
	defer s.countStatus(rec)
	m, _ := r.Context().Value(metaKey{}).(*connMeta)
	if m == nil {
		m = &connMeta{} // not reached: every connection arrives wrapped
	}
	group := ""
	if s.c.Group != nil {
		group = s.c.Group(r)
	}
	if s.c.Published != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if s.servePublished(rec, r, m) {
			return
		}
	}
	if u := s.upstream[group]; u != nil && group != "" {
		s.mark(rec, m)
		s.n.upstream.Add(1)
		u.proxy.ServeHTTP(rec, r)
		return
	}
	// A relayed connection (which includes every forwarded request) is
	// never forwarded again: the node that relayed it already decided.
	if group != "" && m.relay == "" && s.c.Serves != nil && !s.c.Serves(group) && s.c.Forward != nil {
		if node, addr, ok := s.c.Forward(r); ok && node != s.c.Self {
			// The far node writes X-Shoal-Node (itself) and X-Shoal-Relay
			// (this node); this node adds only how the connection reached it.
			if m.origin != "" {
				rec.Header().Set(HeaderHandoff, m.origin)
			}
			s.n.forwarded.Add(1)
			s.forward(rec, r, m, node, addr)
			return
		}
	}
	s.mark(rec, m)
	s.n.static.Add(1)
	if s.files == nil {
		http.Error(rec, fmt.Sprintf("shoal node %s: no content directory configured", s.c.Self), http.StatusNotFound)
		return
	}
	if s.cache != nil && s.serveCached(rec, r) {
		return
	}
	s.files.ServeHTTP(rec, r)
}

// serveCached answers a GET or HEAD of a small file from the cache
// (handoff/objcache) exactly as http.FileServer would from the file, and
// reports whether it did. Paths the file server redirects (a trailing
// slash, ".../index.html") and everything the cache misses (directories,
// large files, errors) are left to the file server.
func (s *Server) serveCached(w *recorder, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	if p == "" || p[0] != '/' || p[len(p)-1] == '/' || strings.HasSuffix(p, "/index.html") {
		return false
	}
	e, ok := s.cache.Get(p)
	if !ok {
		return false
	}
	s.n.cached.Add(1)
	// ServeContent takes the type from the extension or sniffs the bytes
	// (in memory now), as the file server does. Setting it here from the
	// entry would save the sniff but show it on a 412, which the file
	// server answers without one.
	http.ServeContent(w, r, e.Name, e.ModTime, bytes.NewReader(e.Data))
	return true
}

// mark writes the headers of a response this node serves.
func (s *Server) mark(w http.ResponseWriter, m *connMeta) {
	h := w.Header()
	h.Set(HeaderNode, s.c.Self)
	if m.origin != "" {
		h.Set(HeaderHandoff, m.origin)
	}
	if m.relay != "" {
		h.Set(HeaderRelay, m.relay)
	}
}

func (s *Server) countStatus(rec *recorder) {
	switch {
	case rec.status >= 500:
		s.n.status5xx.Add(1)
	case rec.status >= 400:
		s.n.status4xx.Add(1)
	}
}

// recorder notes a response's final status. It keeps ReadFrom (so static
// files still go out by sendfile, except small ones: smallBody) and unwraps
// for http.ResponseController.
type recorder struct {
	http.ResponseWriter
	status int
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// smallBody is the largest body that ReadFrom copies through the
// response's buffers instead of handing to the connection's ReadFrom
// (sendfile). net/http's ReadFrom writes the head with the body's first 512
// bytes, then sendfiles the rest: for a 1 KiB file two system calls and two
// segments, where a copy leaves the head and the body in one write when
// the response ends (the connection's buffer is 4 KiB). Serving 1 KiB
// files, the sendfile path was about a quarter of the node's CPU (pprof,
// issue 14).
const smallBody = 2048

var smallBufs = sync.Pool{New: func() any { return new([smallBody]byte) }}

func (w *recorder) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if n, err := strconv.ParseInt(w.Header().Get("Content-Length"), 10, 64); err == nil && n <= smallBody {
		buf := smallBufs.Get().(*[smallBody]byte)
		defer smallBufs.Put(buf)
		return io.CopyBuffer(struct{ io.Writer }{w.ResponseWriter}, r, buf[:])
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// servePublished serves a published path: its version from here, or from
// the node Forward names when this node serves no version of it now. It
// reports whether it answered; unpublished paths go on as before.
func (s *Server) servePublished(w *recorder, r *http.Request, m *connMeta) bool {
	p := s.c.Published(r)
	switch p.Status {
	case PublishedHere:
		defer p.File.Close()
		s.mark(w, m)
		s.n.versioned.Add(1)
		h := w.Header()
		h.Set(HeaderVersion, strconv.FormatUint(p.Version, 10))
		h.Set("ETag", p.ETag)
		http.ServeContent(w, r, p.Name, p.ModTime, p.File)
		return true
	case PublishedElsewhere:
		if m.relay == "" && s.c.Forward != nil {
			if node, addr, ok := s.c.Forward(r); ok && node != s.c.Self {
				if m.origin != "" {
					w.Header().Set(HeaderHandoff, m.origin)
				}
				s.n.forwarded.Add(1)
				s.forward(w, r, m, node, addr)
				return true
			}
		}
		s.mark(w, m)
		s.n.versionUnavailable.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("shoal node %s: no node serves a version of %s right now", s.c.Self, r.URL.Path), http.StatusServiceUnavailable)
		return true
	}
	return false
}
