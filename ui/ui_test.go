package ui

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/lab/browser"
)

// fakeNode is a Source over real range tables (control/ranges) that a
// test can change.
type fakeNode struct {
	mu     sync.Mutex
	table  *ranges.Table
	groups map[string]*ranges.Table
	calls  int
}

func newFake(t *testing.T, weights map[string]float64) *fakeNode {
	f := &fakeNode{groups: map[string]*ranges.Table{}}
	f.set(t, weights)
	return f
}

func buildTable(t *testing.T, weights map[string]float64) *ranges.Table {
	t.Helper()
	var ms []ranges.Member
	for id, w := range weights {
		ms = append(ms, ranges.Member{ID: id, Weight: w})
	}
	tb, err := ranges.Build(7, ms)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func (f *fakeNode) set(t *testing.T, weights map[string]float64) {
	tb := buildTable(t, weights)
	f.mu.Lock()
	f.table = tb
	f.mu.Unlock()
}

func (f *fakeNode) setGroup(t *testing.T, name string, weights map[string]float64) {
	tb := buildTable(t, weights)
	f.mu.Lock()
	f.groups[name] = tb
	f.mu.Unlock()
}

func members(tb *ranges.Table) []api.MemberStatus {
	counts := tb.Count()
	var out []api.MemberStatus
	for _, m := range tb.Members {
		out = append(out, api.MemberStatus{ID: m.ID, Weight: m.Weight, Buckets: counts[m.ID], Share: float64(counts[m.ID]) / ranges.Buckets})
	}
	return out
}

func (f *fakeNode) Status() api.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return api.Status{NodeID: "n1", TableHash: f.table.Hash, Members: members(f.table)}
}

func (f *fakeNode) Health() api.Health { return api.Health{NodeID: "n1", Healthy: true, SlowStart: 1} }

// Stats counts a frame a microsecond, so the page has rates to show.
func (f *fakeNode) Stats() api.Stats {
	n := uint64(time.Now().UnixMicro())
	s := api.Stats{NodeID: "n1", Ports: map[string]api.PortStats{"nic": {RxPackets: n}}}
	s.Total.RX = n
	return s
}

func (f *fakeNode) Groups() []api.GroupStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.GroupStatus
	for _, name := range []string{"cluster", "html"} { // a group may be named like the cluster table
		if tb, ok := f.groups[name]; ok {
			g := api.GroupStatus{TableHash: tb.Hash, Members: members(tb)}
			g.Name = name
			out = append(out, g)
		}
	}
	return out
}

func (f *fakeNode) Ranges(group string) (api.Ranges, bool) {
	f.mu.Lock()
	tb := f.table
	if group != "" {
		tb = f.groups[group]
	}
	f.mu.Unlock()
	if tb == nil {
		return api.Ranges{}, false
	}
	r := api.Ranges{TableHash: tb.Hash}
	for _, iv := range tb.Intervals() {
		r.Intervals = append(r.Intervals, api.Interval{From: iv.From, To: iv.To, Owner: iv.Owner})
	}
	return r, true
}

// expand turns runs back into one owner per bucket.
func expand(t *testing.T, v api.TableView) []string {
	t.Helper()
	var out []string
	for _, r := range v.Runs {
		if r[0] < 0 || r[0] >= len(v.Owners) || r[1] < 1 {
			t.Fatalf("table %s: bad run %v with %d owners", v.Name, r, len(v.Owners))
		}
		for i := 0; i < r[1]; i++ {
			out = append(out, v.Owners[r[0]])
		}
	}
	return out
}

// TestBuildRunsAreTheTable: every table's runs cover 65,536 buckets and
// name each bucket's owner as the table does; groups follow the cluster.
func TestBuildRunsAreTheTable(t *testing.T) {
	f := newFake(t, map[string]float64{"n1": 1, "n2": 2, "n3": 1})
	f.setGroup(t, "html", map[string]float64{"n1": 1, "n3": 1})
	f.setGroup(t, "cluster", map[string]float64{"n2": 1})
	s := Build(f)
	if len(s.Tables) != 3 || s.Tables[0].Name != ClusterTable || s.Tables[0].Group ||
		!s.Tables[1].Group || s.Tables[1].Name != "cluster" || s.Tables[2].Name != "html" {
		t.Fatalf("tables: %+v", s.Tables)
	}
	for i, tb := range []*ranges.Table{f.table, f.groups["cluster"], f.groups["html"]} {
		v := s.Tables[i]
		owners := expand(t, v)
		if len(owners) != ranges.Buckets {
			t.Fatalf("%s: runs cover %d buckets", v.Name, len(owners))
		}
		for b, o := range owners {
			if want := tb.OwnerOf(uint16(b)); o != want {
				t.Fatalf("%s: bucket %d owned by %s in the runs, %s in the table", v.Name, b, o, want)
			}
		}
		for k := 1; k < len(v.Runs); k++ {
			if v.Runs[k][0] == v.Runs[k-1][0] {
				t.Fatalf("%s: runs %d and %d have one owner: not merged", v.Name, k-1, k)
			}
		}
		if v.TableHash != tb.Hash {
			t.Errorf("%s: hash %s, want %s", v.Name, v.TableHash, tb.Hash)
		}
	}
}

