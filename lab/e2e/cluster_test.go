package e2e

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/bench/loadgen"
	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/lab"
)

// load runs the load generator from the client namespace in the
// background; wait returns its report.
func load(t *testing.T, rate int, d time.Duration, persistent int) (wait func() *loadgen.Report) {
	t.Helper()
	var rep *loadgen.Report
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep, err = loadgen.Run(context.Background(), loadgen.Config{
			Target: lab.VIP + ":80", Path: "/obj/1k", Rate: rate, Duration: d, Timeout: 5 * time.Second,
			Persistent: persistent, PersistentEvery: 100 * time.Millisecond,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return lab.DialContext(ctx, "client", network, addr)
			},
		})
	}()
	return func() *loadgen.Report {
		<-done
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		t.Logf("load: %s", rep.Summary())
		return rep
	}
}

// TestCapacityShares: capacities 1:2:3 learnt by gossip; over 600 fresh
// connections each node's share is within ±5 points of 1/6, 2/6, 3/6.
func TestCapacityShares(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3, Weights: []float64{1, 2, 3}})
	tb, seed := tableOf(t, l)
	res := curlFrom(t, seq(21000, 600), "/obj/1k", 4)
	served := map[string]int{}
	for _, r := range res {
		if r.errMsg != "" || r.code != 200 {
			t.Fatalf("port %d: code %d err %q", r.port, r.code, r.errMsg)
		}
		if want := ownerOfPort(tb, seed, r.port); r.node != want {
			t.Errorf("port %d: answered by %s, table owner %s", r.port, r.node, want)
		}
		served[r.node]++
	}
	for i, id := range l.NodeIDs() {
		got, want := float64(served[id])/600, float64(i+1)/6
		t.Logf("%s: %.1f%% of connections (capacity share %.1f%%)", id, 100*got, 100*want)
		if math.Abs(got-want) > 0.05 {
			t.Errorf("%s: share %.3f, want %.3f ± 0.05", id, got, want)
		}
	}
}

// persistentNodes maps each persistent connection to the node that served
// its first successful request.
func persistentNodes(r *loadgen.Report) map[int]string {
	m := map[int]string{}
	for _, x := range r.Results {
		if x.Persistent && x.Err == "" && m[x.ConnID] == "" {
			m[x.ConnID] = x.Node
		}
	}
	return m
}

// TestCrashUnderLoad: 300 new connections/s and persistent connections;
// n2 is killed. New connections succeed again within 2 s; the persistent
// connections on the survivors see no error.
func TestCrashUnderLoad(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3})
	wait := load(t, 300, 8*time.Second, 9)
	time.Sleep(3 * time.Second)
	killed := time.Now()
	if err := lab.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lab.WaitConverged(ctx, []string{"n1", "n3"}, 2); err != nil {
		t.Fatal(err)
	}
	converged := time.Since(killed)
	rep := wait()
	after := rep.Between(killed.Add(2*time.Second), rep.To)
	if after.Started < 500 || after.Failed != 0 || after.ByNode["n2"] != 0 {
		t.Errorf("from 2 s after the crash: %s", after.Summary())
	}
	var lastFail time.Time
	for _, x := range rep.Results {
		if !x.Persistent && x.Err != "" && x.Start.After(lastFail) {
			lastFail = x.Start
		}
	}
	owner := persistentNodes(rep)
	for _, x := range rep.Results {
		if x.Persistent && x.Err != "" && owner[x.ConnID] != "n2" {
			t.Errorf("persistent connection %d on %s failed: %s %s", x.ConnID, owner[x.ConnID], x.Err, x.Detail)
		}
	}
	lastFailed := "no new connection failed"
	if !lastFail.IsZero() {
		lastFailed = fmt.Sprintf("last failed new connection started %v after it", lastFail.Sub(killed).Round(time.Millisecond))
	}
	t.Logf("tables agreed %v after the kill; %s; %d SYN retransmissions (connections that met n2's buckets before the survivors took them)",
		converged.Round(time.Millisecond), lastFailed, rep.SynRetransmitted)
	_ = l
}

