package handoffbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-lb/shoal/lab"
)

// requestTimeout bounds one request, from the dial to the server's FIN.
const requestTimeout = 15 * time.Second

// client makes the benchmark's requests from the client namespace.
type client struct {
	ports *ports
	want  map[string][]byte // path → the exact body
}

// result is one request.
type result struct {
	err   string // "" or a failure class
	mode  string // local, handoff, relay (by the response headers)
	bytes int
	took  time.Duration
}

// run makes n requests for path, each on a fresh connection from its own
// client port, conc at a time, and sums them up.
func (c *client) run(ctx context.Context, path string, n, conc int) RunResult {
	results := make([]result, n)
	jobs := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One OS thread in the client namespace per worker, for the
			// whole run: every socket it dials is the client's.
			err := lab.InNamespace("client", func() error {
				buf := make([]byte, len(c.want[path])+1)
				for i := range jobs {
					results[i] = c.one(ctx, path, buf)
				}
				return nil
			})
			if err != nil {
				for i := range jobs {
					results[i] = result{err: "namespace"}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return summarize(path, conc, results, time.Since(start))
}

// one makes one request on a fresh connection and reads the response to
// the server's FIN.
func (c *client) one(ctx context.Context, path string, buf []byte) result {
	t0 := time.Now()
	var conn net.Conn
	for {
		port, ok := c.ports.take()
		if !ok {
			return result{err: "no_port"}
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(lab.ClientIP), Port: port}}
		dctx, cancel := context.WithTimeout(ctx, requestTimeout)
		var err error
		conn, err = d.DialContext(dctx, "tcp", lab.VIP+":80")
		cancel()
		if errors.Is(err, syscall.EADDRINUSE) {
			continue // a port some other socket holds: take the next
		}
		if err != nil {
			return result{err: "dial_" + classify(err), took: time.Since(t0)}
		}
		break
	}
	defer conn.Close()
	conn.SetDeadline(t0.Add(requestTimeout))
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: "+lab.VIP+"\r\nConnection: close\r\n\r\n"); err != nil {
		return result{err: classify(err), took: time.Since(t0)}
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return result{err: classify(err), took: time.Since(t0)}
	}
	mode := "local"
	if resp.Header.Get("X-Shoal-Handoff") != "" {
		mode = "handoff"
	} else if resp.Header.Get("X-Shoal-Relay") != "" {
		mode = "relay"
	}
	want := c.want[path]
	n, err := io.ReadFull(resp.Body, buf)
	if resp.StatusCode != http.StatusOK {
		return result{err: fmt.Sprintf("status_%d", resp.StatusCode), mode: mode, took: time.Since(t0)}
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) && err != nil && !errors.Is(err, io.EOF) {
		return result{err: "body_" + classify(err), mode: mode, took: time.Since(t0)}
	}
	if n != len(want) || !bytes.Equal(buf[:n], want) {
		return result{err: "bad_body", mode: mode, took: time.Since(t0)}
	}
	// Wait for the server's FIN, so TIME_WAIT stays on the server.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return result{err: "close_" + classify(err), mode: mode, bytes: n, took: time.Since(t0)}
	}
	return result{mode: mode, bytes: n, took: time.Since(t0)}
}

// classify names an error's class.
func classify(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return "reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// RunResult is one throughput (or latency) run.
type RunResult struct {
	Mode        string         `json:"mode"`   // what the run measures: local, handoff, relay
	Object      string         `json:"object"` // 1k, 1m
	Path        string         `json:"path"`
	Note        string         `json:"note,omitempty"`
	Concurrency int            `json:"concurrency"`
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	Failed      int            `json:"failed"`
	Failures    map[string]int `json:"failures,omitempty"` // by class
	// Modes counts the successful responses by how they were served
	// (headers): a run's own mode, else a fallback.
	Modes   map[string]int `json:"modes"`
	Seconds float64        `json:"seconds"`
	RPS     float64        `json:"requests_per_s"`
	MBps    float64        `json:"mb_per_s"` // body bytes, 10⁶ a second
	P50MS   float64        `json:"p50_ms"`   // one request, dial to FIN
	P99MS   float64        `json:"p99_ms"`
}

func summarize(path string, conc int, rs []result, took time.Duration) RunResult {
	r := RunResult{Path: path, Concurrency: conc, Requests: len(rs), Failures: map[string]int{}, Modes: map[string]int{},
		Seconds: took.Seconds()}
	var bytes int64
	var ds []time.Duration
	for _, x := range rs {
		if x.err != "" {
			r.Failed++
			r.Failures[x.err]++
			continue
		}
		r.OK++
		r.Modes[x.mode]++
		bytes += int64(x.bytes)
		ds = append(ds, x.took)
	}
	if took > 0 {
		r.RPS = float64(r.OK) / took.Seconds()
		r.MBps = float64(bytes) / took.Seconds() / 1e6
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	r.P50MS, r.P99MS = ms(pct(ds, 0.5)), ms(pct(ds, 0.99))
	return r
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(q*float64(len(d)) + 0.999999)
	return d[min(max(i, 1), len(d))-1]
}

func ms(d time.Duration) float64 { return d.Seconds() * 1e3 }

func (r RunResult) String() string {
	s := fmt.Sprintf("%s %s (%s): %d requests at concurrency %d, %d ok, %d failed", r.Mode, r.Object, r.Path, r.Requests, r.Concurrency, r.OK, r.Failed)
	if r.Failed > 0 {
		s += fmt.Sprintf(" %v", r.Failures)
	}
	return s + fmt.Sprintf("; %.0f req/s, %.1f MB/s; served %v", r.RPS, r.MBps, r.Modes)
}
