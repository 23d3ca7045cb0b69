package e2e

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/lab"
)

func setServer(t *testing.T, id string, running bool) {
	t.Helper()
	var h api.Health
	if err := api.Post(lab.SocketPath(id), api.PathServer, map[string]bool{"running": running}, &h); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeadServerGivesUpShare: the web server on n2 stops while the node
// runs, under 300 new connections/s. n2's failing check takes it out of
// every table; connections fail only until then.
func TestDeadServerGivesUpShare(t *testing.T) {
	up(t, lab.Options{Nodes: 3})
	wait := load(t, 300, 7*time.Second, 0)
	time.Sleep(2 * time.Second)
	stopped := time.Now()
	setServer(t, "n2", false)
	rep := wait()
	var last time.Time
	for _, r := range rep.Results {
		if r.Err != "" && r.Start.After(last) {
			last = r.Start
		}
	}
	gap := time.Duration(0)
	if !last.IsZero() {
		gap = last.Sub(stopped)
	}
	t.Logf("server stopped; last failed connection started %v later; %d failed in all (%v)", gap.Round(time.Millisecond), rep.Failed, rep.ByErr)
	if gap > 2*time.Second {
		t.Errorf("connections still failed %v after the server stopped", gap)
	}
	after := rep.Between(stopped.Add(2*time.Second), rep.To)
	if after.Failed != 0 || after.ByNode["n2"] != 0 {
		t.Errorf("from 2 s after the stop: %s", after.Summary())
	}
	if st := status(t, "n1"); st.Members[1].Health != "unhealthy" || st.Members[1].Buckets != 0 {
		t.Errorf("n1 sees n2 as %s with %d buckets", st.Members[1].Health, st.Members[1].Buckets)
	}
}

// TestSlowStartAfterRecovery: n2's server comes back; n2's share of new
// connections rises over the slow-start window and ends at its table share,
// with no failure throughout.
func TestSlowStartAfterRecovery(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3, SlowStart: 6 * time.Second})
	// Every node ramps after the lab starts too: let those ramps end.
	waitFor(t, 15*time.Second, "start-up ramps over", func() bool {
		for _, id := range l.NodeIDs() {
			if st := status(t, id); st.Capacity == nil || st.Capacity.Ramp < 1 {
				return false
			}
		}
		return true
	})
	setServer(t, "n2", false)
	waitFor(t, 10*time.Second, "n2 out of the tables", func() bool { return status(t, "n1").Members[1].Buckets == 0 })
	wait := load(t, 300, 9*time.Second, 0)
	setServer(t, "n2", true)
	rep := wait()
	if rep.Failed != 0 {
		t.Errorf("failures during the ramp: %s", rep.Summary())
	}
	slices := rep.Shares(3)
	var curve []float64
	for _, s := range slices {
		curve = append(curve, s["n2"])
	}
	t.Logf("n2's share of new connections in three 3 s slices: %.3f %.3f %.3f (full share 0.333)", curve[0], curve[1], curve[2])
	if !(curve[0] < curve[1] && curve[1] < curve[2]) {
		t.Errorf("share did not rise: %v", curve)
	}
	if math.Abs(curve[2]-1.0/3) > 0.05 {
		t.Errorf("final slice %.3f, want 0.333 ± 0.05", curve[2])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lab.WaitConverged(ctx, l.NodeIDs(), 3); err != nil {
		t.Fatal(err)
	}
}

