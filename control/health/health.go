package health

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Check is one configured check.
type Check struct {
	Name string `yaml:"name" json:"name"`
	// Kind is "http" or "tcp".
	Kind string `yaml:"kind" json:"kind"`
	// Host and Port address the node's own server (default 127.0.0.1).
	Host string `yaml:"host" json:"host"`
	Port int    `yaml:"port" json:"port"`
	// Path and Status for http checks (default "/" and 200).
	Path       string `yaml:"path" json:"path,omitempty"`
	Status     int    `yaml:"status" json:"status,omitempty"`
	IntervalMS int    `yaml:"interval_ms" json:"interval_ms"`
	TimeoutMS  int    `yaml:"timeout_ms" json:"timeout_ms"`
	Fall       int    `yaml:"fall" json:"fall"`
	Rise       int    `yaml:"rise" json:"rise"`
}

// Defaults fills unset fields.
func (c *Check) Defaults() {
	if c.Kind == "" {
		c.Kind = "http"
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Kind == "http" && c.Path == "" {
		c.Path = "/"
	}
	if c.Kind == "http" && c.Status == 0 {
		c.Status = 200
	}
	if c.IntervalMS == 0 {
		c.IntervalMS = 200
	}
	if c.TimeoutMS == 0 {
		c.TimeoutMS = 500
	}
	if c.Fall == 0 {
		c.Fall = 2
	}
	if c.Rise == 0 {
		c.Rise = 2
	}
}

// Validate names the bad field; field is the check's config path.
func (c Check) Validate(field string) error {
	bad := func(f, format string, a ...any) error {
		return fmt.Errorf("%s.%s: %s", field, f, fmt.Sprintf(format, a...))
	}
	switch {
	case c.Name == "":
		return bad("name", "empty: name the check")
	case c.Kind != "http" && c.Kind != "tcp":
		return bad("kind", "%q must be http or tcp", c.Kind)
	case c.Port < 1 || c.Port > 65535:
		return bad("port", "%d is not a port", c.Port)
	case c.Kind == "http" && (c.Status < 100 || c.Status > 599):
		return bad("status", "%d is not an HTTP status", c.Status)
	case c.IntervalMS < 20 || c.IntervalMS > 60000:
		return bad("interval_ms", "%d must be between 20 and 60000", c.IntervalMS)
	case c.TimeoutMS < 10 || c.TimeoutMS > 60000:
		return bad("timeout_ms", "%d must be between 10 and 60000", c.TimeoutMS)
	case c.Fall < 1 || c.Fall > 100:
		return bad("fall", "%d must be between 1 and 100", c.Fall)
	case c.Rise < 1 || c.Rise > 100:
		return bad("rise", "%d must be between 1 and 100", c.Rise)
	}
	return nil
}

// State is one check's current state.
type State struct {
	Check       Check     `json:"check"`
	Healthy     bool      `json:"healthy"`
	Since       time.Time `json:"since"`
	Reason      string    `json:"reason,omitempty"` // why the last probe failed
	LatencyMS   float64   `json:"latency_ms"`
	Transitions uint64    `json:"transitions"`
	Probes      uint64    `json:"probes"`
	Failures    uint64    `json:"failures"`
	run         int       // successes (>0) or failures (<0) in a row
	warned      bool      // the never-passed warning was logged
}

// Checker runs checks. Safe for concurrent use.
type Checker struct {
	log    *slog.Logger
	mu     sync.Mutex
	states []*State
	change chan struct{}
	client *http.Client
}

// New builds a checker; checks must be defaulted and valid.
func New(checks []Check, log *slog.Logger) *Checker {
	c := &Checker{log: log, change: make(chan struct{}, 1)}
	for _, ch := range checks {
		c.states = append(c.states, &State{Check: ch, Since: time.Now(), Reason: "not checked yet"})
	}
	c.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	return c
}

// Changed fires (coalescing) when the overall health may have changed.
func (c *Checker) Changed() <-chan struct{} { return c.change }

// Healthy reports whether every check passes (true when there is none).
func (c *Checker) Healthy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.states {
		if !s.Healthy {
			return false
		}
	}
	return true
}

// States returns copies of the checks' states.
func (c *Checker) States() []State {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]State, len(c.states))
	for i, s := range c.states {
		out[i] = *s
	}
	return out
}

// Run probes every check on its interval until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range c.states {
		wg.Add(1)
		go func(s *State) {
			defer wg.Done()
			t := time.NewTicker(time.Duration(s.Check.IntervalMS) * time.Millisecond)
			defer t.Stop()
			for {
				c.probe(ctx, s)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}(s)
	}
	wg.Wait()
}

func (c *Checker) probe(ctx context.Context, s *State) {
	ch := s.Check
	ctx, cancel := context.WithTimeout(ctx, time.Duration(ch.TimeoutMS)*time.Millisecond)
	defer cancel()
	start := time.Now()
	reason := c.try(ctx, ch)
	lat := time.Since(start)
	if ctx.Err() != nil && reason != "" && ctx.Err() == context.Canceled {
		return // shutting down
	}
	c.mu.Lock()
	s.Probes++
	s.LatencyMS = float64(lat.Microseconds()) / 1000
	transition := false
	if reason == "" {
		s.run = max(s.run, 0) + 1
		if !s.Healthy && s.run >= ch.Rise {
			s.Healthy, s.Since, s.Reason, transition = true, time.Now(), "", true
		}
	} else {
		s.Failures++
		s.Reason = reason
		s.run = min(s.run, 0) - 1
		if s.Healthy && -s.run >= ch.Fall {
			s.Healthy, s.Since, transition = false, time.Now(), true
		}
	}
	// A check that has not passed since the start says so once, so a
	// check that can never pass (wrong port, path or host) is visible.
	neverPassed := !s.Healthy && s.Transitions == 0 && -s.run >= ch.Fall && !s.warned
	if neverPassed {
		s.warned = true
	}
	if transition {
		s.Transitions++
	}
	healthy := s.Healthy
	c.mu.Unlock()
	if neverPassed {
		c.log.Warn("health: check has not passed since start: this node takes no new connections",
			"check", ch.Name, "target", target(ch), "reason", reason)
	}
	if transition {
		if healthy {
			c.log.Info("health: check passes again: healthy", "check", ch.Name, "rise", ch.Rise)
		} else {
			c.log.Warn("health: check failing: unhealthy, giving up new connections", "check", ch.Name,
				"target", target(ch), "reason", reason, "fall", ch.Fall)
		}
		select {
		case c.change <- struct{}{}:
		default:
		}
	}
}

func target(ch Check) string {
	hp := net.JoinHostPort(ch.Host, strconv.Itoa(ch.Port))
	if ch.Kind == "http" {
		return "http://" + hp + ch.Path
	}
	return "tcp://" + hp
}

// try runs one probe; it returns "" on success, else the reason.
func (c *Checker) try(ctx context.Context, ch Check) string {
	hp := net.JoinHostPort(ch.Host, strconv.Itoa(ch.Port))
	if ch.Kind == "tcp" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", hp)
		if err != nil {
			return err.Error()
		}
		conn.Close()
		return ""
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hp+ch.Path, nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("User-Agent", "shoal-health/1")
	resp, err := c.client.Do(req)
	if err != nil {
		return err.Error()
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode != ch.Status {
		return fmt.Sprintf("status %d, want %d", resp.StatusCode, ch.Status)
	}
	return ""
}
