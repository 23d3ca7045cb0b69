package rollout

import (
	"crypto/sha256"
	"hash/fnv"
	"reflect"
	"slices"
	"testing"

	"github.com/shoal-lb/shoal/versions/table"
)

var (
	sha1 = sha256.Sum256([]byte("v1"))
	sha2 = sha256.Sum256([]byte("v2"))
)

func publication(batch, threshold int) table.Publication {
	return table.Publication{Path: "/page.html", Version: 2, SHA256: sha2, Size: 2, Group: "all",
		Threshold: threshold, Batch: batch, Publisher: "n1", Stamp: 1}
}

func alive(ids ...string) []Member {
	var ms []Member
	for _, id := range ids {
		ms = append(ms, Member{ID: id, Alive: true, Serving: true})
	}
	return ms
}

func old() table.Row {
	return table.Row{Version: 1, SHA256: sha1, State: table.Available, Holds: true, Gen: 1}
}
func oldUpd() table.Row  { r := old(); r.State = table.Updating; return r }
func oldUnav() table.Row { r := old(); r.State = table.Unavailable; return r }
func fetched() table.Row {
	return table.Row{Version: 2, SHA256: sha2, State: table.Updating, Holds: true, Gen: 2}
}
func done() table.Row {
	return table.Row{Version: 2, SHA256: sha2, State: table.Available, Holds: true, Gen: 3}
}

// rowsIn gives the members in rollout order the rows listed, in order.
func rowsIn(order []string, rs ...table.Row) map[string]table.Row {
	m := map[string]table.Row{}
	for i, r := range rs {
		m[order[i]] = r
	}
	return m
}

func TestOrderFrozen(t *testing.T) {
	p := publication(1, 50)
	ms := alive("n1", "n2", "n3", "n4")
	ms = append(ms, Member{ID: "n5"}) // dead: not ordered
	got := Order(p, ms)
	want := []string{"n1", "n2", "n3", "n4"}
	h := func(id string) uint64 {
		f := fnv.New64a()
		f.Write([]byte("/page.html|2|" + id))
		return f.Sum64()
	}
	slices.SortFunc(want, func(a, b string) int {
		if h(a) < h(b) {
			return -1
		}
		return 1
	})
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	t.Logf("order of /page.html v2 over n1..n4: %v", got)
}

