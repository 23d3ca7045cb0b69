package table

import (
	"bytes"
	"fmt"
	"math/rand"
	"testing"
)

// simNode is one simulated node: its table (replaced on a restart) and
// the last word it wrote per path in its current life.
type simNode struct {
	id    string
	t     *Table
	words map[string]Row
}

type simMsg struct {
	to  int
	buf []byte
}

// TestConvergence: random publications, row changes and restarts at 2..8
// nodes; every accepted change is relayed to random peers (as the Gossip
// adapter does), and messages are delivered in random order, some twice,
// some never. Random full-state exchanges then repair the losses. Every
// node must end with the same table, in which each node's row is the last
// word it wrote and each path's publication is the winner of all that
// were published.
func TestConvergence(t *testing.T) {
	for seed := int64(1); seed <= 60; seed++ {
		rng := rand.New(rand.NewSource(seed))
		n := 2 + int(seed%7)
		var net []simMsg
		nodes := make([]*simNode, n)
		var attach func(i int)
		attach = func(i int) {
			tb := newTable(t, fmt.Sprintf("n%d", i+1))
			nodes[i] = &simNode{id: tb.Self(), t: tb, words: map[string]Row{}}
			tb.Watch(func(c Change) {
				for k := 0; k < 2; k++ { // relay to two random peers
					if to := rng.Intn(n); to != i {
						net = append(net, simMsg{to, c.Encode()})
					}
				}
			})
		}
		for i := range nodes {
			attach(i)
		}
		paths := []string{"/a", "/b.html", "/c/d"}
		var published []Publication
		deliver := func() {
			if len(net) == 0 {
				return
			}
			k := rng.Intn(len(net))
			m := net[k]
			if rng.Intn(5) != 0 { // else keep it: delivered again later
				net = append(net[:k], net[k+1:]...)
			}
			if rng.Intn(4) == 0 {
				return // lost
			}
			if err := nodes[m.to].t.MergeDelta(m.buf); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		for step := 0; step < 300; step++ {
			i := rng.Intn(n)
			nd := nodes[i]
			path := paths[rng.Intn(len(paths))]
			switch op := rng.Intn(10); {
			case op < 2:
				p := Publication{Path: path, SHA256: sum(fmt.Sprint(rng.Intn(4))), Group: "all", Threshold: 50, Batch: 1, Stamp: int64(step + 1)}
				if rng.Intn(3) == 0 {
					p.Version = uint64(1 + rng.Intn(4)) // given; may lose
				}
				if got, err := nd.t.SetPublication(p); err == nil { // else refused: a newer one is known
					published = append(published, got)
				}
			case op < 8:
				r := Row{Version: uint64(rng.Intn(4)), State: State(1 + rng.Intn(3)), Holds: rng.Intn(2) == 0}
				if r.Version == 0 {
					r.Holds, r.State = false, Unavailable
				} else {
					r.SHA256 = sum(fmt.Sprint(r.Version))
				}
				got, err := nd.t.SetOwnRow(path, r)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				nd.words[path] = got
			case op == 8 && step < 250:
				// Restart: empty table, then say its rows again. What it
				// published may be lost if no peer heard it yet, so its
				// publications are no longer checked.
				kept := published[:0]
				for _, p := range published {
					if p.Publisher != nd.id {
						kept = append(kept, p)
					}
				}
				published = kept
				attach(i)
				for _, p := range paths[:1+rng.Intn(len(paths))] {
					got, _ := nodes[i].t.SetOwnRow(p, Row{State: Updating})
					nodes[i].words[p] = got
				}
			default:
				for k := 0; k < 5; k++ {
					deliver()
				}
			}
			deliver()
		}
		for len(net) > 0 {
			deliver()
		}
		// Repair: random push/pull exchanges (deltas they cause are lost).
		converged := func() bool {
			first := mustState(t, nodes[0].t.Snapshot())
			for _, nd := range nodes[1:] {
				if !bytes.Equal(first, mustState(t, nd.t.Snapshot())) {
					return false
				}
			}
			return true
		}
		exchanges := 0
		for ; !converged(); exchanges++ {
			if exchanges > 40*n {
				t.Fatalf("seed %d: %d nodes not converged after %d exchanges", seed, n, exchanges)
			}
			a, b := rng.Intn(n), rng.Intn(n)
			sa, sb := mustState(t, nodes[a].t.Snapshot()), mustState(t, nodes[b].t.Snapshot())
			if err := nodes[b].t.MergeState(sa); err != nil {
				t.Fatal(err)
			}
			if err := nodes[a].t.MergeState(sb); err != nil {
				t.Fatal(err)
			}
			net = nil
		}
		final := nodes[0].t.Snapshot()
		for _, nd := range nodes {
			for path, w := range nd.words {
				if got := final.Rows[path][nd.id]; !sameWord(got, w) {
					t.Fatalf("seed %d: %s's row for %s is %+v, its last word %+v", seed, nd.id, path, got, w)
				}
			}
		}
		for _, p := range published {
			if got := final.Pubs[p.Path]; got != p && !pubWins(got, p) {
				t.Fatalf("seed %d: publication %+v lost to %+v", seed, p, got)
			}
		}
		if seed == 1 || seed == 60 {
			t.Logf("seed %d: %d nodes converged after %d full-state exchanges", seed, n, exchanges)
		}
	}
}