// stream opens GET /v1/events on srv and delivers snapshots on a channel.
func stream(t *testing.T, url string) (<-chan api.Snapshot, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+api.PathEvents, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	ch := make(chan api.Snapshot, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		api.ReadSnapshots(resp.Body, func(s api.Snapshot) bool { ch <- s; return true })
	}()
	return ch, func() { cancel(); resp.Body.Close(); <-done }
}

func next(t *testing.T, ch <-chan api.Snapshot, within time.Duration) api.Snapshot {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("stream ended")
		}
		return s
	case <-time.After(within):
		t.Fatalf("no event within %v", within)
	}
	panic("unreachable")
}

func server(t *testing.T, u *UI) *httptest.Server {
	mux := http.NewServeMux()
	u.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { u.Close(); srv.Close() })
	return srv
}

// TestEventsOnChange: the first event carries every table; with a
// heartbeat far away, a table change alone brings the next event within
// a few poll intervals, with the new runs; runs of an unchanged table are
// not sent again.
func TestEventsOnChange(t *testing.T) {
	f := newFake(t, map[string]float64{"n1": 1, "n2": 1, "n3": 1})
	f.setGroup(t, "html", map[string]float64{"n1": 1, "n2": 1})
	u := New(f)
	u.poll, u.beat = 20*time.Millisecond, time.Hour
	srv := server(t, u)
	ch, stop := stream(t, srv.URL)
	defer stop()
	first := next(t, ch, 2*time.Second)
	if first.Seq != 1 || len(first.Tables) != 2 || first.Tables[0].Unchanged || len(expand(t, first.Tables[0])) != ranges.Buckets {
		t.Fatalf("first event: seq %d, %d tables", first.Seq, len(first.Tables))
	}
	select {
	case s := <-ch:
		t.Fatalf("event %d without a change or a heartbeat", s.Seq)
	case <-time.After(200 * time.Millisecond):
	}
	changed := time.Now()
	f.set(t, map[string]float64{"n1": 1, "n2": 0, "n3": 1}) // n2 drained
	s := next(t, ch, 2*time.Second)
	lag := time.Since(changed)
	// The heartbeat is an hour away: this event is the change's.
	t.Logf("change reached the stream after %v (poll %v)", lag, u.poll)
	c := s.Tables[0]
	if c.Unchanged || c.TableHash != f.table.Hash {
		t.Fatalf("cluster table after the change: unchanged %v hash %s, want %s", c.Unchanged, c.TableHash, f.table.Hash)
	}
	for _, o := range expand(t, c) {
		if o == "n2" {
			t.Fatal("n2 still owns buckets after its weight went to 0")
		}
	}
	g := s.Tables[1]
	if !g.Unchanged {
		t.Error("the group table did not change but its runs were sent again")
	}
	if len(expand(t, g)) != ranges.Buckets {
		t.Error("ReadSnapshots did not restore the unchanged group's runs")
	}
}

// TestEventsHeartbeat: with nothing changing, events still come once per
// heartbeat, no faster, so the page's rates stay fresh.
func TestEventsHeartbeat(t *testing.T) {
	f := newFake(t, map[string]float64{"n1": 1})
	u := New(f)
	u.poll, u.beat = 10*time.Millisecond, 150*time.Millisecond
	srv := server(t, u)
	ch, stop := stream(t, srv.URL)
	defer stop()
	prev := next(t, ch, 2*time.Second)
	for i := 0; i < 4; i++ {
		s := next(t, ch, time.Second)
		gap := s.Time.Sub(prev.Time)
		if s.Seq != prev.Seq+1 || gap < u.beat || gap > 2*u.beat+500*time.Millisecond {
			t.Errorf("event %d after %v (heartbeat %v)", s.Seq, gap, u.beat)
		}
		if !s.Tables[0].Unchanged {
			t.Errorf("event %d resent unchanged runs", s.Seq)
		}
		prev = s
	}
}

