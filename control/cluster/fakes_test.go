package cluster

import (
	"sync"
	"time"

	"github.com/shoal-lb/shoal/control/capacity"
	"github.com/shoal-lb/shoal/control/gossip"
	"github.com/shoal-lb/shoal/control/ranges"
)

// In-repo fakes of the controller's edges. The capacity agent is the real
// one: it is pure logic, and the slow-start tests are about how the two
// interact.

// fakeView is a gossip view: the members as this node sees them. Peers
// adopt this node's advertised table hash only when the test says so
// (agree), or automatically on every clock tick when autoAgree is set.
type fakeView struct {
	mu        sync.Mutex
	self      string
	members   []gossip.Member
	updates   int
	autoAgree bool
}

func newView(self string, metas ...gossip.Meta) *fakeView {
	v := &fakeView{self: self}
	for _, m := range metas {
		v.members = append(v.members, gossip.Member{Meta: m, State: "alive"})
	}
	return v
}

func (v *fakeView) Members() []gossip.Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]gossip.Member(nil), v.members...)
}

func (v *fakeView) LocalMeta() gossip.Meta {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range v.members {
		if m.Meta.NodeID == v.self {
			return m.Meta
		}
	}
	return gossip.Meta{}
}

func (v *fakeView) UpdateMeta(m gossip.Meta) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.updates++
	for i := range v.members {
		if v.members[i].Meta.NodeID == v.self {
			v.members[i].Meta = m
		}
	}
	return nil
}

// set replaces or adds a peer's meta.
func (v *fakeView) set(m gossip.Meta) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range v.members {
		if v.members[i].Meta.NodeID == m.NodeID {
			v.members[i].Meta = m
			return
		}
	}
	v.members = append(v.members, gossip.Member{Meta: m, State: "alive"})
}

// peer returns a peer's meta.
func (v *fakeView) peer(id string) gossip.Meta {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, m := range v.members {
		if m.Meta.NodeID == id {
			return m.Meta
		}
	}
	panic("no member " + id)
}

// agree makes every peer advertise hash.
func (v *fakeView) agree(hash string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range v.members {
		if v.members[i].Meta.NodeID != v.self {
			v.members[i].Meta.TableHash = hash
		}
	}
}

// fakePublisher records every published share.
type fakePublisher struct {
	mu   sync.Mutex
	pubs []ranges.Ownership
}

func (p *fakePublisher) Publish(o *ranges.Ownership) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pubs = append(p.pubs, *o)
	return uint64(len(p.pubs))
}

func (p *fakePublisher) all() []ranges.Ownership {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ranges.Ownership(nil), p.pubs...)
}

func (p *fakePublisher) last() *ranges.Ownership {
	all := p.all()
	return &all[len(all)-1]
}

// fakeClock moves only when slept on or told to; onSleep runs after each
// move, so a test can make the world change while the controller waits.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	onSleep func(now time.Time)
}

func newClock() *fakeClock { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now, f := c.now, c.onSleep
	c.mu.Unlock()
	if f != nil {
		f(now)
	}
}

func (c *fakeClock) advance(d time.Duration) { c.Sleep(d) }

// fakeHealth is this node's checks' verdict.
type fakeHealth struct {
	mu sync.Mutex
	ok bool
}

func (h *fakeHealth) Healthy() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ok
}

func (h *fakeHealth) set(ok bool) {
	h.mu.Lock()
	h.ok = ok
	h.mu.Unlock()
}

// fakeFlows counts flows; tests change the counts from the clock hook.
type fakeFlows struct {
	mu                    sync.Mutex
	halfOpen, established uint64
}

func (f *fakeFlows) FlowCounts() (uint64, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.halfOpen, f.established
}

func (f *fakeFlows) set(h, e uint64) {
	f.mu.Lock()
	f.halfOpen, f.established = h, e
	f.mu.Unlock()
}

func newAgent(capv float64, loadAware bool) *capacity.Agent {
	a, err := capacity.New(capacity.Config{Capacity: capv, LoadAware: loadAware, MaxConnections: 100,
		Alpha: 1, Step: 0.1, Hysteresis: 2})
	if err != nil {
		panic(err)
	}
	return a
}

func meta(id string, capv, avail float64) gossip.Meta {
	return gossip.Meta{NodeID: id, Capacity: capv, Availability: avail, Health: gossip.HealthHealthy,
		TableAlgorithm: ranges.AlgoLatest}
}
