package e2e

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/deploy"
	"github.com/shoal-lb/shoal/lab"
	"github.com/shoal-lb/shoal/lab/browser"
)

// adminReq sends a request to node k's TCP admin API from the client
// namespace, with the bearer token if token is not empty.
func adminReq(t *testing.T, c *http.Client, method string, k int, path, body, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, strings.TrimSuffix(lab.AdminURL(k), "/")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s on n%d: %v", method, path, k, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

var (
	memberRow = regexp.MustCompile(`<tr data-member="([^"]+)" data-buckets="(\d+)"`)
	intervals = regexp.MustCompile(`(?s)<div class="intervals"[^>]*? data-table="([^"]+)" data-hash="([^"]*)"[^>]*>(.*?)</div>`)
	segment   = regexp.MustCompile(`<i class="seg" data-owner="([^"]*)" data-from="(\d+)" data-buckets="(\d+)">`)
)

// domCheck reads the page's HTML as a browser drew it: the member rows
// and, per table, each owner's buckets added up over the interval
// segments, which must start where the previous one ended and cover
// 65,536 buckets.
func domCheck(t *testing.T, dom string) (rows map[string]int, tables map[string]map[string]int, hashes map[string]string) {
	t.Helper()
	rows = map[string]int{}
	for _, m := range memberRow.FindAllStringSubmatch(dom, -1) {
		rows[m[1]], _ = strconv.Atoi(m[2])
	}
	tables, hashes = map[string]map[string]int{}, map[string]string{}
	for _, tm := range intervals.FindAllStringSubmatch(dom, -1) {
		owners, next := map[string]int{}, 0
		hashes[tm[1]] = tm[2]
		for _, s := range segment.FindAllStringSubmatch(tm[3], -1) {
			from, _ := strconv.Atoi(s[2])
			n, _ := strconv.Atoi(s[3])
			if from != next {
				t.Errorf("table %s: a segment starts at bucket %d, the previous ended before %d", tm[1], from, next)
			}
			next = from + n
			owners[s[1]] += n
		}
		if next != 65536 {
			t.Errorf("table %s: segments add up to %d buckets, want 65536", tm[1], next)
		}
		tables[tm[1]] = owners
	}
	return rows, tables, hashes
}

// TestStatusPage: each node's status page is reachable from the client
// namespace on its admin TCP listener, read-only without the token; its
// /metrics serves every metric the dashboard and alert rules use. A
// headless Chromium draws n1's page: every member, and bar segments that
// add up to 65,536 buckets as n1's table has them. After a drain of n2
// (POST /v1/drain with the token) n1's event stream brings a snapshot
// with n2 at 0 buckets, and the open page redraws from it without a
// reload. Screenshots are artefacts: go test -artifacts -outputdir DIR.
func TestStatusPage(t *testing.T) {
	needLab(t)
	if err := browser.Available(); err != nil {
		t.Skip(err)
	}
	l := up(t, lab.Options{Nodes: 3})
	token, err := lab.AdminToken()
	if err != nil {
		t.Fatal(err)
	}
	hc := lab.HTTPClient("client")
	for k := range l.NodeIDs() {
		if code, body := adminReq(t, hc, "GET", k+1, "/", "", ""); code != 200 || !strings.Contains(body, "ui/app.js") {
			t.Errorf("GET %s without a token: %d %.80q", lab.AdminURL(k+1), code, body)
		}
	}
	if code, _ := adminReq(t, hc, "GET", 1, api.PathStatus, "", ""); code != 200 {
		t.Errorf("GET /v1/status without a token: %d", code)
	}
	for _, tok := range []string{"", "0123456789abcdef0123"} {
		if code, body := adminReq(t, hc, "POST", 2, api.PathDrain, `{"on": true}`, tok); code != 401 {
			t.Fatalf("POST /v1/drain with token %q: %d %s, want 401", tok, code, body)
		}
	}

	// The dashboard and the alert rules (package deploy) name only metrics
	// and label values that a node's /metrics serves; a scraper needs no
	// token.
	code, body := adminReq(t, hc, "GET", 1, api.PathMetrics, "", "")
	if code != 200 {
		t.Fatalf("GET /metrics without a token: %d", code)
	}
	sel, err := deploy.Selectors()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range deploy.Missing(sel, deploy.ParseMetrics(body)) {
		t.Errorf("deploy/: %s", m)
	}

	// n1's event stream, read by Go from the client namespace.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(lab.AdminURL(1), "/")+api.PathEvents, nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	snaps := make(chan api.Snapshot, 128)
	go func() {
		defer close(snaps)
		api.ReadSnapshots(resp.Body, func(s api.Snapshot) bool {
			select {
			case snaps <- s:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()
	first := <-snaps
	if len(first.Tables) == 0 || first.Tables[0].Name != "cluster" || first.Status.NodeID != "n1" {
		t.Fatalf("first event: node %q, %d tables", first.Status.NodeID, len(first.Tables))
	}
	if n := bucketsOf(first.Tables[0], "n2"); n == 0 {
		t.Fatalf("n2 owns no buckets before the drain")
	}

	// The page in a browser inside the client namespace.
	b, err := browser.Start([]string{"ip", "netns", "exec", lab.Namespace("client")}, 1280, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	started := time.Now()
	if err := b.Open(ctx, lab.AdminURL(1)); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitFor(ctx, `document.querySelectorAll('div.intervals i.seg').length > 0 && document.querySelectorAll('#members tbody tr').length === 3`, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("the page drew n1's tables %v after the browser started", time.Since(started).Round(time.Millisecond))
	var want api.Ranges
	if err := api.Get(lab.SocketPath("n1"), api.PathRanges, &want); err != nil {
		t.Fatal(err)
	}
	dom, err := b.DOM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, tables, hashes := domCheck(t, dom)
	for _, id := range l.NodeIDs() {
		if rows[id] == 0 {
			t.Errorf("the page shows %s with %d buckets (row present: %v)", id, rows[id], rows != nil)
		}
	}
	if tables["cluster"] == nil {
		t.Fatalf("no cluster table in the page")
	}
	wantOwners := map[string]int{}
	for _, iv := range want.Intervals {
		wantOwners[iv.Owner] += iv.To - iv.From + 1
	}
	if hashes["cluster"] != want.TableHash {
		t.Errorf("the page draws table %s, n1 runs %s", hashes["cluster"], want.TableHash)
	}
	for id, n := range wantOwners {
		if tables["cluster"][id] != n {
			t.Errorf("the page draws %s with %d buckets, n1's table has %d", id, tables["cluster"][id], n)
		}
	}
	shot := filepath.Join(t.ArtifactDir(), "n1-status-page.png")
	if err := b.Screenshot(ctx, shot); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)

	// Drain n2 through its TCP admin API, with the token.
	if code, body := adminReq(t, hc, "POST", 2, api.PathDrain, `{"on": true}`, token); code != 200 {
		t.Fatalf("POST /v1/drain with the token: %d %s", code, body)
	}
	drained := time.Now()
	var seen api.Snapshot
	for s := range snaps {
		if len(s.Tables) > 0 && len(s.Tables[0].Runs) > 0 && bucketsOf(s.Tables[0], "n2") == 0 {
			seen = s
			break
		}
	}
	if seen.Seq == 0 {
		t.Fatalf("the event stream ended before a snapshot showed n2 without buckets")
	}
	t.Logf("event %d showed n2 with 0 buckets %v after the drain (table %s)", seen.Seq, time.Since(drained).Round(time.Millisecond), seen.Tables[0].TableHash)
	for _, m := range seen.Status.Members {
		if m.ID == "n2" && m.Buckets != 0 {
			t.Errorf("event %d: n2's member row says %d buckets", seen.Seq, m.Buckets)
		}
	}

	// The open page redraws from its own stream, without a reload.
	if err := b.WaitFor(ctx, `(() => { const r = document.querySelector('#members tr[data-member="n2"]'); return !!r && r.dataset.buckets === "0" && !document.querySelector('div.intervals i.seg[data-owner="n2"]'); })()`, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Logf("the page redrew n2 with no buckets %v after the drain", time.Since(drained).Round(time.Millisecond))
	if dom, err = b.DOM(ctx); err != nil {
		t.Fatal(err)
	}
	rows, tables, _ = domCheck(t, dom)
	if _, ok := rows["n2"]; !ok || rows["n2"] != 0 || tables["cluster"]["n2"] != 0 {
		t.Errorf("after the drain the page shows n2 with %d buckets in its row (present %v) and %d in the bar", rows["n2"], ok, tables["cluster"]["n2"])
	}
	if tables["cluster"]["n1"]+tables["cluster"]["n3"] != 65536 {
		t.Errorf("after the drain n1 and n3 hold %d buckets in the bar", tables["cluster"]["n1"]+tables["cluster"]["n3"])
	}
	if err := b.Screenshot(ctx, filepath.Join(t.ArtifactDir(), "n1-status-page-n2-drained.png")); err != nil {
		t.Fatal(err)
	}

	// A fresh load (chromium --dump-dom, serialised at the load event)
	// draws the same from the snapshot the page arrives with.
	dom, err = browser.DumpDOM(ctx, []string{"ip", "netns", "exec", lab.Namespace("client")}, lab.AdminURL(1))
	if err != nil {
		t.Fatal(err)
	}
	rows, tables, _ = domCheck(t, dom)
	if len(rows) != 3 || rows["n2"] != 0 || tables["cluster"]["n2"] != 0 || rows["n1"] == 0 || rows["n3"] == 0 {
		t.Errorf("--dump-dom after the drain: rows %v, bar %v", rows, tables["cluster"])
	}
}

// bucketsOf adds up id's runs in a table view.
func bucketsOf(v api.TableView, id string) int {
	n := 0
	for _, r := range v.Runs {
		if r[0] < len(v.Owners) && v.Owners[r[0]] == id {
			n += r[1]
		}
	}
	return n
}