// TestPlanRules: one case per rule of the package documentation.
func TestPlanRules(t *testing.T) {
	four := alive("n1", "n2", "n3", "n4")
	o4 := Order(publication(1, 50), four)
	two := alive("n1", "n2")
	o2 := Order(publication(2, 50), two)
	withDead := func(ms []Member, dead ...string) []Member {
		out := slices.Clone(ms)
		for i := range out {
			if slices.Contains(dead, out[i].ID) {
				out[i].Alive, out[i].Serving = false, false
			}
		}
		return out
	}
	notServing := func(ms []Member, id string) []Member {
		out := slices.Clone(ms)
		for i := range out {
			if out[i].ID == id {
				out[i].Serving = false
			}
		}
		return out
	}
	otherSHA := done()
	otherSHA.SHA256 = sha1
	newer := done()
	newer.Version = 3
	for _, c := range []struct {
		name    string
		pub     table.Publication
		members []Member
		rows    map[string]table.Row
		self    string
		kind    Kind
		keep    bool
		source  bool
	}{
		{"not in group", publication(1, 50), four, rowsIn(o4, old(), old(), old(), old()), "n9", Nothing, false, false},
		{"publisher outside the group keeps the source", func() table.Publication { p := publication(1, 50); p.Publisher = "n9"; return p }(),
			four, rowsIn(o4, old(), old(), old(), old()), "n9", Nothing, false, true},
		{"dead self", publication(1, 50), withDead(four, o4[1]), rowsIn(o4, old(), old(), old(), old()), o4[1], Nothing, false, false},
		{"batch 1: first in order starts", publication(1, 50), four, rowsIn(o4, old(), old(), old(), old()), o4[0], StartUpdating, false, false},
		{"batch 1: second waits", publication(1, 50), four, rowsIn(o4, old(), old(), old(), old()), o4[1], Nothing, false, false},
		{"batch 1: second starts when the first is done", publication(1, 50), four, rowsIn(o4, done(), old(), old(), old()), o4[1], StartUpdating, false, false},
		{"batch 1: third waits while the second updates", publication(1, 50), four, rowsIn(o4, done(), oldUpd(), old(), old()), o4[2], Nothing, false, false},
		{"batch 2: second of round 0 starts", publication(2, 50), four, rowsIn(o4, old(), old(), old(), old()), o4[1], StartUpdating, false, false},
		{"batch 2: round 1 waits", publication(2, 50), four, rowsIn(o4, done(), old(), old(), old()), o4[2], Nothing, false, false},
		{"batch 2: round 1 starts when round 0 is done", publication(2, 50), four, rowsIn(o4, done(), done(), old(), old()), o4[3], StartUpdating, false, false},
		{"updating: fetch", publication(1, 50), four, rowsIn(o4, oldUpd(), old(), old(), old()), o4[0], Fetch, false, false},
		{"fetched: publish", publication(1, 50), four, rowsIn(o4, fetched(), old(), old(), old()), o4[0], Publish, false, false},
		{"done: nothing", publication(1, 50), four, rowsIn(o4, done(), old(), old(), old()), o4[0], Nothing, false, false},
		{"newer version: nothing", publication(1, 50), four, rowsIn(o4, newer, old(), old(), old()), o4[0], Nothing, false, false},
		{"same version, other sha256: not done", publication(1, 50), four, rowsIn(o4, otherSHA, old(), old(), old()), o4[0], StartUpdating, false, false},
		{"dead earlier member does not hold the round", publication(1, 50), withDead(four, o4[0]), rowsIn(o4, old(), old(), old(), old()), o4[1], StartUpdating, false, false},
		{"single-member group keeps serving", publication(1, 50), alive("n1"), map[string]table.Row{"n1": old()}, "n1", Fetch, true, false},
		{"single member left alive keeps serving", publication(1, 50), withDead(four, o4[1], o4[2], o4[3]), rowsIn(o4, old(), old(), old(), old()), o4[0], Fetch, true, false},
		{"the others updating: next in turn keeps serving", publication(2, 50), withDead(four, o4[2], o4[3]), rowsIn(o4, oldUpd(), old(), old(), old()), o4[1], Fetch, true, false},
		{"a whole group in one round: the first keeps serving", publication(2, 50), two, rowsIn(o2, old(), old()), o2[0], Fetch, true, false},
		{"a whole group in one round: the second starts", publication(2, 50), two, rowsIn(o2, old(), old()), o2[1], StartUpdating, false, false},
		{"the keeper switches once fetched", publication(1, 50), alive("n1"), map[string]table.Row{"n1": fetched()}, "n1", Publish, false, false},
		{"a non-serving server does not count", publication(1, 50), notServing(notServing(withDead(four, o4[3]), o4[0]), o4[1]), rowsIn(o4, done(), done(), old(), old()), o4[2], Fetch, true, false},
		{"a serving done member lets the turn stop serving", publication(1, 50), withDead(four, o4[3]), rowsIn(o4, done(), done(), old(), old()), o4[2], StartUpdating, false, false},
		{"threshold reached: later rounds go unavailable", publication(1, 50), four, rowsIn(o4, done(), done(), oldUpd(), old()), o4[3], MarkUnavailable, false, false},
		{"threshold not reached: later rounds keep serving", publication(1, 50), four, rowsIn(o4, done(), oldUpd(), old(), old()), o4[3], Nothing, false, false},
		{"threshold counts serving members only", publication(1, 50), notServing(four, o4[1]), rowsIn(o4, done(), done(), oldUpd(), old()), o4[3], Nothing, false, false},
		{"already unavailable: nothing", publication(1, 50), four, rowsIn(o4, done(), done(), oldUpd(), oldUnav()), o4[3], Nothing, false, false},
		{"turn beats the threshold", publication(1, 50), four, rowsIn(o4, done(), done(), old(), oldUnav()), o4[2], StartUpdating, false, false},
		{"catch-up: a returned member in an earlier round starts at once", publication(1, 50), four, rowsIn(o4, old(), done(), done(), oldUpd()), o4[0], StartUpdating, false, false},
		{"catch-up: a member that died updating resumes", publication(1, 50), four, rowsIn(o4, done(), done(), done(), oldUpd()), o4[3], Fetch, false, false},
		{"no row yet (new member): its turn", publication(1, 50), four, rowsIn(o4, done(), done(), done()), o4[3], StartUpdating, false, false},
	} {
		a := Plan(c.pub, c.members, c.rows, c.self)
		if a.Kind != c.kind || a.KeepServing != c.keep || a.Source != c.source {
			t.Errorf("%s: %v keep=%v source=%v (%s), want %v keep=%v source=%v", c.name, a.Kind, a.KeepServing, a.Source, a.Why, c.kind, c.keep, c.source)
		}
		if a.Version != c.pub.Version || a.SHA256 != c.pub.SHA256 {
			t.Errorf("%s: action names v%d", c.name, a.Version)
		}
	}
}

func TestSourcesAndThreshold(t *testing.T) {
	p := publication(1, 50)
	ms := alive("n1", "n2", "n3", "n4")
	ms = append(ms, Member{ID: "n5"})
	noHold := done()
	noHold.Holds = false // announces v2 without holding it
	rows := map[string]table.Row{"n2": done(), "n3": noHold, "n4": oldUpd(), "n5": done()}
	a := Plan(p, ms, rows, "n4")
	if a.Kind != Fetch || !reflect.DeepEqual(a.Sources, []string{"n2", "n1"}) {
		t.Fatalf("sources %v (%v): want the holder n2, then the publisher n1; not n3 (holds false) nor n5 (dead)", a.Sources, a.Kind)
	}
	for _, c := range []struct {
		threshold int
		rows      map[string]table.Row
		reached   bool
		share     float64
	}{
		{50, map[string]table.Row{"n1": done(), "n2": done()}, true, 0.5},
		{51, map[string]table.Row{"n1": done(), "n2": done()}, false, 0.5},
		{25, map[string]table.Row{"n1": done()}, true, 0.25},
		{5, map[string]table.Row{"n1": fetched(), "n2": old()}, false, 0},
		{50, map[string]table.Row{"n1": done(), "n5": done()}, false, 0.25}, // n5 dead
	} {
		p.Threshold = c.threshold
		reached, share := Threshold(p, ms, c.rows)
		if reached != c.reached || share != c.share {
			t.Errorf("threshold %d, rows %v: %v %.2f, want %v %.2f", c.threshold, c.rows, reached, share, c.reached, c.share)
		}
	}
	if r, s := Threshold(p, nil, nil); r || s != 0 {
		t.Errorf("no members: %v %v", r, s)
	}
}
