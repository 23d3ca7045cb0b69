package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run. Zero values take the defaults noted.
type Config struct {
	Target   string        // host:port, e.g. "198.18.0.100:80"
	Path     string        // request path, "/" by default
	Rate     int           // new connections per second, open loop; 0 means persistent connections only
	Duration time.Duration // how long new connections (and persistent requests) are started
	Timeout  time.Duration // per connection (connect + request + response) or per persistent request; 5 s by default

	// Dial opens every connection; net.Dialer by default. For the lab pass
	// func(ctx, n, a) { return lab.DialContext(ctx, "client", n, a) }.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	MaxInFlight int // bound on open new connections, 512 by default; a start beyond it is "skipped"

	Persistent      int           // keep-alive connections opened at the start
	PersistentEvery time.Duration // interval between their requests, 100 ms by default
}

// Result is the outcome of one new connection or of one request on a
// persistent connection.
type Result struct {
	Start       time.Time     // when the attempt began (dial, or the request on a reused connection)
	Late        time.Duration // Start minus its scheduled time
	Connect     time.Duration // dial time (includes SYN retransmissions); 0 on a reused connection
	Established bool          // a TCP connection was established (by this attempt, or reused)
	Total       time.Duration // Start to the end of the body, or to the failure
	Node        string        // X-Shoal-Node of the response
	Status      int           // HTTP status, 0 without a response
	Err         string        // "" on success, else a class listed in the package doc
	Detail      string        // error text of a failure
	Persistent  bool
	ConnID      int    // new connections: schedule index; persistent: slot 0..Persistent-1
	Opened      string // persistent only: why this request opened a new connection ("first", "after-error", "server-close", "idle-close", "idle-reset"), "" when reused
}

// Error classes of Result.Err.
const (
	ErrReset       = "reset"
	ErrRefused     = "refused"
	ErrTimeout     = "timeout"
	ErrUnreachable = "unreachable"
	ErrEOF         = "eof"
	ErrBadStatus   = "bad-status"
	ErrBadBody     = "bad-body"
	ErrCanceled    = "canceled"
	ErrSkipped     = "skipped"
	ErrOther       = "error"
)

func (c *Config) setDefaults() error {
	if c.Target == "" {
		return errors.New("loadgen: Target is empty")
	}
	if _, _, err := net.SplitHostPort(c.Target); err != nil {
		return fmt.Errorf("loadgen: Target %q: %v", c.Target, err)
	}
	if c.Rate < 0 || c.Persistent < 0 || c.MaxInFlight < 0 || c.Timeout < 0 || c.PersistentEvery < 0 {
		return errors.New("loadgen: negative Rate, Persistent, MaxInFlight, Timeout or PersistentEvery")
	}
	if c.Duration <= 0 {
		return errors.New("loadgen: Duration must be positive")
	}
	if c.Rate == 0 && c.Persistent == 0 {
		return errors.New("loadgen: nothing to do: Rate and Persistent are both 0")
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 512
	}
	if c.PersistentEvery == 0 {
		c.PersistentEvery = 100 * time.Millisecond
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	return nil
}

// starts is the number of new connections scheduled in Duration: every i
// with i/Rate < Duration.
func (c *Config) starts() int {
	if c.Rate == 0 {
		return 0
	}
	return int((int64(c.Duration)*int64(c.Rate) + int64(time.Second) - 1) / int64(time.Second))
}

// offset is the scheduled start of new connection i relative to t0.
func (c *Config) offset(i int) time.Duration {
	return time.Duration(int64(i) * int64(time.Second) / int64(c.Rate))
}

// Run generates the load described by cfg and reports every outcome.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	closeReq := []byte(requestHead(cfg, false))
	keepReq := []byte(requestHead(cfg, true))

	t0 := time.Now()
	end := t0.Add(cfg.Duration)
	var wg sync.WaitGroup

	persistent := make([][]Result, cfg.Persistent)
	for s := range persistent {
		wg.Go(func() {
			persistent[s] = runPersistent(ctx, &cfg, keepReq, s, t0, end)
		})
	}

	results := make([]Result, cfg.starts())
	var inFlight atomic.Int64
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	n := 0
	for ; n < len(results); n++ {
		at := t0.Add(cfg.offset(n))
		if !sleepUntil(ctx, timer, at) {
			break
		}
		r := &results[n]
		r.ConnID = n
		if inFlight.Add(1) > int64(cfg.MaxInFlight) {
			inFlight.Add(-1)
			r.Start, r.Late, r.Err = at, time.Since(at), ErrSkipped
			r.Detail = fmt.Sprintf("%d connections in flight", cfg.MaxInFlight)
			continue
		}
		wg.Go(func() {
			defer inFlight.Add(-1)
			oneShot(ctx, &cfg, closeReq, r, at)
		})
	}
	if ctx.Err() != nil { // the window ends where the schedule stopped
		if now := time.Now(); now.Before(end) {
			end = now
		}
	}
	wg.Wait()
	results = results[:n]
	for _, p := range persistent {
		results = append(results, p...)
	}
	for _, r := range results { // a late start still falls inside the window
		if !r.Start.Before(end) {
			end = r.Start.Add(1)
		}
	}
	rep := newReport(results, t0, end, cfg)
	return rep, ctx.Err()
}

func requestHead(cfg Config, keepAlive bool) string {
	conn := "close"
	if keepAlive {
		conn = "keep-alive"
	}
	return "GET " + cfg.Path + " HTTP/1.1\r\nHost: " + cfg.Target +
		"\r\nUser-Agent: shoal-loadgen\r\nAccept: */*\r\nConnection: " + conn + "\r\n\r\n"
}

// sleepUntil waits for at or ctx, whichever is first; false if ctx ended.
func sleepUntil(ctx context.Context, t *time.Timer, at time.Time) bool {
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t.Reset(d)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		t.Stop()
		return false
	}
}
