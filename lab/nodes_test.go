package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/config"
)

// TestMain lets the test binary stand in for `shoal node` (the real node
// needs DPDK and lives in another package): Up runs
// `<binary> node --config F`, and these tests pass the test binary itself.
func TestMain(m *testing.M) {
	if len(os.Args) == 4 && os.Args[1] == "node" && os.Args[2] == "--config" {
		os.Exit(fakeNode(os.Args[3]))
	}
	os.Exit(m.Run())
}

// fakeModeEnv selects the fake node's behaviour: "" serves, "crash" exits at
// once, "mute" runs but never answers.
const fakeModeEnv = "SHOAL_LAB_FAKE_NODE"

// fakeNode reads the config the lab wrote (through config.Load, so the
// lab's configs are checked against the real parser) and, lacking a data
// plane, removes its veth filter, puts its address on the veth and serves the
// content with X-Shoal-Node as the real node does.
func fakeNode(path string) int {
	c, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake node:", err)
		return 1
	}
	switch os.Getenv(fakeModeEnv) {
	case "crash":
		fmt.Fprintln(os.Stderr, "fake node: crashing on purpose")
		return 3
	case "mute":
		fmt.Fprintln(os.Stderr, "fake node: staying silent")
		time.Sleep(time.Hour) // Down ends it
	}
	// A restarted fake finds the filter gone and the address in place.
	exec.Command("nft", "delete", "table", "netdev", "shoal_lab").Run()
	for _, argv := range [][]string{
		{"ip", "addr", "replace", c.Interface.Address, "dev", Interface},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "fake node: %v: %v: %s\n", argv, err, out)
			return 1
		}
	}
	files := http.FileServer(http.Dir(c.HTTP.Content))
	fmt.Fprintf(os.Stderr, "fake node %s: serving %s on %s\n", c.NodeID, c.HTTP.Content, c.HTTP.Listen)
	err = http.ListenAndServe(c.HTTP.Listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Shoal-Node", c.NodeID)
		files.ServeHTTP(w, r)
	}))
	fmt.Fprintln(os.Stderr, "fake node:", err)
	return 1
}

func testBinary(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

func get(t *testing.T, c *http.Client, url string) (node string, sum string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return "", "", err
	}
	if resp.StatusCode != 200 {
		return "", "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return resp.Header.Get("X-Shoal-Node"), hex.EncodeToString(h.Sum(nil)), nil
}

// TestNodeLifecycle runs the node path of Up, Kill, Start and Down with the
// fake node.
func TestNodeLifecycle(t *testing.T) {
	needLab(t)
	l := upTest(t, Options{
		Nodes:        2,
		Weights:      []float64{1, 3},
		ExtraBuckets: map[int]string{2: "0-99"},
		Seed:         7,
		Binary:       testBinary(t),
	})

	c, err := config.Load(ConfigPath("n2"))
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "n2" || c.Cluster.VIP != VIP || c.Cluster.MAC != ClusterMAC || c.Cluster.Seed != 7 ||
		len(c.Cluster.Members) != 0 || c.Capacity.Weight == nil || *c.Capacity.Weight != 3 ||
		len(c.Gossip.Seeds) != 2 || c.Gossip.Key != GossipKey || len(c.Health.Checks) != 1 ||
		c.Interface.Device != "net_af_packet0,iface=eth0" || c.Interface.Tap != "shoal0" ||
		c.Interface.Address != "198.18.0.102/24" || c.Dataplane.ExtraBuckets != "0-99" ||
		c.HTTP.Content != ContentDir || c.Admin.Socket != "/run/shoal-lab/n2.sock" ||
		c.DPDK.MemoryMB != 128 || c.DPDK.Hugepages != "auto" {
		t.Errorf("n2 config: %+v", c)
	}

	hc := l.HTTPClient()
	for k, id := range l.NodeIDs() {
		for _, name := range []string{"obj/1k", "obj/1m"} {
			got, sum, err := get(t, hc, "http://"+NodeIP(k+1)+"/"+name)
			want, _ := ContentSHA256(name)
			if err != nil || got != id || sum != want {
				t.Errorf("GET %s from %s: node %q sum %s err %v; want %s %s", name, id, got, sum, err, id, want)
			}
		}
	}

	s, err := Inspect()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 2 || s.Nodes[0].PID == 0 || s.Nodes[1].PID == 0 || !s.Nodes[0].Namespace {
		t.Fatalf("Inspect: %+v", s)
	}
	pids := []int{s.Nodes[0].PID, s.Nodes[1].PID}

	if err := Kill("n1"); err != nil {
		t.Fatal(err)
	}
	if alive(pids[0]) {
		t.Error("n1 alive after Kill")
	}
	if s, _ := Inspect(); s.Nodes[0].PID != 0 || s.Nodes[1].PID == 0 {
		t.Errorf("Inspect after Kill n1: %+v", s)
	}
	if err := Kill("n1"); err == nil || errors.Is(err, ErrUnknownPlace) {
		t.Errorf("second Kill n1: %v; want 'not running'", err)
	}
	if err := Kill("n5"); !errors.Is(err, ErrUnknownPlace) {
		t.Errorf("Kill n5 of a 2-node lab: %v; want ErrUnknownPlace", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := l.Start(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(ctx, "n1"); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("Start of a running node: %v", err)
	}
	if got, _, err := get(t, hc, "http://"+NodeIP(1)+"/"); err != nil || got != "n1" {
		t.Errorf("n1 after restart: %q %v", got, err)
	}
	s, _ = Inspect()
	pids = append(pids, s.Nodes[0].PID)

	if err := Down(); err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		if alive(p) {
			t.Errorf("pid %d alive after Down", p)
		}
	}
	assertNoLab(t)
}

// TestUpNodeCrash checks that a node dying at start fails Up with its log and
// leaves nothing behind.
func TestUpNodeCrash(t *testing.T) {
	needLab(t)
	t.Setenv(fakeModeEnv, "crash")
	_, err := Up(context.Background(), Options{Nodes: 2, Binary: testBinary(t), ReadyTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "crashing on purpose") {
		t.Fatalf("Up with a crashing node: %v", err)
	}
	t.Log(err)
	assertNoLab(t)
}

// TestUpNodeTimeout checks that a node that never answers fails Up after
// ReadyTimeout with its log, and that Down kills it.
func TestUpNodeTimeout(t *testing.T) {
	needLab(t)
	t.Setenv(fakeModeEnv, "mute")
	// The bound is on Up's own work: wait for the lab first.
	release, err := Hold(context.Background(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	start := time.Now()
	_, err = Up(context.Background(), Options{Nodes: 1, Binary: testBinary(t), ReadyTimeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "not ready after 2s") || !strings.Contains(err.Error(), "staying silent") {
		t.Fatalf("Up with a silent node: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Up took %v to give up", d)
	}
	t.Log(err)
	assertNoLab(t)
}

func TestUpNeedsBinaryUnderTest(t *testing.T) {
	needLab(t)
	_, err := Up(context.Background(), Options{Nodes: 1})
	if err == nil || !strings.Contains(err.Error(), "BuildBinary") {
		t.Fatalf("Up from a test binary without Binary: %v", err)
	}
}
