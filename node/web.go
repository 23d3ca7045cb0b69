package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/shoal-lb/shoal/config"
)

// web is the node's minimal HTTP server: static files from the content
// directory, every response marked with the node that served it.
type web struct {
	srv *http.Server
	log *slog.Logger
}

func startWeb(cfg *config.Config, log *slog.Logger) (*web, error) {
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return nil, inputErr("http.listen: %v", err)
	}
	var files http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "shoal node %s: no content directory configured\n", cfg.NodeID)
	})
	if cfg.HTTP.Content != "" {
		files = http.FileServer(http.Dir(cfg.HTTP.Content))
	}
	id := cfg.NodeID
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Shoal-Node", id)
		files.ServeHTTP(w, r)
	})
	s := &web{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		log: log,
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "err", err)
		}
	}()
	return s, nil
}

// stop lets requests in flight finish for a moment, then closes.
func (s *web) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
}
