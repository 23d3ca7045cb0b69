package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/lab"
)

// TestShareFollowsTable: 3 nodes weighted 1:2:1, 400 fresh connections by
// curl from fixed client ports. Every request is answered once, by the node
// owning its bucket, so each node's share is its table share; no reset
// reaches the client.
func TestShareFollowsTable(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3, Weights: []float64{1, 2, 1}})
	tb, seed := tableOf(t, l)
	for _, id := range l.NodeIDs() {
		if st := status(t, id); st.TableHash != tb.Hash {
			t.Fatalf("%s runs table %s, the test predicts %s", id, st.TableHash, tb.Hash)
		}
	}
	ports := seq(20000, 400)
	res := curlFrom(t, ports, "/obj/1k", 4)
	served := map[string]int{}
	for _, r := range res {
		want := ownerOfPort(tb, seed, r.port)
		if r.errMsg != "" || r.code != 200 || r.size != 1024 {
			t.Errorf("port %d: code %d size %d err %q", r.port, r.code, r.size, r.errMsg)
			continue
		}
		if r.node != want {
			t.Errorf("port %d: answered by %s, its bucket belongs to %s", r.port, r.node, want)
		}
		served[r.node]++
	}
	counts := tb.Count()
	for _, id := range l.NodeIDs() {
		got := float64(served[id]) / float64(len(ports))
		want := float64(counts[id]) / 65536
		t.Logf("%s: served %.1f%% of requests, owns %.1f%% of buckets", id, 100*got, 100*want)
		if math.Abs(got-want) > 0.05 {
			t.Errorf("%s: share %.3f, table share %.3f: more than 5 points apart", id, got, want)
		}
	}
	if n := resets(t); n != 0 {
		t.Errorf("%d resets reached the client", n)
	}
	// Every node saw every SYN: the ones it did not own were counted, by
	// its worker or by its in-kernel prefilter (Whole).
	var accepted, notOurs uint64
	for _, id := range l.NodeIDs() {
		s := stats(t, id)
		accepted += s.Total.SynAccepted
		notOurs += s.Whole().SynNotOurs
	}
	if accepted < 400 || notOurs < 800 {
		t.Errorf("SYNs accepted %d (want ≥ 400), not ours %d (want ≥ 800)", accepted, notOurs)
	}
	// The same counters in Prometheus form.
	var prom []byte
	if err := api.Get(lab.SocketPath("n2"), api.PathMetrics, &prom); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`shoal_dataplane_frames_total{worker="1",counter="syn_accepted"}`,
		`shoal_table_agreement 1`, `shoal_members 3`, `shoal_gossip_bytes_sent_total`, `shoal_dataplane_flows{worker="1",state="closing"}`,
		`shoal_prefilter_dropped_total{counter="syn_not_ours"}`} {
		if !strings.Contains(string(prom), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestKeepAliveStaysOnOneNode: 50 requests on one connection, one node.
func TestKeepAliveStaysOnOneNode(t *testing.T) {
	up(t, lab.Options{Nodes: 3, Weights: []float64{1, 2, 1}})
	var urls []string
	for i := 0; i < 50; i++ {
		urls = append(urls, fmt.Sprintf("http://%s/obj/1k?i=%d", lab.VIP, i))
	}
	args := append([]string{"curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code} %header{x-shoal-node} %{num_connects}\\n"}, urls...)
	// curl applies -o to the first URL only; send the rest to /dev/null too.
	for range urls[1:] {
		args = append(args, "-o", "/dev/null")
	}
	out := run(t, "client", args...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d answers, want 50:\n%s", len(lines), out)
	}
	nodes, connects := map[string]int{}, 0
	for _, ln := range lines {
		var code, nc int
		var nd string
		if _, err := fmt.Sscanf(ln, "%d %s %d", &code, &nd, &nc); err != nil || code != 200 {
			t.Fatalf("bad answer %q", ln)
		}
		nodes[nd]++
		connects += nc
	}
	if len(nodes) != 1 || connects != 1 {
		t.Fatalf("50 keep-alive requests went to %v over %d connections; want one node, one connection", nodes, connects)
	}
	// The serving node's worker lists the connection's flow.
	for nd := range nodes {
		var fs []api.Flow
		if err := api.Get(lab.SocketPath(nd), api.PathFlows, &fs); err != nil {
			t.Fatal(err)
		}
		if len(fs) == 0 || !strings.HasPrefix(fs[0].Client, lab.ClientIP+":") || fs[0].VIP != lab.VIP+":80" {
			t.Errorf("%s lists flows %+v", nd, fs)
		}
	}
	if n := resets(t); n != 0 {
		t.Errorf("%d resets reached the client", n)
	}
}

// TestLargeObjectIntact: /obj/100m arrives byte-identical through either
// reply path.
func TestLargeObjectIntact(t *testing.T) {
	for _, mode := range []string{"kernel", "tap"} {
		t.Run(mode, func(t *testing.T) {
			up(t, lab.Options{Nodes: 3, ReplyPath: mode})
			dir := t.TempDir()
			file := filepath.Join(dir, "100m")
			start := time.Now()
			out := run(t, "client", "curl", "-sS", "--fail", "--max-time", "120", "-o", file,
				"-w", "%header{x-shoal-node}", "http://"+lab.VIP+"/obj/100m")
			elapsed := time.Since(start)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			want, _ := lab.ContentSHA256("obj/100m")
			if len(b) != 100<<20 || hex.EncodeToString(sum[:]) != want {
				t.Fatalf("got %d bytes sha256 %x, want %d bytes %s", len(b), sum, 100<<20, want)
			}
			server := strings.TrimSpace(out)
			if st := status(t, server); st.ReplyPath.Mode != mode {
				t.Fatalf("%s runs reply path %q, want %q", server, st.ReplyPath.Mode, mode)
			}
			t.Logf("%s mode: 100 MiB from %s in %v (%.0f MB/s)", mode, server, elapsed.Round(time.Millisecond), float64(len(b))/elapsed.Seconds()/1e6)
			if n := resets(t); n != 0 {
				t.Errorf("%d resets reached the client", n)
			}
		})
	}
}

// TestARPResolvesToClusterMAC: with no static entry, the client learns the
// VIP's MAC from the workers' ARP replies, and it is the cluster MAC.
func TestARPResolvesToClusterMAC(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3})
	if l.Options().StaticNeighbor {
		t.Fatal("lab set a static neighbour entry")
	}
	run(t, "client", "ip", "neigh", "flush", "dev", lab.Interface)
	run(t, "client", "curl", "-sS", "--fail", "--max-time", "10", "-o", "/dev/null", "http://"+lab.VIP+"/")
	out := run(t, "client", "ip", "neigh", "show", lab.VIP)
	if !strings.Contains(out, lab.ClusterMAC) || strings.Contains(out, "PERMANENT") {
		t.Fatalf("neighbour entry for the VIP: %q, want learnt %s", out, lab.ClusterMAC)
	}
	var replied uint64
	for _, id := range l.NodeIDs() {
		replied += stats(t, id).Total.ARPReplied
	}
	if replied == 0 {
		t.Fatal("no worker counted an ARP reply")
	}
}

