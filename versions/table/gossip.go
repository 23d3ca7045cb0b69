package table

import (
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// Gossip replicates a Table over control/gossip: it implements
// gossip.StateDelegate (set it as gossip.Config.State).
//
//   - Every change the table accepts, local or learnt from a peer, is
//     queued once as a delta in a memberlist.TransmitLimitedQueue, which
//     sends it RetransmitMult × log10(members + 1) times (rounded up)
//     piggybacked on gossip; a newer change of the same publication or
//     row replaces the queued one. Relaying what was learnt is what
//     memberlist does for its own state: a delta reaches every member in
//     O(log n) gossip rounds even from a node that was not told directly.
//   - Push/pull (memberlist's periodic full exchange, and every Join)
//     carries the whole table, which repairs any lost delta and heals a
//     partition.
type Gossip struct {
	t        *Table
	q        *memberlist.TransmitLimitedQueue
	numNodes atomic.Pointer[func() int]
}

// DefaultRetransmitMult matches control/gossip.DefaultRetransmitMult.
const DefaultRetransmitMult = 4

// NewGossip attaches a broadcast queue to t. retransmitMult 0 means
// DefaultRetransmitMult. Until SetNumNodes is called the member count is
// taken as 1.
func NewGossip(t *Table, retransmitMult int) *Gossip {
	if retransmitMult <= 0 {
		retransmitMult = DefaultRetransmitMult
	}
	g := &Gossip{t: t}
	one := func() int { return 1 }
	g.numNodes.Store(&one)
	g.q = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return (*g.numNodes.Load())() },
		RetransmitMult: retransmitMult,
	}
	t.Watch(func(c Change) { g.q.QueueBroadcast(&broadcast{key: c.Key(), msg: c.Encode()}) })
	return g
}

// SetNumNodes gives the queue the member count (for example the length of
// gossip.Gossip.Members); it decides how often a delta is retransmitted.
func (g *Gossip) SetNumNodes(f func() int) { g.numNodes.Store(&f) }

// Queued returns how many deltas are still to be retransmitted.
func (g *Gossip) Queued() int { return g.q.NumQueued() }

// LocalState returns the full table for push/pull; nil (and a count in
// Stats.StateOversize) if it exceeds MaxStateSize.
func (g *Gossip) LocalState(join bool) []byte {
	b, err := g.t.EncodeState()
	if err != nil {
		return nil
	}
	return b
}

// MergeRemoteState merges a peer's full table; a bad one is counted and
// ignored.
func (g *Gossip) MergeRemoteState(buf []byte, join bool) { _ = g.t.MergeState(buf) }

// GetBroadcasts returns queued deltas for memberlist to piggyback.
func (g *Gossip) GetBroadcasts(overhead, limit int) [][]byte {
	return g.q.GetBroadcasts(overhead, limit)
}

// NotifyMsg merges one delta from a peer; a bad one is counted and
// ignored.
func (g *Gossip) NotifyMsg(buf []byte) { _ = g.t.MergeDelta(buf) }

// broadcast is one queued delta, named by what it replaces.
type broadcast struct {
	key string
	msg []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*broadcast)
	return ok && ob.key == b.key
}
func (b *broadcast) Name() string    { return b.key }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}
