package route

import (
	"crypto/sha256"
	"fmt"
	"math/rand"
	"testing"

	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/handoff/wire"
	"github.com/shoal-lb/shoal/versions/table"
)

// cview is the fake View with the update table: the content of one path.
type cview struct {
	view
	pub  table.Publication
	rows map[string]table.Row
}

func (v cview) Content(path string) (table.Publication, map[string]table.Row, bool) {
	if path != v.pub.Path {
		return table.Publication{}, nil, false
	}
	return v.pub, v.rows, true
}

var verDefs = []groups.Group{
	{Name: "all", Paths: []string{"/nothing-matches-this"}},
	{Name: "html", Paths: []string{"*.html"}},
	{Name: "best", Paths: []string{"/b/*"}, Policy: groups.ByAvailability},
}

func verMembers() []groups.Member {
	return []groups.Member{
		{ID: "n1", Availability: 1, Groups: []string{"all", "html", "best"}},
		{ID: "n2", Availability: 1, Groups: []string{"all", "best"}},
		{ID: "n3", Availability: 3, Groups: []string{"all", "best"}},
		{ID: "n4", Availability: 2, Groups: []string{"all", "best"}},
		{ID: "n5", Availability: 1, Groups: []string{"html"}},
	}
}

func row(version uint64, state table.State) table.Row {
	return table.Row{Version: version, SHA256: sha256.Sum256([]byte(fmt.Sprint(version))), State: state, Holds: true, Gen: 1}
}

func cv(t *testing.T, path, group string, rows map[string]table.Row, healthy ...string) cview {
	if len(healthy) == 0 {
		healthy = []string{"n1", "n2", "n3", "n4", "n5"}
	}
	return cview{view: build(t, verDefs, verMembers(), healthy...),
		pub: table.Publication{Path: path, Version: 2, Group: group, Threshold: 50, Batch: 1, Publisher: "n1"}, rows: rows}
}

// toAmong finds a client that rendezvous over the given nodes sends to want.
func toAmong(t *testing.T, want string, nodes ...string) Request {
	var ms []groups.Member
	for _, n := range nodes {
		ms = append(ms, groups.Member{ID: n, Availability: 1})
	}
	all := view{healthy: map[string]bool{"n1": true, "n2": true, "n3": true, "n4": true, "n5": true}}
	for i := 0; i < 1<<16; i++ {
		if d, _ := rendezvous(all, ms, ConnValue(client(i))); d == want {
			return Request{Path: "/page.html", Client: client(i)}
		}
	}
	t.Fatalf("no client to %s among %v", want, nodes)
	return Request{}
}