// TestStrayACKDrawsNothing: an ACK for a flow no node knows is dropped by
// every node; nothing comes back to the client.
func TestStrayACKDrawsNothing(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3})
	before := map[string]uint64{}
	for _, id := range l.NodeIDs() {
		before[id] = stats(t, id).Whole().ForeignDropped
	}
	got, err := sendStrayACK(40123)
	if err != nil {
		t.Fatal(err)
	}
	if got != 0 {
		t.Fatalf("%d packets came back for a stray ACK", got)
	}
	for _, id := range l.NodeIDs() {
		if d := stats(t, id).Whole().ForeignDropped - before[id]; d < 1 {
			t.Errorf("%s did not count the stray ACK as foreign", id)
		}
	}
	if n := resets(t); n != 0 {
		t.Errorf("%d resets reached the client", n)
	}
}

// TestOverlapNeverResets: n2 is forced to also own every bucket of n1, so
// every connection in n1's buckets is accepted by both. The client keeps
// one SYN-ACK; the loser withdraws without a reset (except where the lab's
// shared kernel gave both nodes one ISN: see below).
func TestOverlapNeverResets(t *testing.T) {
	l := up(t, lab.Options{Nodes: 2, ExtraBuckets: map[int]string{2: "0-65535"}})
	tb, seed := tableOf(t, l)
	var ports []int
	for p := 30000; len(ports) < 200; p++ {
		if ownerOfPort(tb, seed, p) == "n1" {
			ports = append(ports, p)
		}
	}
	// Every SYN-ACK the client receives, to find handshakes where both
	// kernels chose the same ISN (see below).
	r := openRaw(t)
	r.watch()
	// Every segment of every connection, at the client and at each node's
	// veth and tap: a reset that reaches the client is printed with its
	// connection's whole story.
	points := []string{"client/" + lab.Interface}
	for _, id := range l.NodeIDs() {
		points = append(points, id+"/"+lab.Interface, id+"/"+lab.Tap)
	}
	capt := startCapture(t, points...)
	res := curlFrom(t, ports, "/obj/1k", 4)
	winners := map[string]int{}
	for _, r := range res {
		if r.errMsg != "" || r.code != 200 || r.size != 1024 {
			t.Errorf("port %d: code %d size %d err %q", r.port, r.code, r.size, r.errMsg)
		}
		winners[r.node]++
	}
	// The lab's nodes are namespaces of one kernel, which computes ISNs
	// from one secret and a 64 ns clock: two nodes handling the SYN in the
	// same tick choose the same ISN, the client's ACK acknowledges both,
	// and no node can tell it lost; both kernels then answer the client,
	// which may end in a reset. Real nodes never share the secret. Such
	// handshakes are counted from the SYN-ACKs the client saw; every other
	// one must have exactly one loser, and without them no reset may
	// reach the client.
	sameISN := r.sameISN(ports)
	n := resets(t)
	if n != 0 {
		time.Sleep(100 * time.Millisecond) // the capture's last frames
		capt.stop()
		rp := capt.resetPorts()
		t.Logf("resets reached the client on %d ports: %v", len(rp), rp)
		for i, p := range rp {
			if i == 5 {
				break
			}
			t.Logf("%s", capt.report(p, len(l.NodeIDs())))
		}
	}
	if n != 0 {
		if sameISN == 0 {
			t.Errorf("%d resets reached the client", n)
		} else {
			t.Logf("%d resets reached the client, in a run with %d handshakes sharing one ISN", n, sameISN)
		}
	}
	var withdrawn uint64
	for _, id := range l.NodeIDs() {
		s := stats(t, id)
		t.Logf("%s: won %d, withdrew %d, kernel packets of withdrawn flows dropped %d",
			id, winners[id], s.Total.OverlapWithdrawn, s.Total.KernelWithdrawnDropped)
		withdrawn += s.Total.OverlapWithdrawn
	}
	if sameISN > 0 {
		t.Logf("%d handshakes got the same ISN from both nodes' kernels (one kernel, one secret): no loser to withdraw", sameISN)
	}
	if withdrawn != uint64(len(ports)-sameISN) {
		t.Errorf("%d withdrawals for %d overlapping connections (%d with one ISN from both nodes); want one loser each", withdrawn, len(ports), sameISN)
	}
}

var _ = net.ParseIP
