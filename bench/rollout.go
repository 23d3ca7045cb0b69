package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/lab"
)

// RolloutOptions drive `shoal bench rollout`.
type RolloutOptions struct {
	Sizes  []int // group sizes (lab nodes, group all), e.g. 2, 4, 8
	Bytes  int64 // the new version's size (100 MB)
	Rate   int   // client requests per second, each on a fresh connection
	Binary string
	// MemoryMB is each node's dpdk.memory_mb (small: 8 nodes share the
	// machine's hugepages).
	MemoryMB int
	LabLog   io.Writer
	Log      func(format string, a ...any)
}

// RolloutRun is one rollout of a new version to a group of Nodes.
type RolloutRun struct {
	Nodes int   `json:"nodes"`
	Bytes int64 `json:"bytes"`
	// Seconds from the publish call until every node serves the new
	// version (its own row available at it); Threshold until the first
	// node's table says the threshold share holds it.
	Seconds          float64 `json:"seconds"`
	ThresholdSeconds float64 `json:"threshold_seconds"`
	// Requests made by the client from the publish until the end of the
	// rollout, and those that failed (any kind: refused, reset, timeout,
	// broken body, a status other than 206, a missing version), by kind.
	Requests  int            `json:"requests"`
	Failed    int            `json:"failed"`
	ErrorRate float64        `json:"error_rate"`
	Failures  map[string]int `json:"failures,omitempty"`
	// Old and New count the answers of each version.
	Old int `json:"old"`
	New int `json:"new"`
	// MBPerSec is nodes-1 fetches of Bytes over Seconds: the rollout's
	// aggregate transfer rate (batch 1, so one transfer at a time).
	MBPerSec float64 `json:"mb_per_sec"`
}

