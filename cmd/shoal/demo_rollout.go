package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/lab"
)

// demoRollout is the content-distribution part (issue 13), on the groups
// lab: v1 of /news.html published to group all, then v2 while the client
// polls the page; a line per 10 answers shows which version each node
// served.
func demoRollout(ctx context.Context, l *lab.Lab) error {
	const path, size = "/news.html", 8 << 20
	fmt.Println("\nA rolling update: /news.html (8 MiB) is published to group all (every node), v1 then v2,")
	fmt.Println("  threshold 50 %, one node at a time; while v2 rolls out the client asks for the page's first KiB")
	fmt.Println("  every 50 ms on a fresh connection. Answers carry X-Shoal-Version; a node updating serves nothing,")
	fmt.Println("  and once half the group has v2 the others stop serving v1 until they have it.")
	for v := 1; v <= 2; v++ {
		if v == 2 {
			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			var bad int
			go func() { defer wg.Done(); bad = demoPoll(ctx, path, done) }()
			time.Sleep(500 * time.Millisecond)
			err := demoPublish(path, v, size)
			if err == nil {
				err = lab.WaitVersion(ctx, l.NodeIDs(), path, uint64(v), time.Minute)
			}
			time.Sleep(500 * time.Millisecond)
			close(done)
			wg.Wait()
			if err != nil {
				return err
			}
			if bad > 0 {
				return fmt.Errorf("demo: %d requests failed during the rollout", bad)
			}
			break
		}
		if err := demoPublish(path, v, size); err != nil {
			return err
		}
		if err := lab.WaitVersion(ctx, l.NodeIDs(), path, uint64(v), time.Minute); err != nil {
			return err
		}
	}
	var st api.Content
	if err := api.Get(lab.SocketPath("n1"), api.PathContent+"?path="+url.QueryEscape(path), &st); err == nil && len(st.Paths) == 1 {
		p := st.Paths[0]
		fmt.Printf("\nshoal content status %s: version %d on %d/%d members; threshold reached %v\n", path, p.Version, p.Done, p.Members, p.ThresholdReached)
	}
	fmt.Println("No request failed; every node serves v2.")
	return nil
}

// demoPublish publishes size bytes of a deterministic stream as version v
// of path, from n1, as `shoal content publish` does.
func demoPublish(path string, v, size int) error {
	f, err := os.CreateTemp("", "shoal-demo-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := io.Copy(f, lab.ContentBytes(fmt.Sprintf("demo-news-v%d", v), int64(size))); err != nil {
		return err
	}
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	q := url.Values{"path": {path}, "group": {lab.GroupAll}, "threshold": {"50"}, "batch": {"1"}}
	var pub api.Publication
	if err := api.PostStream(lab.SocketPath("n1"), api.PathContentPublish+"?"+q.Encode(), f, time.Minute, &pub); err != nil {
		return fmt.Errorf("demo: publishing %s v%d: %v", path, v, err)
	}
	fmt.Printf("\n$ shoal content publish %s --from news-v%d.html --group all   (on n1)\npublished %s version %d (%d bytes)\n", path, v, pub.Path, pub.Version, pub.Size)
	return nil
}

// demoPoll asks for path every 50 ms until done and prints a line per 10
// answers: the time, then version and node of each; it returns the
// number of failed requests.
func demoPoll(ctx context.Context, path string, done <-chan struct{}) int {
	c := lab.HTTPClient("client")
	c.Transport.(*http.Transport).DisableKeepAlives = true
	c.Timeout = 10 * time.Second
	t0 := time.Now()
	var line []string
	bad := 0
	flush := func() {
		if len(line) > 0 {
			fmt.Printf("  %5.1fs  %s\n", time.Since(t0).Seconds(), strings.Join(line, " "))
			line = nil
		}
	}
	fmt.Println("\nthe client's answers (version@node), 10 per line:")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	seen := map[string]int{}
	for {
		select {
		case <-done:
			flush()
			fmt.Printf("  answers: %s; failed %d\n", countsLine(seen), bad)
			return bad
		case <-ctx.Done():
			return bad + 1
		case <-tick.C:
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+lab.VIP+path, nil)
		req.Header.Set("Range", "bytes=0-1023")
		resp, err := c.Do(req)
		a := "FAILED"
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusPartialContent {
				a = "v" + resp.Header.Get("X-Shoal-Version") + "@" + resp.Header.Get("X-Shoal-Node")
				seen["v"+resp.Header.Get("X-Shoal-Version")]++
			}
		}
		if a == "FAILED" {
			bad++
		}
		if line = append(line, a); len(line) == 10 {
			flush()
		}
	}
}