// TestDecideVersion: one case per clause of rule 2.
func TestDecideVersion(t *testing.T) {
	A, U, X := table.Available, table.Updating, table.Unavailable
	allV2 := map[string]table.Row{"n1": row(2, A), "n2": row(2, A), "n3": row(2, A), "n4": row(2, A)}
	mixed := map[string]table.Row{"n1": row(1, A), "n2": row(2, A), "n3": row(1, U), "n4": row(2, A)}
	cfg := func(self string) Config { return Config{Self: self, Groups: verDefs, SessionCookie: cookieName} }
	bestRows := map[string]table.Row{"n1": row(2, A), "n2": row(2, A), "n3": row(1, A), "n4": row(2, A)}
	withCookie := func(r Request, v string) Request { r.Cookies = cookies(v); return r }
	for _, c := range []struct {
		name string
		cfg  Config
		v    View
		r    Request
		want Decision
	}{
		{"published path: the publication's group, not the *.html rule", cfg("n5"), cv(t, "/page.html", "all", allV2),
			toAmong(t, "n3", "n1", "n2", "n3", "n4"), Decision{Node: "n3", Group: "all", Reason: wire.ReasonGroup}},
		{"a member with the version serves its share", cfg("n3"), cv(t, "/page.html", "all", allV2),
			toAmong(t, "n3", "n1", "n2", "n3", "n4"), Decision{Node: "n3", Local: true, Group: "all"}},
		{"a candidate serves what it accepted, whatever the hash says", cfg("n1"), cv(t, "/page.html", "all", allV2),
			toAmong(t, "n3", "n1", "n2", "n3", "n4"), Decision{Node: "n1", Local: true, Group: "all"}},
		{"highest version only: a member at v1 moves the request: version", cfg("n1"), cv(t, "/page.html", "all", mixed),
			toAmong(t, "n4", "n2", "n4"), Decision{Node: "n4", Group: "all", Reason: wire.ReasonVersion}},
		{"an updating member moves the request: version", cfg("n3"), cv(t, "/page.html", "all", mixed),
			toAmong(t, "n2", "n2", "n4"), Decision{Node: "n2", Group: "all", Reason: wire.ReasonVersion}},
		{"a non-member moves it for the group", cfg("n5"), cv(t, "/page.html", "all", mixed),
			toAmong(t, "n2", "n2", "n4"), Decision{Node: "n2", Group: "all", Reason: wire.ReasonGroup}},
		{"unhealthy and unavailable rows are not candidates", cfg("n5"),
			cv(t, "/page.html", "all", map[string]table.Row{"n1": row(1, A), "n2": row(3, X), "n3": row(2, A), "n4": row(2, A)}, "n1", "n2", "n3", "n5"),
			toAmong(t, "n4", "n2", "n3", "n4"), Decision{Node: "n3", Group: "all", Reason: wire.ReasonGroup}},
		{"availability policy: the highest availability among the newest", cfg("n5"), cv(t, "/b/x", "best", bestRows),
			Request{Path: "/b/x", Client: client(1)}, Decision{Node: "n4", Group: "best", Reason: wire.ReasonGroup}},
		{"session node with the newest version", cfg("n5"), cv(t, "/page.html", "all", mixed),
			withCookie(toAmong(t, "n2", "n2", "n4"), "n4~abc"), Decision{Node: "n4", Group: "all", Reason: wire.ReasonSession}},
		{"session node with an old version is passed over", cfg("n5"), cv(t, "/page.html", "all", mixed),
			withCookie(Request{Path: "/page.html"}, "n1~abc"), Decision{Node: rendezvousOf(t, "n1~abc", "n2", "n4"), Group: "all", Reason: wire.ReasonGroup}},
		{"no candidate: the ordinary decision (the *.html rule)", cfg("n1"),
			cv(t, "/page.html", "all", map[string]table.Row{"n1": row(1, U), "n2": row(1, U)}),
			Request{Path: "/page.html", Client: clientTo(t, build(t, verDefs, verMembers(), "n1", "n5"), "html", "n5")},
			Decision{Node: "n5", Group: "html", Reason: wire.ReasonGroup}},
		{"no candidate, no rule: local", cfg("n2"), cv(t, "/x.png", "all", map[string]table.Row{}),
			Request{Path: "/x.png"}, Decision{Node: "n2", Local: true}},
		{"unpublished path: as before", cfg("n2"), cv(t, "/other", "all", allV2),
			Request{Path: "/x.png"}, Decision{Node: "n2", Local: true}},
		{"unknown group in the publication: as before", cfg("n2"), cv(t, "/x.png", "nosuch", allV2),
			Request{Path: "/x.png"}, Decision{Node: "n2", Local: true}},
		{"TLS has no path", cfg("n2"), cv(t, "", "all", allV2),
			Request{TLS: true}, Decision{Node: "n2", Local: true}},
	} {
		if got := Decide(c.cfg, c.v, c.r); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// rendezvousOf is where a cookie's hash lands among nodes.
func rendezvousOf(t *testing.T, cookie string, nodes ...string) string {
	var ms []groups.Member
	for _, n := range nodes {
		ms = append(ms, groups.Member{ID: n, Availability: 1})
	}
	d, _ := rendezvous(view{healthy: map[string]bool{"n1": true, "n2": true, "n3": true, "n4": true, "n5": true}}, ms, hash32([]byte(cookie)))
	return d
}

// TestDecideVersionProperty: over random rows, health and requests, a
// published path with an available healthy serving member goes to one of
// them at the highest available version, and only this node or such a
// member serves it; otherwise the decision is the one without the table.
func TestDecideVersionProperty(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	states := []table.State{table.Available, table.Updating, table.Unavailable}
	moved := map[wire.Reason]int{}
	for round := 0; round < 150; round++ {
		var healthy []string
		for _, n := range nodes {
			if rng.Intn(5) != 0 {
				healthy = append(healthy, n)
			}
		}
		rows := map[string]table.Row{}
		for _, n := range nodes {
			if rng.Intn(6) != 0 {
				rows[n] = row(uint64(1+rng.Intn(3)), states[rng.Intn(3)])
			}
		}
		group := []string{"all", "best", "html"}[rng.Intn(3)]
		path := map[string]string{"all": "/page.html", "best": "/b/x", "html": "/c.html"}[group]
		v := cv(t, path, group, rows, healthy...)
		best := uint64(0)
		for _, m := range v.Members(group) {
			if r, ok := rows[m.ID]; ok && r.State == table.Available && m.Availability > 0 && v.Healthy(m.ID) {
				best = max(best, r.Version)
			}
		}
		self := nodes[rng.Intn(len(nodes))]
		cfg := Config{Self: self, Groups: verDefs, SessionCookie: cookieName}
		for i := 0; i < 50; i++ {
			r := Request{Path: path, Client: client(rng.Intn(1 << 16))}
			if rng.Intn(3) == 0 {
				r.Cookies = cookies(PrefixSessionValue(nodes[rng.Intn(len(nodes))], "x"))
			}
			d := Decide(cfg, v, r)
			if best == 0 {
				if want := Decide(cfg, v.view, r); d != want {
					t.Fatalf("no candidate: %+v, want the decision without the table %+v", d, want)
				}
				continue
			}
			dr := rows[d.Node]
			if d.Group != group || dr.State != table.Available || dr.Version != best || !v.Healthy(d.Node) || !serving(v.Members(group), d.Node) {
				t.Fatalf("round %d: %s sent %s to %s (row %+v, group %q), highest available v%d; rows %v healthy %v",
					round, self, path, d.Node, dr, d.Group, best, rows, healthy)
			}
			if d.Local != (d.Node == self) {
				t.Fatalf("inconsistent %+v", d)
			}
			moved[d.Reason]++
		}
	}
	t.Logf("decisions by reason: %v", moved)
	if moved[wire.ReasonVersion] == 0 || moved[wire.ReasonGroup] == 0 || moved[wire.ReasonSession] == 0 || moved[0] == 0 {
		t.Fatalf("the property did not exercise every outcome: %v", moved)
	}
}
