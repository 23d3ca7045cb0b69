package table

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/control/gossip"
)

var gossipKey = []byte("0123456789abcdef")

// gossipBound is how long a change may take to reach every node. A delta
// piggybacks on the next gossip rounds (every 50 ms to 3 peers): a few
// rounds on loopback (about 50 ms measured); 1 s is 20 gossip intervals,
// the margin for a loaded CI machine.
const gossipBound = time.Second

type gnode struct {
	t *Table
	a *Gossip
	g *gossip.Gossip
}

func startGossip(t *testing.T, tb *Table, seeds ...string) gnode {
	t.Helper()
	a := NewGossip(tb, 0)
	g, err := gossip.Start(gossip.Config{
		NodeID: tb.Self(), BindAddr: "127.0.0.1", BindPort: gossip.EphemeralPort,
		Key: gossipKey, Seeds: seeds, RejoinInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		State:  a,
	}, gossip.Meta{Capacity: 1, Availability: 1})
	if err != nil {
		t.Fatalf("start %s: %v", tb.Self(), err)
	}
	a.SetNumNodes(func() int { return len(g.Members()) })
	t.Cleanup(func() { _ = g.Shutdown() })
	return gnode{tb, a, g}
}

// waitSame waits until every table encodes like want and returns the time
// it took.
func waitSame(t *testing.T, what string, nodes []gnode) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		want := mustState(t, nodes[0].t.Snapshot())
		same := true
		for _, n := range nodes[1:] {
			same = same && string(mustState(t, n.t.Snapshot())) == string(want)
		}
		if same {
			return time.Since(start)
		}
		if time.Since(start) > gossipBound {
			for _, n := range nodes {
				t.Logf("%s: %+v", n.t.Self(), n.t.Snapshot())
			}
			t.Fatalf("%s: tables differ after %v", what, gossipBound)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestGossipReplication: three real gossip instances on loopback carry the
// table. A change reaches the others by broadcast within gossipBound;
// after a node was cut off (gossip stopped) and changes were made without
// it, rejoining repairs its table by push/pull, with no delta left to
// carry them.
func TestGossipReplication(t *testing.T) {
	tables := []*Table{newTable(t, "n1"), newTable(t, "n2"), newTable(t, "n3")}
	nodes := []gnode{startGossip(t, tables[0])}
	for _, tb := range tables[1:] {
		nodes = append(nodes, startGossip(t, tb, nodes[0].g.LocalAddr()))
	}
	for _, n := range nodes {
		for len(n.g.Members()) != 3 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if _, err := tables[0].SetPublication(Publication{Path: "/page.html", SHA256: sum("v1"), Size: 2, Group: "all", Threshold: 50, Batch: 1}); err != nil {
		t.Fatal(err)
	}
	d := waitSame(t, "publication", nodes)
	t.Logf("publication reached 3 nodes in %v", d)
	for i, tb := range tables {
		tb.SetOwnRow("/page.html", Row{Version: 1, SHA256: sum("v1"), State: Available, Holds: i == 0})
	}
	d = waitSame(t, "rows", nodes)
	t.Logf("three rows reached 3 nodes in %v", d)

	// Cut n3 off; change the table on n1 and n2 while it is away.
	nodes[2].g.Shutdown()
	for len(nodes[0].g.Members()) != 2 {
		time.Sleep(5 * time.Millisecond)
	}
	p, _ := tables[1].SetPublication(Publication{Path: "/page.html", SHA256: sum("v2"), Size: 2, Group: "all", Threshold: 50, Batch: 1})
	tables[0].SetOwnRow("/page.html", Row{Version: 1, SHA256: sum("v1"), State: Updating, Holds: true})
	waitSame(t, "change without n3", nodes[:2])
	for _, n := range nodes[:2] {
		for n.a.Queued() > 0 { // no delta left that could still reach n3
			time.Sleep(10 * time.Millisecond)
		}
	}
	if got, _ := tables[2].Publication("/page.html"); got.Version != 1 {
		t.Fatalf("n3 heard v%d while cut off", got.Version)
	}
	// n3 comes back with its table and rejoins: the join's push/pull repairs it.
	nodes[2] = startGossip(t, tables[2], nodes[0].g.LocalAddr())
	d = waitSame(t, "repair after rejoin", nodes)
	t.Logf("rejoined node repaired in %v", d)
	if got, _ := tables[2].Publication("/page.html"); got != p {
		t.Fatalf("n3 publication %+v, want %+v", got, p)
	}
	for _, tb := range tables {
		if r := tb.Stats().Rejected; sumReasons(r) != 0 {
			t.Fatalf("%s rejected %v", tb.Self(), r)
		}
	}
}

func sumReasons(m map[string]uint64) (n uint64) {
	for _, v := range m {
		n += v
	}
	return n
}
