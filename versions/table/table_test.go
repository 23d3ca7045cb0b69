package table

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func newTable(t testing.TB, self string) *Table {
	t.Helper()
	tb, err := New(self)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func pub(path string, version uint64, content string) Publication {
	return Publication{Path: path, Version: version, SHA256: sum(content), Size: int64(len(content)),
		Group: "all", Threshold: 50, Batch: 1, Publisher: "n1", Stamp: 1}
}

func TestSetPublicationAssignsVersion(t *testing.T) {
	tb := newTable(t, "n1")
	p, err := tb.SetPublication(Publication{Path: "/page.html", SHA256: sum("v1"), Size: 2, Group: "all", Threshold: 50, Batch: 1})
	if err != nil || p.Version != 1 || p.Publisher != "n1" || p.Stamp == 0 {
		t.Fatalf("first publish: %+v, %v", p, err)
	}
	// A row at a higher version than the publication (a peer's word heard
	// before its publication) raises the next version.
	if _, err := tb.Merge(nil, []Row{{Path: "/page.html", Node: "n2", Version: 4, SHA256: sum("v4"), State: Available, Holds: true, Gen: 1}}); err != nil {
		t.Fatal(err)
	}
	p, err = tb.SetPublication(Publication{Path: "/page.html", SHA256: sum("v5"), Size: 2, Group: "all", Threshold: 50, Batch: 1})
	if err != nil || p.Version != 5 {
		t.Fatalf("publish after a v4 row: %+v, %v; want version 5", p, err)
	}
	// A given version that would not win is refused and changes nothing.
	if _, err := tb.SetPublication(pub("/page.html", 3, "old")); err == nil || !strings.Contains(err.Error(), "does not supersede the published version 5") {
		t.Fatalf("older given version: %v", err)
	}
	if got, _ := tb.Publication("/page.html"); got.Version != 5 {
		t.Fatalf("publication changed to %+v", got)
	}
	for _, c := range []struct {
		p    Publication
		want string
	}{
		{Publication{Path: "page.html", SHA256: sum("x"), Group: "all", Threshold: 50, Batch: 1}, "publication.path"},
		{Publication{Path: "/" + strings.Repeat("a", MaxPathLen), SHA256: sum("x"), Group: "all", Threshold: 50, Batch: 1}, "publication.path"},
		{Publication{Path: "/a\nb", SHA256: sum("x"), Group: "all", Threshold: 50, Batch: 1}, "control byte"},
		{Publication{Path: "/a", Group: "all", Threshold: 50, Batch: 1}, "publication.sha256"},
		{Publication{Path: "/a", SHA256: sum("x"), Group: "no such group!", Threshold: 50, Batch: 1}, "publication.group"},
		{Publication{Path: "/a", SHA256: sum("x"), Group: "all", Threshold: 4, Batch: 1}, "publication.threshold: 4 outside 5..95"},
		{Publication{Path: "/a", SHA256: sum("x"), Group: "all", Threshold: 96, Batch: 1}, "publication.threshold"},
		{Publication{Path: "/a", SHA256: sum("x"), Group: "all", Threshold: 50}, "publication.batch"},
		{Publication{Path: "/a", SHA256: sum("x"), Group: "all", Threshold: 50, Batch: 1, Size: -1}, "publication.size"},
	} {
		if _, err := tb.SetPublication(c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.p, err, c.want)
		}
	}
	if got := tb.Paths(); len(got) != 1 || got[0] != "/page.html" {
		t.Fatalf("bad publications left paths %v", got)
	}
}

func TestOwnRowGen(t *testing.T) {
	tb := newTable(t, "n1")
	r, err := tb.SetOwnRow("/a", Row{Node: "n9", Version: 1, SHA256: sum("v1"), State: Available, Holds: true})
	if err != nil || r.Gen != 1 || r.Node != "n1" || r.Path != "/a" {
		t.Fatalf("first own row: %+v, %v", r, err)
	}
	if r2, _ := tb.SetOwnRow("/a", r); r2.Gen != 1 {
		t.Fatalf("same word again bumped gen: %+v", r2)
	}
	r.State = Updating
	if r2, _ := tb.SetOwnRow("/a", r); r2.Gen != 2 {
		t.Fatalf("changed row: gen %d, want 2", r2.Gen)
	}
	if _, err := tb.SetOwnRow("/a", Row{Version: 0, State: Available}); err == nil || !strings.Contains(err.Error(), "row.version") {
		t.Fatalf("version 0 available: %v", err)
	}
	if _, err := tb.SetOwnRow("/a", Row{Version: 2, State: Available}); err == nil || !strings.Contains(err.Error(), "row.sha256") {
		t.Fatalf("version without sha: %v", err)
	}
	if _, err := tb.SetOwnRow("/a", Row{Version: 2, SHA256: sum("x"), State: 9}); err == nil || !strings.Contains(err.Error(), "row.state") {
		t.Fatalf("bad state: %v", err)
	}
}

