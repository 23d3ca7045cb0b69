package health

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHTTPCheckFallsAndRises(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(status.Load())) })}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	ch := Check{Name: "web", Port: port, IntervalMS: 20, Fall: 2, Rise: 2}
	ch.Defaults()
	if err := ch.Validate("health.checks[0]"); err != nil {
		t.Fatal(err)
	}
	c := New([]Check{ch}, quiet())
	if c.Healthy() {
		t.Fatal("healthy before any probe")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	waitFor(t, "healthy", c.Healthy)
	status.Store(503)
	waitFor(t, "unhealthy", func() bool { return !c.Healthy() })
	st := c.States()[0]
	if !strings.Contains(st.Reason, "status 503") || st.Transitions != 2 {
		t.Fatalf("state %+v", st)
	}
	status.Store(200)
	waitFor(t, "healthy again", c.Healthy)
}

func TestImpossibleChecksStayUnhealthy(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	checks := []Check{
		{Name: "closed-port", Kind: "tcp", Port: port, IntervalMS: 20, TimeoutMS: 100},
		{Name: "no-such-host", Host: "no-such-host.invalid", Port: 80, IntervalMS: 20, TimeoutMS: 100},
	}
	for i := range checks {
		checks[i].Defaults()
	}
	c := New(checks, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	go c.Run(ctx)
	waitFor(t, "failures", func() bool {
		for _, s := range c.States() {
			if s.Failures < 3 {
				return false
			}
		}
		return true
	})
	cancel()
	if c.Healthy() {
		t.Fatal("impossible checks passed")
	}
	for _, s := range c.States() {
		if s.Reason == "" {
			t.Errorf("%s: no reason", s.Check.Name)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Check{Name: "x", Port: 80}
	good.Defaults()
	for f, mut := range map[string]func(*Check){
		"name": func(c *Check) { c.Name = "" }, "kind": func(c *Check) { c.Kind = "udp" },
		"port": func(c *Check) { c.Port = 0 }, "interval_ms": func(c *Check) { c.IntervalMS = 5 },
		"fall": func(c *Check) { c.Fall = 1000 }, "status": func(c *Check) { c.Status = 42 },
	} {
		c := good
		mut(&c)
		if err := c.Validate("health.checks[0]"); err == nil || !strings.Contains(err.Error(), "health.checks[0]."+f) {
			t.Errorf("%s: %v", f, err)
		}
	}
	_ = strconv.Itoa
}
