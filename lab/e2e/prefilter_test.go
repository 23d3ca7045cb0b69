package e2e

import (
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/lab"
)

// TestPrefilter: n1 and n2 run the in-kernel prefilter (the default on the
// lab's af_packet veths), n3 runs without it (dataplane.prefilter: off),
// and the three serve one cluster. Fresh connections from the client, each
// to the node the table names: every one is answered; a filtering node's
// worker sees no segment of another node's connection (its foreign and
// not-ours counters stay at about 0 and its rx falls to about its own
// share) while its filter counts them, at least one SYN per foreign
// connection; n3's worker still sees and drops them all; and for every
// filtering node, what its worker received plus what its filter dropped is
// what n3's worker received (the same client segments reach every node),
// so the cluster's drop counts stay whole.
func TestPrefilter(t *testing.T) {
	l := up(t, lab.Options{Nodes: 3, Configure: func(id string, c *config.Config) {
		if id == "n3" {
			c.Dataplane.Prefilter = "off"
		}
	}})
	for _, id := range []string{"n1", "n2"} {
		if st := status(t, id); !st.Prefilter.Active {
			t.Fatalf("%s: prefilter inactive: %s", id, st.Prefilter.Reason)
		}
	}
	if st := status(t, "n3"); st.Prefilter.Active || !strings.Contains(st.Prefilter.Reason, "off") {
		t.Fatalf("n3: prefilter %+v, want inactive by config", st.Prefilter)
	}
	tb, seed := tableOf(t, l)
	ids := l.NodeIDs()
	before := map[string]api.Stats{}
	for _, id := range ids {
		before[id] = stats(t, id)
	}
	ports := seq(31000, 90)
	res := curlFrom(t, ports, "/obj/1k", 6)
	after := map[string]api.Stats{}
	for _, id := range ids {
		after[id] = stats(t, id)
	}
	conns := map[string]int{}
	for _, r := range res {
		want := ownerOfPort(tb, seed, r.port)
		if r.code != 200 || r.size != 1024 || r.node != want {
			t.Fatalf("port %d: %d, %d bytes from %q (owner %s): %s", r.port, r.code, r.size, r.node, want, r.errMsg)
		}
		conns[want]++
	}
	type delta struct{ rx, foreign, synNotOurs, pf, pfSYN uint64 }
	d := map[string]delta{}
	for _, id := range ids {
		b, a := before[id], after[id]
		d[id] = delta{
			rx:         a.Total.RX - b.Total.RX,
			foreign:    a.Total.ForeignDropped - b.Total.ForeignDropped,
			synNotOurs: a.Total.SynNotOurs + a.Total.SynPortDropped - b.Total.SynNotOurs - b.Total.SynPortDropped,
			pf:         a.Prefilter.ForeignDropped - b.Prefilter.ForeignDropped,
			pfSYN:      a.Prefilter.SynNotOurs + a.Prefilter.SynPortDropped - b.Prefilter.SynNotOurs - b.Prefilter.SynPortDropped,
		}
		t.Logf("%s: %d connections of its own; worker rx %d, foreign %d, SYNs not ours %d; prefilter dropped %d segments, %d SYNs",
			id, conns[id], d[id].rx, d[id].foreign, d[id].synNotOurs, d[id].pf, d[id].pfSYN)
	}
	n3 := d["n3"]
	others3 := uint64(len(ports) - conns["n3"])
	// A fresh request is at least 5 client segments (SYN, ACK, request,
	// FIN, the last ACK): n3's worker drops every one of other nodes'.
	if n3.pf != 0 || n3.pfSYN != 0 || n3.synNotOurs < others3 || n3.foreign < 4*others3 {
		t.Fatalf("n3 (no prefilter): %+v for %d foreign connections", n3, others3)
	}
	// The whole counts (worker + filter) of every node: the same client
	// segments reach all three, and each segment is foreign on two.
	var foreignAll, synAll uint64
	for _, id := range ids {
		b, a := before[id].Whole(), after[id].Whole()
		foreignAll += a.ForeignDropped - b.ForeignDropped
		synAll += a.SynNotOurs - b.SynNotOurs
	}
	if synAll < 2*uint64(len(ports)) || synAll > 2*uint64(len(ports))+10 {
		t.Errorf("SYNs not ours over the three nodes, worker and filter: %d, want 2 per connection (%d)", synAll, 2*len(ports))
	}
	if foreignAll < 8*uint64(len(ports)) {
		t.Errorf("foreign segments over the three nodes, worker and filter: %d, want at least 4 per connection on two nodes (%d)", foreignAll, 8*len(ports))
	}
	for _, id := range []string{"n1", "n2"} {
		x := d[id]
		others := uint64(len(ports) - conns[id])
		if x.pfSYN < others || x.pf < 4*others {
			t.Errorf("%s: the prefilter dropped %d SYNs and %d segments for %d foreign connections", id, x.pfSYN, x.pf, others)
		}
		// What the worker still drops as foreign: a segment in a bucket
		// of ours whose flow has gone (a late retransmission), never
		// another node's SYN.
		if x.synNotOurs != 0 || x.foreign > 2+(x.pf+x.pfSYN)/50 {
			t.Errorf("%s: its worker still saw %d foreign segments and %d foreign SYNs", id, x.foreign, x.synNotOurs)
		}
		// Same client segments everywhere: received + filtered on a
		// filtering node = received on n3, within gossip and ARP, which
		// differ per node.
		seen := int64(x.rx + x.pf + x.pfSYN)
		if diff := seen - int64(n3.rx); diff > 20+int64(n3.rx)/20 || -diff > 20+int64(n3.rx)/20 {
			t.Errorf("%s: worker rx %d + prefilter %d = %d, but n3's worker received %d", id, x.rx, x.pf+x.pfSYN, seen, n3.rx)
		}
		share := float64(conns[id]) / float64(len(ports))
		if float64(x.rx) > (share+0.15)*float64(n3.rx) {
			t.Errorf("%s: worker rx %d, more than its share %.2f (+0.15) of n3's %d", id, x.rx, share, n3.rx)
		}
	}
}