// TestCloseEndsStreams: Close returns only when no stream reads the node,
// and later streams are refused; so are streams beyond MaxStreams.
func TestCloseEndsStreams(t *testing.T) {
	f := newFake(t, map[string]float64{"n1": 1})
	u := New(f)
	u.poll = 5 * time.Millisecond
	srv := server(t, u)
	var stops []func()
	for i := 0; i < MaxStreams; i++ {
		ch, stop := stream(t, srv.URL)
		next(t, ch, 2*time.Second)
		stops = append(stops, stop)
	}
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	resp, err := http.Get(srv.URL + api.PathEvents)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "event streams are open") {
		t.Errorf("stream %d: %s %s", MaxStreams+1, resp.Status, body)
	}
	u.Close()
	f.mu.Lock()
	calls := f.calls
	f.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	f.mu.Lock()
	after := f.calls
	f.mu.Unlock()
	if after != calls {
		t.Errorf("the node was read %d times after Close returned", after-calls)
	}
	resp, err = http.Get(srv.URL + api.PathEvents)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream after Close: %s", resp.Status)
	}
}

// TestPageIsSelfContained: the page and every file it names are served
// from the node, with a policy that forbids anything else; no asset names
// a URL off the node (the SVG namespace is a name, never fetched).
func TestPageIsSelfContained(t *testing.T) {
	srv := server(t, New(newFake(t, map[string]float64{"n1": 1})))
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("GET /: %s %v", resp.Status, resp.Header)
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(string(page), -1)
	if len(refs) < 2 {
		t.Fatalf("the page names %d files", len(refs))
	}
	for _, m := range refs {
		ref := m[1]
		if strings.Contains(ref, "//") || strings.HasPrefix(ref, "/") {
			t.Errorf("the page names %q: not relative to the node", ref)
			continue
		}
		if ref == "metrics" {
			continue // served by the admin server, not by this package
		}
		r, err := http.Get(srv.URL + "/" + ref)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Errorf("%s: %s", ref, r.Status)
		}
	}
	for _, name := range []string{"assets/index.html", "assets/app.js", "assets/style.css"} {
		b, err := assets.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "'http://www.w3.org/2000/svg'", "")
		if m := regexp.MustCompile(`https?://|url\(|@import`).FindString(s); m != "" {
			t.Errorf("%s names something off the node: %q", name, m)
		}
	}
	// The page carries a first snapshot, so it draws before its stream opens.
	m := regexp.MustCompile(`<script type="application/json" id="snapshot">(.*?)</script>`).FindSubmatch(page)
	if m == nil {
		t.Fatal("the page carries no snapshot")
	}
	var first api.Snapshot
	if err := json.Unmarshal(m[1], &first); err != nil || len(first.Tables) != 1 || len(expand(t, first.Tables[0])) != ranges.Buckets {
		t.Fatalf("the page's snapshot: %v, %d tables", err, len(first.Tables))
	}
	if r, err := http.Get(srv.URL + "/ui/nope.js"); err != nil || r.StatusCode != 404 {
		t.Errorf("missing asset: %v %v", r, err)
	}
}

// TestScriptParses checks app.js with Node.js where it is installed.
func TestScriptParses(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; the lab's browser test runs the script")
	}
	if out, err := exec.Command(node, "--check", "assets/app.js").CombinedOutput(); err != nil {
		t.Fatalf("node --check app.js: %v\n%s", err, out)
	}
}

// drawn is what the status page shows, read from its DOM.
type drawn struct {
	Seq     int               `json:"seq"`
	Members map[string]int    `json:"members"` // member row → data-buckets
	Bars    map[string]bar    `json:"bars"`    // table → its segments
	Conn    string            `json:"conn"`
	Rates   map[string]string `json:"rates"`
}

type bar struct {
	Total    int            `json:"total"` // data-buckets added up
	Segments int            `json:"segments"`
	Owners   map[string]int `json:"owners"`
}

