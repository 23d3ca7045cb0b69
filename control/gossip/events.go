package gossip

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// peerState is what this node believes about one remote member. It is
// updated only from memberlist's event callbacks, which memberlist calls
// with its node lock held and with a Node that we must copy.
type peerState struct {
	addr string
	raw  []byte // meta bytes last seen
	meta Meta   // decoded and sanitized meta, valid when ok
	ok   bool   // false: excluded from Members (reason in Gossip.warned)
}

// delegate implements memberlist's Delegate, EventDelegate and
// ConflictDelegate for a Gossip. Every method is non-blocking: memberlist
// calls them from its packet loop or with its node lock held.
type delegate struct{ g *Gossip }

var (
	_ memberlist.Delegate         = delegate{}
	_ memberlist.EventDelegate    = delegate{}
	_ memberlist.ConflictDelegate = delegate{}
)

// NodeMeta returns the local encoded meta. Start and UpdateMeta guarantee it
// fits memberlist.MetaMaxSize, which is the limit memberlist passes.
func (d delegate) NodeMeta(limit int) []byte {
	d.g.metaMu.RLock()
	defer d.g.metaMu.RUnlock()
	if len(d.g.localEnc) > limit {
		return nil // unreachable: EncodeMeta enforces MetaMaxSize
	}
	return slices.Clone(d.g.localEnc)
}

// The user-state methods forward to Config.State when one is set.

func (d delegate) NotifyMsg(buf []byte) {
	if s := d.g.cfg.State; s != nil && len(buf) > 0 {
		s.NotifyMsg(buf)
	}
}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	if s := d.g.cfg.State; s != nil {
		return s.GetBroadcasts(overhead, limit)
	}
	return nil
}

func (d delegate) LocalState(join bool) []byte {
	if s := d.g.cfg.State; s != nil {
		return s.LocalState(join)
	}
	return nil
}

func (d delegate) MergeRemoteState(buf []byte, join bool) {
	if s := d.g.cfg.State; s != nil && len(buf) > 0 {
		s.MergeRemoteState(buf, join)
	}
}

func (d delegate) NotifyJoin(n *memberlist.Node)   { d.g.onAlive(n) }
func (d delegate) NotifyUpdate(n *memberlist.Node) { d.g.onAlive(n) }
func (d delegate) NotifyLeave(n *memberlist.Node)  { d.g.onGone(n) }

// NotifyConflict is called when a node named like a known member shows up
// at another address. memberlist keeps the member it knew and refuses the
// other; we make that visible.
func (d delegate) NotifyConflict(existing, other *memberlist.Node) {
	g := d.g
	g.conflicts.Add(1)
	otherAddr := other.Address()
	if existing.Name == g.cfg.NodeID {
		g.selfConflicts.Add(1)
	}
	if ok, suppressed := g.limit.allow("conflict/" + existing.Name + "/" + hostOf(otherAddr)); ok {
		g.log.Error(fmt.Sprintf("gossip: node ID %q is claimed by %s and by %s: node IDs must be unique; the member at %s is kept and %s is refused",
			existing.Name, existing.Address(), otherAddr, existing.Address(), otherAddr),
			"node_id", existing.Name, "kept", existing.Address(), "refused", otherAddr,
			"local", existing.Name == g.cfg.NodeID, "suppressed", suppressed)
	}
}

// onAlive records a joined or updated member and decodes its meta. A bad
// meta is counted on every change (memberlist only calls us when the meta
// bytes or the member's liveness change, never per gossip round) and
// logged once per peer and reason.
func (g *Gossip) onAlive(n *memberlist.Node) {
	if n.Name == g.cfg.NodeID {
		return // self: Members uses the local meta directly
	}
	addr := n.Address()
	g.mu.Lock()
	p, known := g.peers[n.Name]
	if known && p.addr == addr && bytes.Equal(p.raw, n.Meta) {
		g.mu.Unlock()
		return
	}
	p = &peerState{addr: addr, raw: slices.Clone(n.Meta)}
	g.peers[n.Name] = p
	m, clamped, err := DecodeMetaSanitized(p.raw)
	if err == nil && m.NodeID != n.Name {
		err = metaErr(ReasonNodeID, "meta names node %q but the member is %q", m.NodeID, n.Name)
	}
	var logReason Reason
	var logMsg string
	switch {
	case err != nil:
		reason := errorReason(err)
		g.rejected[reason]++
		if g.warn(n.Name, reason) {
			logReason, logMsg = reason, fmt.Sprintf("gossip: ignoring member %q at %s: %v", n.Name, addr, err)
		}
	case clamped:
		p.meta, p.ok = m, true
		g.clamped++
		if g.warn(n.Name, ReasonClamped) {
			logReason, logMsg = ReasonClamped, fmt.Sprintf("gossip: member %q at %s sent out-of-range capacity or availability; using capacity %v, availability %v",
				n.Name, addr, m.Capacity, m.Availability)
		}
	default:
		p.meta, p.ok = m, true
		delete(g.warned, n.Name)
	}
	g.mu.Unlock()
	if logMsg != "" {
		g.log.Warn(logMsg, "peer", n.Name, "addr", addr, "reason", string(logReason))
	}
	g.notify()
}

// warn reports whether a problem with peer should be logged: only when it
// differs from the last one logged for that peer. Called with g.mu held.
func (g *Gossip) warn(peer string, r Reason) bool {
	if g.warned[peer] == r {
		return false
	}
	if len(g.warned) >= maxLimiterKeys {
		clear(g.warned)
	}
	g.warned[peer] = r
	return true
}

// onGone removes a member that left or was declared dead.
func (g *Gossip) onGone(n *memberlist.Node) {
	if n.Name == g.cfg.NodeID {
		return
	}
	g.mu.Lock()
	p, known := g.peers[n.Name]
	delete(g.peers, n.Name)
	g.mu.Unlock()
	if !known {
		return
	}
	// memberlist v0.7.0 leaves Node.State zero in NotifyLeave (its own
	// nodeState.State shadows it), so left and failed look alike here.
	g.log.Info(fmt.Sprintf("gossip: member %q at %s is gone (left or failed)", n.Name, p.addr),
		"peer", n.Name, "addr", p.addr)
	g.notify()
}

// Subscribe returns a channel that receives a value whenever membership or
// any member's meta (the local one included) changes. Notifications
// coalesce: the channel has room for one, and a send never blocks gossip,
// so a reader should re-read Members after each receive. The channel is
// closed by Shutdown.
func (g *Gossip) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	g.subsMu.Lock()
	defer g.subsMu.Unlock()
	if g.closed {
		close(ch)
		return ch
	}
	g.subs = append(g.subs, ch)
	return ch
}

func (g *Gossip) notify() {
	g.subsMu.Lock()
	defer g.subsMu.Unlock()
	if g.closed {
		return
	}
	for _, ch := range g.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (g *Gossip) closeSubscribers() {
	g.subsMu.Lock()
	defer g.subsMu.Unlock()
	if g.closed {
		return
	}
	g.closed = true
	for _, ch := range g.subs {
		close(ch)
	}
	g.subs = nil
}
