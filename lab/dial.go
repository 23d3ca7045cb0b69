package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/shoal-lb/shoal/internal/netns"
)

// InNamespace runs fn on an OS thread that has joined the network namespace
// of where ("client", "br" or "nK"). Sockets fn creates belong to that
// namespace for their whole life, wherever they are used afterwards. The
// thread is never unlocked, so the Go runtime destroys it when fn returns and
// no other goroutine ever runs in the foreign namespace. fn must not start
// goroutines that expect to be in the namespace.
func InNamespace(where string, fn func() error) error {
	ns, err := ParseWhere(where)
	if err != nil {
		return err
	}
	err = netns.Run(ns, fn)
	if je := (*netns.JoinError)(nil); errors.As(err, &je) {
		return fmt.Errorf("lab: %w", err)
	}
	return err
}

// DialContext dials address from the network namespace of where.
func DialContext(ctx context.Context, where, network, address string) (net.Conn, error) {
	var c net.Conn
	err := InNamespace(where, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// HTTPClient returns an HTTP client that connects from the namespace of
// where. Keep-alives are on, so reuse it to reuse connections.
func HTTPClient(where string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return DialContext(ctx, where, network, addr)
			},
			Proxy:               nil, // lab traffic never goes through a proxy from the environment
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}
