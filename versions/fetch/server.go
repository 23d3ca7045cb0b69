package fetch

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoal-lb/shoal/versions/store"
)

// ObjectsPrefix is the URL path objects are served under.
const ObjectsPrefix = "/v1/objects/"

// Server serves a store's objects to cluster members. It is an
// http.Handler.
type Server struct {
	st       *store.Store
	isMember func(netip.Addr) bool
	c        struct {
		requests, served, forbidden, notFound, badRequest, failed, bytes atomic.Uint64
	}
}

// ServerStats counts the object server's answers.
type ServerStats struct {
	Requests   uint64 `json:"requests"`
	Served     uint64 `json:"served"`      // 200 and 206 answers
	Forbidden  uint64 `json:"forbidden"`   // 403: not a cluster member
	NotFound   uint64 `json:"not_found"`   // 404: no such object
	BadRequest uint64 `json:"bad_request"` // 400 malformed SHA-256, 405 method
	Failed     uint64 `json:"failed"`      // 500: the store failed
	Bytes      uint64 `json:"bytes"`       // body bytes written
}

// Handler returns the object server of st. isMember says whether a
// request's source address is a cluster member; nil refuses everyone.
func Handler(st *store.Store, isMember func(netip.Addr) bool) *Server {
	return &Server{st: st, isMember: isMember}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Requests:   s.c.requests.Load(),
		Served:     s.c.served.Load(),
		Forbidden:  s.c.forbidden.Load(),
		NotFound:   s.c.notFound.Load(),
		BadRequest: s.c.badRequest.Load(),
		Failed:     s.c.failed.Load(),
		Bytes:      s.c.bytes.Load(),
	}
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.c.requests.Add(1)
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || s.isMember == nil || !s.isMember(ap.Addr().Unmap()) {
		s.c.forbidden.Add(1)
		http.Error(w, fmt.Sprintf("%s is not a cluster member", r.RemoteAddr), http.StatusForbidden)
		return
	}
	h, ok := strings.CutPrefix(r.URL.Path, ObjectsPrefix)
	if !ok {
		s.c.notFound.Add(1)
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.c.badRequest.Add(1)
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, r.Method+" is not allowed: GET or HEAD", http.StatusMethodNotAllowed)
		return
	}
	sha, err := store.ParseSHA256(h)
	if err != nil {
		s.c.badRequest.Add(1)
		http.Error(w, "object name "+err.Error(), http.StatusBadRequest)
		return
	}
	f, _, err := s.st.Object(sha)
	if errors.Is(err, store.ErrMissing) {
		s.c.notFound.Add(1)
		http.Error(w, "no object "+h, http.StatusNotFound)
		return
	}
	if err != nil {
		s.c.failed.Add(1)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("ETag", `"`+hex.EncodeToString(sha[:])+`"`)
	s.c.served.Add(1)
	http.ServeContent(&countingWriter{ResponseWriter: w, n: &s.c.bytes}, r, "", time.Time{}, f)
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Uint64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(uint64(n))
	return n, err
}