// TestDrainAndLeaveUnderLoad: n2 leaves gracefully (SIGTERM) under 300 new
// connections/s: no connection fails, no reset reaches the client.
func TestDrainAndLeaveUnderLoad(t *testing.T) {
	up(t, lab.Options{Nodes: 3})
	wait := load(t, 300, 7*time.Second, 0)
	time.Sleep(2 * time.Second)
	start := time.Now()
	if err := lab.Stop("n2", 40*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("n2 left in %v", time.Since(start).Round(time.Millisecond))
	rep := wait()
	if rep.Failed != 0 || rep.Started < 1500 {
		t.Errorf("during the leave: %s", rep.Summary())
	}
	if rep.ByNode["n2"] == 0 {
		t.Error("n2 served nothing before it left: the test proves nothing")
	}
	if n := resets(t); n != 0 {
		t.Errorf("%d resets reached the client", n)
	}
}

// TestCapacityChangeUnderLoad: weights change twice under load; no reset
// reaches the client; SYN retransmissions (buckets briefly owned by nobody)
// are counted and reported.
func TestCapacityChangeUnderLoad(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3})
	before := synRetrans(t)
	wait := load(t, 300, 7*time.Second, 6)
	time.Sleep(2 * time.Second)
	w := 5.0
	if err := api.Post(lab.SocketPath("n1"), api.PathWeight, map[string]float64{"weight": w}, &struct{}{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := api.Post(lab.SocketPath("n3"), api.PathDrain, map[string]bool{"on": true}, &struct{}{}); err != nil {
		t.Fatal(err)
	}
	rep := wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lab.WaitConverged(ctx, l.NodeIDs(), 3); err != nil {
		t.Fatal(err)
	}
	if n := resets(t); n != 0 {
		t.Errorf("%d resets reached the client", n)
	}
	if rep.Failed != 0 || rep.PersistentFailed != 0 {
		t.Errorf("failures during the capacity change: %s", rep.Summary())
	}
	var withdrawn uint64
	for _, id := range l.NodeIDs() {
		withdrawn += stats(t, id).Total.OverlapWithdrawn
	}
	t.Logf("SYN retransmissions: %d seen by the load generator, %d counted by the client kernel; overlap withdrawals %d",
		rep.SynRetransmitted, synRetrans(t)-before, withdrawn)
	st := status(t, "n3")
	if st.OwnedBuckets != 0 {
		t.Errorf("drained n3 still owns %d buckets", st.OwnedBuckets)
	}
}

// synRetrans reads the client kernel's count of retransmitted SYNs.
func synRetrans(t *testing.T) uint64 {
	out := run(t, "client", "nstat", "-az", "TcpExtTCPSynRetrans")
	for _, ln := range strings.Split(out, "\n") {
		f := strings.Fields(ln)
		if len(f) >= 2 && f[0] == "TcpExtTCPSynRetrans" {
			var v uint64
			for _, c := range f[1] {
				v = v*10 + uint64(c-'0')
			}
			return v
		}
	}
	t.Fatalf("no TcpExtTCPSynRetrans in nstat output:\n%s", out)
	return 0
}

// TestWrongKeyRefused: a node with another cluster key cannot join: it
// exits with one clear line; the others log the refusal and keep serving.
func TestWrongKeyRefused(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3})
	if err := lab.Kill("n3"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lab.WaitConverged(ctx, []string{"n1", "n2"}, 2); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(lab.ConfigPath("n3"))
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "n3-wrong-key.yaml")
	os.WriteFile(bad, []byte(strings.Replace(string(raw), lab.GossipKey, "00112233445566778899aabbccddeeff", 1)), 0o644)
	cmd := lab.Exec(ctx, "n3", shoalBin, "node", "--config", bad)
	out, err := cmd.CombinedOutput()
	ee, _ := err.(*exec.ExitError)
	if ee == nil || ee.ExitCode() != 2 || !strings.Contains(string(out), "wrong cluster key") {
		t.Fatalf("node with the wrong key: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("the refused node said: %s", lines[len(lines)-1])
	var refused int
	for _, id := range []string{"n1", "n2"} {
		b, _ := os.ReadFile(lab.LogPath(id))
		refused += strings.Count(string(b), lab.NodeIP(3))
		if st := status(t, id); st.GossipStats == nil || st.GossipStats.RefusedMessages == 0 {
			t.Errorf("%s counted no refused message", id)
		}
	}
	if refused == 0 {
		t.Error("no survivor logged the refused address")
	}
	res := curlFrom(t, seq(22000, 40), "/", 4)
	for _, r := range res {
		if r.code != 200 || r.node == "n3" {
			t.Fatalf("after the refusal: port %d code %d node %s %s", r.port, r.code, r.node, r.errMsg)
		}
	}
	_ = l
}

// TestRestartedNodeTakesBackItsShare: kill n2, start it again: it rejoins
// and the table is the one before the crash.
func TestRestartedNodeTakesBackItsShare(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3, Weights: []float64{1, 2, 1}})
	orig := status(t, "n1").TableHash
	if err := lab.Kill("n2"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := lab.WaitConverged(ctx, []string{"n1", "n3"}, 2); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	hash, err := lab.WaitConverged(ctx, l.NodeIDs(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if hash != orig {
		t.Fatalf("table after rejoin %s, before the crash %s", hash, orig)
	}
	tb, seed := tableOf(t, l)
	res := curlFrom(t, seq(23000, 60), "/", 4)
	n2 := 0
	for _, r := range res {
		if r.code != 200 || r.node != ownerOfPort(tb, seed, r.port) {
			t.Fatalf("port %d: code %d node %s, owner %s", r.port, r.code, r.node, ownerOfPort(tb, seed, r.port))
		}
		if r.node == "n2" {
			n2++
		}
	}
	if n2 == 0 {
		t.Fatal("n2 served nothing after rejoining")
	}
}

// TestGroupTablesAgree: groups defined cluster-wide, memberships gossiped;
// every node builds the same table per group, over that group's members,
// in proportion to their availability.
func TestGroupTablesAgree(t *testing.T) {
	defs := []groups.Group{
		{Name: "html", Paths: []string{"*.html", "/"}},
		{Name: "cgi", Paths: []string{"*.cgi"}, Policy: groups.ByAvailability},
		{Name: "sessions", Cookies: []string{"SESSIONID"}},
	}
	member := map[string][]string{"n1": {"html"}, "n2": {"html", "cgi", "sessions"}, "n3": {"cgi", "sessions"}}
	l := up(t, lab.Options{Nodes: 3, Weights: []float64{1, 2, 3}, Configure: func(id string, c *config.Config) {
		c.Groups, c.MemberOf = defs, member[id]
	}})
	var first []api.GroupStatus
	for _, id := range l.NodeIDs() {
		var gs []api.GroupStatus
		if err := api.Get(lab.SocketPath(id), api.PathGroups, &gs); err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = gs
			continue
		}
		for i := range gs {
			if gs[i].TableHash != first[i].TableHash {
				t.Fatalf("%s: group %s table %s, n1 has %s", id, gs[i].Name, gs[i].TableHash, first[i].TableHash)
			}
		}
	}
	shares := map[string]map[string]float64{}
	for _, g := range first {
		shares[g.Name] = map[string]float64{}
		for _, m := range g.Members {
			shares[g.Name][m.ID] = m.Share
		}
		t.Logf("group %s (%s): %v", g.Name, g.Policy, shares[g.Name])
	}
	for _, c := range []struct {
		g, id string
		want  float64
	}{{"html", "n1", 1.0 / 3}, {"html", "n2", 2.0 / 3}, {"cgi", "n2", 0.4}, {"cgi", "n3", 0.6}, {"sessions", "n3", 0.6}} {
		if math.Abs(shares[c.g][c.id]-c.want) > 0.01 {
			t.Errorf("group %s: %s share %.3f, want %.3f", c.g, c.id, shares[c.g][c.id], c.want)
		}
	}
	if _, ok := shares["html"]["n3"]; ok {
		t.Error("n3 is in html's table but not a member")
	}
}

// TestMixedTableAlgorithms: a rolling upgrade of the range-table
// algorithm. n3 is held to algorithm 1 (as a node of the previous release
// would be): every node builds version 1 and they agree. n3 then restarts
// without the hold under 300 new connections/s: the cluster switches to
// the newest algorithm, make-before-break, without a failed connection or
// a reset.
func TestMixedTableAlgorithms(t *testing.T) {
	var held atomic.Bool
	held.Store(true)
	l := up(t, lab.Options{Nodes: 3, Configure: func(id string, c *config.Config) {
		if id == "n3" && held.Load() {
			c.Cluster.TableAlgorithmMax = ranges.AlgoV1
		}
	}})
	for _, id := range l.NodeIDs() {
		if st := status(t, id); st.TableAlgorithm != ranges.AlgoV1 || !st.Agreement {
			t.Fatalf("%s with n3 held back: algorithm %d, agreement %v; want 1 and agreement", id, st.TableAlgorithm, st.Agreement)
		}
	}
	tb, seed := tableOf(t, l)
	for _, r := range curlFrom(t, seq(24000, 30), "/", 4) {
		if r.code != 200 || r.node != ownerOfPort(tb, seed, r.port) {
			t.Fatalf("algorithm 1: port %d: code %d node %s, owner %s", r.port, r.code, r.node, ownerOfPort(tb, seed, r.port))
		}
	}
	// The switch overlaps buckets between nodes: capture SYN-ACKs to
	// recognise the lab's one-kernel artifact (TestOverlapNeverResets).
	raw := openRaw(t)
	raw.watch()
	wait := load(t, 300, 12*time.Second, 6)
	time.Sleep(2 * time.Second)
	if err := lab.Stop("n3", 40*time.Second); err != nil {
		t.Fatal(err)
	}
	held.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := l.Start(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.WaitConverged(ctx, l.NodeIDs(), 3); err != nil {
		t.Fatal(err)
	}
	rep := wait()
	// Two nodes of the lab, being namespaces of one kernel, may give an
	// overlapping handshake one ISN; then neither can tell it lost and the
	// client may be reset. Real nodes never share the kernel's secret.
	sameISN := raw.sameISN(nil)
	if n := resets(t); rep.Failed != 0 || n != 0 {
		if sameISN == 0 || rep.Failed > sameISN {
			t.Errorf("during the upgrade: %d resets; %s", n, rep.Summary())
		} else {
			t.Logf("during the upgrade: %d resets, %d failed, in a run with %d handshakes given one ISN by two nodes", n, rep.Failed, sameISN)
		}
	}
	for _, id := range l.NodeIDs() {
		if st := status(t, id); st.TableAlgorithm != ranges.AlgoLatest {
			t.Errorf("%s after the upgrade: algorithm %d, want %d", id, st.TableAlgorithm, ranges.AlgoLatest)
		}
	}
	tb, seed = tableOf(t, l)
	for _, r := range curlFrom(t, seq(24100, 30), "/", 4) {
		if r.code != 200 || r.node != ownerOfPort(tb, seed, r.port) {
			t.Fatalf("algorithm %d: port %d: code %d node %s, owner %s", ranges.AlgoLatest, r.port, r.code, r.node, ownerOfPort(tb, seed, r.port))
		}
	}
}