// drawnJS summarises the page's DOM: member rows, and each bar's segments
// with their data-buckets added up per owner.
const drawnJS = `(() => {
  const out = {seq: +(document.body.dataset.seq || 0), members: {}, bars: {}, conn: document.getElementById('conn').dataset.state, rates: {}};
  for (const tr of document.querySelectorAll('#members tbody tr')) out.members[tr.dataset.member] = +tr.dataset.buckets;
  for (const list of document.querySelectorAll('div.intervals')) {
    const b = {total: 0, segments: 0, owners: {}};
    for (const r of list.querySelectorAll('i.seg')) {
      const n = +r.dataset.buckets;
      b.total += n; b.segments++;
      b.owners[r.dataset.owner] = (b.owners[r.dataset.owner] || 0) + n;
    }
    out.bars[list.closest('div.table').dataset.key] = b;
  }
  for (const tr of document.querySelectorAll('#counters tbody tr')) out.rates[tr.dataset.counter] = tr.cells[2].textContent;
  return out;
})()`

// TestPageInChromium loads the page in a headless Chromium and checks
// what it draws: every member, bars whose segments add up to 65,536
// buckets and match the tables, then a live redraw from the event stream
// (no reload) once n2's weight goes to 0. The screenshot is a test
// artefact (go test -artifacts keeps it).
func TestPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser; runs without -short")
	}
	if err := browser.Available(); err != nil {
		t.Skip(err)
	}
	f := newFake(t, map[string]float64{"n1": 1, "n2": 2, "n3": 1})
	f.setGroup(t, "html", map[string]float64{"n1": 1, "n3": 1})
	srv := server(t, New(f))
	t0 := time.Now()
	step := func(what string) { t.Logf("%6.2fs %s", time.Since(t0).Seconds(), what) }
	defer step("done")
	// --dump-dom serialises at the load event: the snapshot in the page
	// has been drawn by then.
	dom, err := browser.DumpDOM(context.Background(), nil, srv.URL+"/")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(dom, `<i class="seg"`); n != len(f.table.Intervals())+len(f.groups["html"].Intervals()) {
		t.Errorf("--dump-dom shows %d interval segments", n)
	}
	step("dump-dom")
	b, err := browser.Start(nil, 1280, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.Open(ctx, srv.URL+"/"); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitFor(ctx, `+(document.body.dataset.seq || 0) >= 1 && document.querySelectorAll('div.intervals i.seg').length > 0 && document.querySelectorAll('canvas.bar').length == 2`, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	check := func(d drawn, cluster *ranges.Table) {
		t.Helper()
		counts := cluster.Count()
		for _, id := range []string{"n1", "n2", "n3"} {
			if got, ok := d.Members[id]; !ok || got != counts[id] {
				t.Errorf("member row %s: %d buckets (present %v), table has %d", id, got, ok, counts[id])
			}
		}
		for key, tb := range map[string]*ranges.Table{"cluster": cluster, "group/html": f.groups["html"]} {
			bb := d.Bars[key]
			if bb.Total != ranges.Buckets || bb.Segments != len(tb.Intervals()) {
				t.Errorf("bar %s: %d segments adding up to %d buckets; want %d intervals, 65536", key, bb.Segments, bb.Total, len(tb.Intervals()))
			}
			for id, n := range tb.Count() {
				if bb.Owners[id] != n {
					t.Errorf("bar %s: %s has %d buckets drawn, %d in the table", key, id, bb.Owners[id], n)
				}
			}
		}
	}
	step("first draw")
	var d drawn
	if err := b.Eval(ctx, drawnJS, &d); err != nil {
		t.Fatal(err)
	}
	step("eval")
	check(d, f.table)
	if d.Conn != "live" {
		t.Errorf("connection state %q, want live", d.Conn)
	}
	if err := b.Screenshot(ctx, filepath.Join(t.ArtifactDir(), "status-page.png")); err != nil {
		t.Fatal(err)
	}
	step("screenshot")
	f.set(t, map[string]float64{"n1": 1, "n2": 0, "n3": 1})
	changed := time.Now()
	if err := b.WaitFor(ctx, `(() => { const r = document.querySelector('#members tr[data-member="n2"]'); return r && r.dataset.buckets === "0"; })()`, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("the page redrew %v after the table changed", time.Since(changed))
	if err := b.Eval(ctx, drawnJS, &d); err != nil {
		t.Fatal(err)
	}
	check(d, f.table)
	if n := d.Bars["cluster"].Owners["n2"]; n != 0 {
		t.Errorf("n2 still has %d buckets drawn", n)
	}
	// Rates need two events; the fake's rx counter follows the clock.
	if err := b.WaitFor(ctx, `document.querySelector('#counters tr[data-counter="rx"]').cells[2].textContent !== '—'`, 50*time.Millisecond); err != nil {
		t.Error(err)
	}
	if err := b.Screenshot(ctx, filepath.Join(t.ArtifactDir(), "status-page-n2-drained.png")); err != nil {
		t.Fatal(err)
	}
}