// RunRollout brings up a lab per size, publishes a 1 MiB v1 of
// /bench.bin to group all and waits until every node serves it, then,
// with a client requesting a 64 KiB range of the path at opts.Rate on
// fresh connections, publishes a v2 of opts.Bytes (threshold 50, batch 1)
// and times its rollout.
func RunRollout(ctx context.Context, opts RolloutOptions) ([]RolloutRun, error) {
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir, err := os.MkdirTemp("", "shoal-bench-rollout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	v1, err := writeStream(dir, "bench-v1", 1<<20)
	if err != nil {
		return nil, err
	}
	v2, err := writeStream(dir, "bench-v2", opts.Bytes)
	if err != nil {
		return nil, err
	}
	var out []RolloutRun
	for _, n := range opts.Sizes {
		logf("rollout: %d-node lab", n)
		r, err := rolloutOnce(ctx, opts, n, v1, v2)
		if err != nil {
			return out, err
		}
		logf("rollout: %d nodes: %.1f s, %d/%d requests failed", n, r.Seconds, r.Failed, r.Requests)
		out = append(out, r)
	}
	return out, nil
}

func writeStream(dir, name string, size int64) (string, error) {
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	if _, err := io.CopyBuffer(f, lab.ContentBytes(name, size), make([]byte, 1<<20)); err != nil {
		f.Close()
		return "", err
	}
	return p, f.Close()
}

const rolloutPath = "/bench.bin"

func rolloutOnce(ctx context.Context, opts RolloutOptions, n int, v1, v2 string) (run RolloutRun, err error) {
	run = RolloutRun{Nodes: n, Bytes: opts.Bytes}
	upCtx, cancel := context.WithTimeout(ctx, upWait)
	defer cancel()
	l, err := lab.Up(upCtx, lab.Options{Nodes: n, Binary: opts.Binary, MemoryMB: opts.MemoryMB, Log: opts.LabLog})
	if err != nil {
		return run, err
	}
	defer lab.DownInto(&err)
	ids := l.NodeIDs()
	if _, err := lab.WaitConverged(upCtx, ids, n); err != nil {
		return run, err
	}
	if err := publishFile(v1); err != nil {
		return run, err
	}
	if err := lab.WaitVersion(ctx, ids, rolloutPath, 1, time.Minute); err != nil {
		return run, err
	}

	c := newRangeClient()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var publishedAt, endedAt time.Time
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		sem := make(chan struct{}, 64)
		tick := time.NewTicker(time.Second / time.Duration(opts.Rate))
		defer tick.Stop()
		var rw sync.WaitGroup
		defer rw.Wait()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			sem <- struct{}{}
			rw.Add(1)
			go func(i int) {
				defer func() { <-sem; rw.Done() }()
				start := time.Now()
				v, kind := c.get(int64(i*7919) % (1<<20 - 1<<16))
				mu.Lock()
				defer mu.Unlock()
				if publishedAt.IsZero() || start.Before(publishedAt) || !endedAt.IsZero() && start.After(endedAt) {
					return
				}
				run.Requests++
				switch {
				case kind != "":
					run.Failed++
					if run.Failures == nil {
						run.Failures = map[string]int{}
					}
					run.Failures[kind]++
				case v == "1":
					run.Old++
				default:
					run.New++
				}
			}(i)
		}
	}()
	time.Sleep(time.Second)
	t0 := time.Now()
	mu.Lock()
	publishedAt = t0
	mu.Unlock()
	if err := publishFile(v2); err != nil {
		close(stop)
		wg.Wait()
		return run, err
	}
	var thr time.Duration
	deadline := t0.Add(10 * time.Minute)
	for {
		done := 0
		for _, id := range ids {
			var st api.Content
			if err := api.Get(lab.SocketPath(id), api.PathContent, &st); err != nil {
				continue
			}
			for _, p := range st.Paths {
				if p.Path != rolloutPath || p.Version != 2 {
					continue
				}
				if p.ThresholdReached && thr == 0 {
					thr = time.Since(t0)
				}
				for _, r := range p.Nodes {
					if r.Node == id && r.Version == 2 && r.State == "available" {
						done++
					}
				}
			}
		}
		if done == len(ids) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			close(stop)
			wg.Wait()
			return run, fmt.Errorf("bench rollout: %d of %d nodes serve v2 after %v", done, len(ids), time.Since(t0).Round(time.Second))
		}
		time.Sleep(20 * time.Millisecond)
	}
	el := time.Since(t0)
	mu.Lock()
	endedAt = time.Now()
	mu.Unlock()
	close(stop)
	wg.Wait()
	run.Seconds, run.ThresholdSeconds = el.Seconds(), thr.Seconds()
	if run.Requests > 0 {
		run.ErrorRate = float64(run.Failed) / float64(run.Requests)
	}
	run.MBPerSec = float64(n-1) * float64(opts.Bytes) / 1e6 / el.Seconds()
	return run, nil
}

// publishFile publishes a file as the next version of rolloutPath to
// group all from n1, as `shoal content publish` does.
func publishFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	q := "?path=" + rolloutPath + "&group=" + lab.GroupAll + "&threshold=50&batch=1"
	var pub api.Publication
	return api.PostStream(lab.SocketPath("n1"), api.PathContentPublish+q, f, 10*time.Minute, &pub)
}

// rangeClient asks the VIP for 64 KiB of rolloutPath on a fresh
// connection per request.
type rangeClient struct{ *http.Client }

func newRangeClient() *rangeClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return lab.DialContext(ctx, "client", network, addr)
		},
		DisableKeepAlives:     true,
		DisableCompression:    true,
		ResponseHeaderTimeout: 15 * time.Second,
	}
	return &rangeClient{&http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// get returns the answer's version, or the kind of failure.
func (c *rangeClient) get(off int64) (version, kind string) {
	req, _ := http.NewRequest("GET", "http://"+lab.VIP+rolloutPath, nil)
	req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+1<<16-1, 10))
	resp, err := c.Do(req)
	if err != nil {
		return "", failKind(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	switch v := resp.Header.Get("X-Shoal-Version"); {
	case err != nil:
		return "", "body_" + failKind(err)
	case resp.StatusCode != http.StatusPartialContent:
		return "", "status_" + strconv.Itoa(resp.StatusCode)
	case n != 1<<16:
		return "", "short_body"
	case v != "1" && v != "2":
		return "", "no_version"
	default:
		return v, ""
	}
}

func failKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return "error"
}
