package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/lab"
)

// tapTxDropped reads the tap's TX drops as `ip -s link` shows them in the
// node's namespace.
func tapTxDropped(t *testing.T, id string) uint64 {
	t.Helper()
	out := run(t, id, "ip", "-s", "-j", "link", "show", lab.Tap)
	var links []struct {
		Stats64 struct {
			TX struct {
				Dropped uint64 `json:"dropped"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show %s in %s: %v: %s", lab.Tap, id, err, out)
	}
	return links[0].Stats64.TX.Dropped
}

// TestFreshConnectionsDuringDownloads: while six 100 MiB downloads are in
// flight, 40 fresh connections all complete their handshake in under
// 0.5 s (a lost SYN or SYN-ACK costs a 1 s retransmission), and no tap
// queue drops a packet, by `ip -s link` and by shoal stats. The kernel
// reply path carries the data.
func TestFreshConnectionsDuringDownloads(t *testing.T) {
	// Kernel mode explicitly: in tap mode this test fails (the tap drops
	// hundreds of frames per node, SYN-ACKs among them), which is why the
	// kernel reply path exists.
	l := up(t, lab.Options{Nodes: 3, ReplyPath: "kernel"})
	ids := l.NodeIDs()
	const downloads, probes = 6, 40
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	client := lab.HTTPClient("client")
	var wg sync.WaitGroup
	dlEnd := make([]time.Time, downloads)
	dlErr := make([]error, downloads)
	dlBytes := make([]int64, downloads)
	started := make(chan struct{}, downloads)
	for i := 0; i < downloads; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { dlEnd[i] = time.Now() }()
			req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://%s/obj/100m?dl=%d", lab.VIP, i), nil)
			req.Close = true
			resp, err := client.Do(req)
			if err != nil {
				dlErr[i] = err
				started <- struct{}{}
				return
			}
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 1<<16)
			if _, err := br.Peek(1); err != nil {
				dlErr[i] = err
			}
			started <- struct{}{}
			dlBytes[i], dlErr[i] = io.Copy(io.Discard, br)
		}(i)
	}
	for i := 0; i < downloads; i++ {
		<-started
	}
	// All six are receiving: now the fresh connections, all at once.
	probeStart := time.Now()
	connect := make([]time.Duration, probes)
	probeErr := make([]error, probes)
	var pw sync.WaitGroup
	for i := 0; i < probes; i++ {
		pw.Add(1)
		go func(i int) {
			defer pw.Done()
			t0 := time.Now()
			c, err := lab.DialContext(ctx, "client", "tcp", lab.VIP+":80")
			connect[i] = time.Since(t0)
			if err != nil {
				probeErr[i] = err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "GET /obj/1k HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", lab.VIP)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				probeErr[i] = err
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || resp.StatusCode != 200 || n != 1024 {
				probeErr[i] = fmt.Errorf("status %d, %d bytes, %v", resp.StatusCode, n, err)
			}
		}(i)
	}
	pw.Wait()
	probesDone := time.Now()
	wg.Wait()

	for i, err := range dlErr {
		if err != nil || dlBytes[i] != 100<<20 {
			t.Errorf("download %d: %d bytes, %v", i, dlBytes[i], err)
		}
	}
	for i, err := range probeErr {
		if err != nil {
			t.Errorf("probe %d: %v", i, err)
		}
	}
	first := slices.MinFunc(dlEnd, func(a, b time.Time) int { return a.Compare(b) })
	if first.Before(probesDone) {
		t.Fatalf("a download ended %v after the probes began, before they were done (%v): the probes did not all run under load",
			first.Sub(probeStart).Round(time.Millisecond), probesDone.Sub(probeStart).Round(time.Millisecond))
	}
	worst := slices.Max(connect)
	sorted := slices.Clone(connect)
	slices.Sort(sorted)
	t.Logf("%d connects during %d downloads: median %v, worst %v; downloads ran %v after the probes began",
		probes, downloads, sorted[probes/2].Round(time.Microsecond), worst.Round(time.Microsecond), first.Sub(probeStart).Round(time.Millisecond))
	if worst >= 500*time.Millisecond {
		t.Errorf("slowest connect took %v; want < 0.5 s (a lost SYN or SYN-ACK costs 1 s)", worst)
	}

	var kernelBytes uint64
	for _, id := range ids {
		st := status(t, id)
		s := stats(t, id)
		ipDrops := tapTxDropped(t, id)
		t.Logf("%s: reply path %s, kernel sent %d packets / %d MB, tap tx dropped %d (stats) %d (ip -s link), tap port tx errors %d",
			id, st.ReplyPath.Mode, s.Reply.KernelPackets, s.Reply.KernelBytes/1e6, s.Reply.TapTxDropped, ipDrops, s.Ports["tap"].TxErrors)
		if st.ReplyPath.Mode != "kernel" || s.Reply.Mode != "kernel" {
			t.Errorf("%s runs reply path %q, want kernel", id, st.ReplyPath.Mode)
		}
		if ipDrops != 0 || s.Reply.TapTxDropped != 0 {
			t.Errorf("%s: the tap dropped packets: %d by ip -s link, %d by shoal stats", id, ipDrops, s.Reply.TapTxDropped)
		}
		if p := s.Ports["tap"]; p.TxErrors != 0 || p.RxMissed != 0 {
			t.Errorf("%s: tap port tx_errors %d rx_missed %d", id, p.TxErrors, p.RxMissed)
		}
		kernelBytes += s.Reply.KernelBytes
	}
	if want := uint64(downloads * 100 << 20); kernelBytes < want {
		t.Errorf("the kernel path carried %d bytes; the downloads alone were %d", kernelBytes, want)
	}
	if n := resets(t); n != 0 {
		t.Errorf("%d resets reached the client", n)
	}
}

// TestMixedReplyPaths: half the nodes run the kernel reply path, half the
// tap; every node serves the connections of its buckets, whole.
func TestMixedReplyPaths(t *testing.T) {
	modes := map[int]string{1: "kernel", 2: "tap", 3: "kernel", 4: "tap"}
	l := up(t, lab.Options{Nodes: 4, ReplyPaths: modes})
	tb, seed := tableOf(t, l)
	perNode := map[string][]int{}
	for p := 41000; ; p++ {
		o := ownerOfPort(tb, seed, p)
		if len(perNode[o]) < 4 {
			perNode[o] = append(perNode[o], p)
		}
		if len(perNode) == 4 && !slices.ContainsFunc(l.NodeIDs(), func(id string) bool { return len(perNode[id]) < 4 }) {
			break
		}
	}
	var ports []int
	for _, id := range l.NodeIDs() {
		ports = append(ports, perNode[id]...)
	}
	res := curlFrom(t, ports, "/obj/1m", 4)
	for _, r := range res {
		if want := ownerOfPort(tb, seed, r.port); r.errMsg != "" || r.code != 200 || r.size != 1<<20 || r.node != want {
			t.Errorf("port %d: code %d size %d node %q (owner %s) err %q", r.port, r.code, r.size, r.node, want, r.errMsg)
		}
	}
	for k, id := range l.NodeIDs() {
		st := status(t, id)
		s := stats(t, id)
		want := modes[k+1]
		t.Logf("%s: reply path %s, kernel sent %d MB, tap tx packets %d", id, st.ReplyPath.Mode, s.Reply.KernelBytes/1e6, s.Ports["tap"].RxPackets)
		if st.ReplyPath.Mode != want {
			t.Errorf("%s runs %q, want %q", id, st.ReplyPath.Mode, want)
		}
		// 4 MiB served by each node: in kernel mode the kernel path
		// carried all but the segments with SYN or FIN (the last data
		// segment carries the FIN when the server closes), in tap mode
		// nothing left that way.
		if want == "kernel" && s.Reply.KernelBytes < 3<<20 {
			t.Errorf("%s: kernel path carried %d bytes of the 4 MiB it served", id, s.Reply.KernelBytes)
		}
		if want == "tap" && s.Reply.KernelBytes != 0 {
			t.Errorf("%s: tap mode, yet the kernel path carried %d bytes", id, s.Reply.KernelBytes)
		}
		tables := run(t, id, "nft", "list", "tables")
		if has := strings.Contains(tables, "shoal_reply_"); has != (want == "kernel") {
			t.Errorf("%s (%s): nft tables %q", id, want, tables)
		}
	}
	if n := resets(t); n != 0 {
		t.Errorf("%d resets reached the client", n)
	}
}