func TestMergeRules(t *testing.T) {
	tb := newTable(t, "n1")
	ch := tb.Subscribe()
	// Publications: greater (version, sha256) wins, whatever the order.
	a, b := pub("/p", 2, "a"), pub("/p", 2, "b")
	hi, lo := a, b
	if !pubWins(a, b) {
		hi, lo = b, a
	}
	for _, order := range [][]Publication{{lo, hi}, {hi, lo}, {pub("/p", 1, "z"), hi, lo}} {
		tb2 := newTable(t, "n1")
		if _, err := tb2.Merge(order, nil); err != nil {
			t.Fatal(err)
		}
		if got, _ := tb2.Publication("/p"); got != hi {
			t.Fatalf("order %v kept %+v", order, got)
		}
	}
	// Rows: gen wins; a row claiming n2 is n2's word at its gen.
	r := Row{Path: "/p", Node: "n2", Version: 1, SHA256: sum("a"), State: Available, Holds: true, Gen: 5}
	older := r
	older.Gen, older.State = 4, Updating
	if n, _ := tb.Merge(nil, []Row{r, older, r}); n != 1 {
		t.Fatalf("accepted %d of row, older, duplicate; want 1", n)
	}
	if got := tb.Rows("/p")["n2"]; got != r {
		t.Fatalf("row %+v, want %+v", got, r)
	}
	// A node announcing a version it does not hold is a row with Holds false.
	noHold := Row{Path: "/p", Node: "n3", Version: 9, SHA256: sum("v9"), State: Available, Gen: 1}
	if _, err := tb.Merge(nil, []Row{noHold}); err != nil {
		t.Fatal(err)
	}
	if got := tb.Rows("/p")["n3"]; got.Holds {
		t.Fatalf("holds without holding: %+v", got)
	}
	select {
	case <-ch:
	default:
		t.Fatal("no change notification")
	}
	st := tb.Stats()
	if st.Accepted != 2 || st.Stale != 2 || st.Rows != 2 || st.Paths != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A batch with one invalid entry merges nothing.
	bad := r
	bad.Gen, bad.State = 99, 0
	if _, err := tb.Merge([]Publication{pub("/q", 1, "q")}, []Row{bad}); err == nil {
		t.Fatal("invalid row merged")
	}
	if _, ok := tb.Publication("/q"); ok {
		t.Fatal("a rejected batch changed the table")
	}
}

// TestReassertAfterRestart: a node that restarts writes its rows again
// from gen 1; its words from before the restart, with higher gens, come
// back by gossip and are answered with the current word above them.
func TestReassertAfterRestart(t *testing.T) {
	peer := newTable(t, "n2")
	before := newTable(t, "n1")
	for i := 0; i < 5; i++ {
		before.SetOwnRow("/p", Row{Version: uint64(i + 1), SHA256: sum(string(rune('a' + i))), State: Available, Holds: true})
	}
	st, _ := before.EncodeState()
	if err := peer.MergeState(st); err != nil {
		t.Fatal(err)
	}
	after := newTable(t, "n1") // restarted, store lost: version 0
	mine, _ := after.SetOwnRow("/p", Row{State: Updating})
	var sent []Change
	after.Watch(func(c Change) { sent = append(sent, c) })
	st, _ = peer.EncodeState()
	if err := after.MergeState(st); err != nil {
		t.Fatal(err)
	}
	got := after.Rows("/p")["n1"]
	if !sameWord(got, mine) || got.Gen != 6 || len(sent) != 1 || *sent[0].Row != got {
		t.Fatalf("after merging its old word: %+v (sent %v), want %+v at gen 6", got, sent, mine)
	}
	if err := peer.MergeDelta(sent[0].Encode()); err != nil {
		t.Fatal(err)
	}
	if peer.Rows("/p")["n1"] != got {
		t.Fatalf("peer kept %+v", peer.Rows("/p")["n1"])
	}
	// Without a word in this life, its old word is simply taken.
	fresh := newTable(t, "n1")
	fresh.MergeState(st)
	if fresh.Rows("/p")["n1"].Version != 5 {
		t.Fatalf("fresh table: %+v", fresh.Rows("/p")["n1"])
	}
}