// TestGossipPartition: gossip between n1 and the others is cut by a
// firewall rule in n1's namespace while client traffic flows. Both sides
// take the other's buckets, so SYNs are accepted twice; the overlap guard
// settles every one: no failure, no reset. After healing, tables agree.
func TestGossipPartition(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3})
	if os.Getenv("SHOAL_DEBUG_RST") != "" {
		dump := lab.Exec(context.Background(), "client", "tcpdump", "-i", "eth0", "-e", "-nn", "-c", "20", "src host 198.18.0.100 and tcp[tcpflags] & tcp-rst != 0")
		dump.Stdout, dump.Stderr = os.Stderr, os.Stderr
		dump.Start()
		defer dump.Process.Kill()
	}
	wait := load(t, 300, 14*time.Second, 6)
	time.Sleep(2 * time.Second)
	rules := `table inet shoal_partition {
	chain in {
		type filter hook input priority 0; policy accept;
		ip saddr { 198.18.0.102, 198.18.0.103 } meta l4proto { tcp, udp } th dport 7946 drop
		ip saddr { 198.18.0.102, 198.18.0.103 } meta l4proto { tcp, udp } th sport 7946 drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr { 198.18.0.102, 198.18.0.103 } meta l4proto { tcp, udp } th dport 7946 drop
		ip daddr { 198.18.0.102, 198.18.0.103 } meta l4proto { tcp, udp } th sport 7946 drop
	}
}
`
	cmd := lab.Exec(context.Background(), "n1", "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("partition: %v: %s", err, out)
	}
	cut := time.Now()
	waitFor(t, 10*time.Second, "n1 alone", func() bool { return len(status(t, "n1").Members) == 1 })
	t.Logf("n1 saw itself alone %v after the cut; it now owns %d buckets", time.Since(cut).Round(time.Millisecond), status(t, "n1").OwnedBuckets)
	time.Sleep(3 * time.Second)
	run(t, "n1", "nft", "delete", "table", "inet", "shoal_partition")
	healed := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := lab.WaitConverged(ctx, l.NodeIDs(), 3); err != nil {
		t.Fatal(err)
	}
	t.Logf("tables agree again %v after healing", time.Since(healed).Round(time.Millisecond))
	rep := wait()
	if rep.Failed != 0 || rep.PersistentFailed != 0 {
		t.Errorf("failures across the partition: %s", rep.Summary())
	}
	if n := resets(t); n != 0 {
		t.Errorf("%d resets reached the client", n)
	}
	var withdrawn uint64
	for _, id := range l.NodeIDs() {
		withdrawn += stats(t, id).Total.OverlapWithdrawn
	}
	t.Logf("overlaps settled by withdrawal: %d", withdrawn)
	if withdrawn == 0 {
		t.Error("no overlap during the partition: the test did not partition anything")
	}
}

// TestAllServersDownFailsOpen: with every server failing its check the
// tables fall back to configured capacities (and say so); the first server
// back takes every bucket.
func TestAllServersDownFailsOpen(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3})
	healthyHash := status(t, "n1").TableHash
	for _, id := range l.NodeIDs() {
		setServer(t, id, false)
	}
	waitFor(t, 10*time.Second, "fail open", func() bool {
		st := status(t, "n1")
		return st.FailOpen > 0 && st.TableHash == healthyHash
	})
	b, _ := os.ReadFile(lab.LogPath("n1"))
	if !strings.Contains(string(b), "fail open") {
		t.Error("n1 did not log the fail-open")
	}
	setServer(t, "n1", true)
	waitFor(t, 10*time.Second, "n1 owning everything", func() bool { return status(t, "n3").Members[0].Buckets == 65536 })
}

// TestImpossibleCheckKeepsNodeOut: a check that can never pass (wrong
// port) keeps n3 out with one clear line; the others serve everything.
func TestImpossibleCheckKeepsNodeOut(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3, SkipConverge: true, Configure: func(id string, c *config.Config) {
		if id == "n3" {
			c.Health.Checks[0].Port = 81
		}
	}})
	waitFor(t, 10*time.Second, "n1 and n2 sharing everything, every node agreeing", func() bool {
		for _, id := range l.NodeIDs() {
			st := status(t, id)
			if len(st.Members) != 3 || !st.Agreement || st.Holding || st.Members[2].Buckets != 0 ||
				st.Members[0].Buckets+st.Members[1].Buckets != 65536 {
				return false
			}
		}
		return true
	})
	b, _ := os.ReadFile(lab.LogPath("n3"))
	if n := strings.Count(string(b), "has not passed since start"); n != 1 || !strings.Contains(string(b), "127.0.0.1:81") {
		t.Errorf("n3 logged the impossible check %d times (want once, naming the target)", n)
	}
	res := curlFrom(t, seq(24000, 30), "/", 4)
	for _, r := range res {
		if r.code != 200 || r.node == "n3" {
			t.Fatalf("port %d: code %d node %s %s", r.port, r.code, r.node, r.errMsg)
		}
	}
	_ = l
}
