package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/lab"
)

var shoalBin string

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			fmt.Println("e2e: skipping: the lab needs root (network namespaces, DPDK)")
			return m.Run()
		}
		if err := lab.CheckHost(); err != nil {
			fmt.Println("e2e: skipping:", err)
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "shoal-e2e-")
		if err != nil {
			fmt.Println(err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		shoalBin, err = lab.BuildBinary(ctx, dir)
		if err != nil {
			fmt.Println("e2e: building shoal:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func needLab(t *testing.T) {
	t.Helper()
	if shoalBin == "" {
		t.Skip("needs root and the lab tools (see TestMain's message)")
	}
}

// up starts a lab and registers its teardown, which runs even when the
// test fails.
func up(t *testing.T, opts lab.Options) *lab.Lab {
	t.Helper()
	needLab(t)
	if opts.Binary == "" {
		opts.Binary = shoalBin
	}
	if opts.ReplyPath == "" {
		// SHOAL_E2E_REPLY_PATH=tap runs the whole suite in tap mode; the
		// default (auto) is kernel on the lab's af_packet veths.
		opts.ReplyPath = os.Getenv("SHOAL_E2E_REPLY_PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l, err := lab.Up(ctx, opts)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	if !opts.Static && !opts.SkipConverge {
		if _, err := lab.WaitConverged(ctx, l.NodeIDs(), len(l.NodeIDs())); err != nil {
			lab.Down()
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, id := range l.NodeIDs() {
				if b, err := os.ReadFile(lab.LogPath(id)); err == nil {
					t.Logf("--- %s log (tail):\n%s", id, tail(string(b), 2000))
				}
			}
		}
		if err := lab.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	watchResets(t)
	return l
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// run runs argv in a lab namespace and returns its output.
func run(t *testing.T, where string, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := lab.Exec(ctx, where, argv...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v: %v\n%s%s", where, argv, err, out.String(), errb.String())
	}
	return out.String()
}

// watchResets counts, with an nftables counter in the client namespace,
// every TCP RST that reaches the client from the VIP.
func watchResets(t *testing.T) {
	t.Helper()
	rules := `table inet shoal_watch {
	counter rst_in { }
	chain in {
		type filter hook prerouting priority -400; policy accept;
		ip saddr ` + lab.VIP + ` tcp flags & rst == rst counter name rst_in
	}
}
`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := lab.Exec(ctx, "client", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("installing the reset counter: %v: %s", err, out)
	}
}

// resets is the number of RSTs from the VIP seen by the client so far.
func resets(t *testing.T) uint64 {
	t.Helper()
	out := run(t, "client", "nft", "-j", "list", "counter", "inet", "shoal_watch", "rst_in")
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parsing nft counter: %v: %s", err, out)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets
		}
	}
	t.Fatalf("no counter in %s", out)
	return 0
}

func stats(t *testing.T, id string) api.Stats {
	t.Helper()
	var s api.Stats
	if err := api.Get(lab.SocketPath(id), api.PathStats, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func status(t *testing.T, id string) api.Status {
	t.Helper()
	var s api.Status
	if err := api.Get(lab.SocketPath(id), api.PathStatus, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// tableOf rebuilds the range table the lab's nodes use, to predict the
// owner of each connection.
func tableOf(t *testing.T, l *lab.Lab) (*ranges.Table, uint32) {
	t.Helper()
	cfg, err := l.NodeConfig(1)
	if err != nil {
		t.Fatal(err)
	}
	// The nodes build with the algorithm they negotiated.
	tb, err := ranges.BuildV(status(t, "n1").TableAlgorithm, cfg.Cluster.Seed, l.Members())
	if err != nil {
		t.Fatal(err)
	}
	return tb, cfg.Cluster.Seed
}

// ownerOfPort names the node owning the bucket of a client port to VIP:80.
func ownerOfPort(tb *ranges.Table, seed uint32, port int) string {
	v := dataplane.ConnValue(seed, netip.MustParseAddr(lab.ClientIP), netip.MustParseAddr(lab.VIP), uint16(port), 80)
	return tb.OwnerOf(dataplane.Bucket(v))
}

// curlResult is one fresh-connection request made by curl.
type curlResult struct {
	port   int
	code   int
	node   string
	size   int64
	errMsg string
}

// curlFrom makes one request per local port, each on a fresh connection,
// workers at a time.
func curlFrom(t *testing.T, ports []int, path string, workers int) []curlResult {
	t.Helper()
	out := make([]curlResult, len(ports))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = curlOne(ports[i], path)
			}
		}()
	}
	for i := range ports {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

func curlOne(port int, path string) curlResult {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := lab.Exec(ctx, "client", "curl", "-sS", "--max-time", "10", "--local-port", strconv.Itoa(port),
		"-H", "Connection: close", "-o", "/dev/null",
		"-w", "%{http_code} %header{x-shoal-node} %{size_download}", "http://"+lab.VIP+path)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	r := curlResult{port: port}
	if err := cmd.Run(); err != nil {
		r.errMsg = fmt.Sprintf("%v: %s", err, strings.TrimSpace(se.String()))
	}
	f := strings.Fields(so.String())
	if len(f) == 3 {
		r.code, _ = strconv.Atoi(f[0])
		r.node = f[1]
		r.size, _ = strconv.ParseInt(f[2], 10, 64)
	}
	return r
}

func seq(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}

var _ = exec.Command
