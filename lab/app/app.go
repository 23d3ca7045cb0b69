package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Cookie is the session cookie GET /app.cgi sets when the request has none;
// the preset's http.session_cookie.
const Cookie = "shoal_session"

// Handler serves the lab app for node.
type Handler struct {
	node  string
	count atomic.Uint64
}

// New returns the app of node (the name it puts in its answers).
func New(node string) *Handler { return &Handler{node: node} }

// Count is the number of /app.cgi requests answered so far.
func (h *Handler) Count() uint64 { return h.count.Load() }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Shoal-App", h.node)
	switch r.URL.Path {
	case "/app.cgi":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		n := h.count.Add(1)
		if _, err := r.Cookie(Cookie); err != nil {
			http.SetCookie(w, &http.Cookie{Name: Cookie, Value: newSession(), Path: "/", HttpOnly: true})
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "app.cgi node=%s count=%d\n", h.node, n)
	case "/upload":
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		sum := sha256.New()
		n, err := io.CopyBuffer(sum, r.Body, make([]byte, 64<<10))
		if err != nil {
			http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s %d\n", hex.EncodeToString(sum.Sum(nil)), n)
	default:
		http.NotFound(w, r)
	}
}

func newSession() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Listen opens addr: "unix:/path" (a stale socket file is replaced, the new
// one made 0666 so the node can connect whatever its user) or "host:port".
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("listen %q: a unix socket path must be absolute", addr)
		}
		if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
			os.Remove(path)
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, err
		}
		os.Chmod(path, 0o666)
		return ln, nil
	}
	if _, p, err := net.SplitHostPort(addr); err != nil || p == "" {
		return nil, fmt.Errorf("listen %q: neither host:port nor unix:/path", addr)
	} else if _, err := strconv.ParseUint(p, 10, 16); err != nil {
		return nil, fmt.Errorf("listen %q: %q is not a port", addr, p)
	}
	return net.Listen("tcp", addr)
}

// Serve serves the app of node on ln until ctx ends, then shuts down
// gracefully (up to 5 s) and removes a unix socket file.
func Serve(ctx context.Context, ln net.Listener, node string) error {
	srv := &http.Server{
		Handler:           New(node),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return err
}
