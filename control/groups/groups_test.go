package groups

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/control/ranges"
)

var defs = []Group{
	{Name: "sessions", Cookies: []string{"SESSIONID"}, Policy: ByHash},
	{Name: "cgi", Paths: []string{"*.cgi"}, Policy: ByAvailability},
	{Name: "video", Paths: []string{"/video/*"}},
	{Name: "html", Paths: []string{"*.html", "/"}},
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		path    string
		cookies []string
		want    string
	}{
		{"/a/b/run.cgi", nil, "cgi"},
		{"/index.html", nil, "html"},
		{"/", nil, "html"},
		{"/video/cat.mp4", nil, "video"},
		{"/index.html", []string{"lang", "SESSIONID"}, "sessions"},
		{"/img/x.png", nil, ""},
	} {
		got, ok := Match(defs, c.path, c.cookies)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%s %v: %q %v, want %q", c.path, c.cookies, got, ok, c.want)
		}
	}
}

// TestMatchHost: host rules match the Host or SNI case-insensitively,
// without port or trailing dot, after cookies and before paths; an empty
// host or path matches no rule of its kind.
func TestMatchHost(t *testing.T) {
	d := []Group{
		{Name: "sessions", Cookies: []string{"SESSIONID"}},
		{Name: "cgi", Paths: []string{"*.cgi"}},
		{Name: "static", Hosts: []string{"static.example.com", "*.cdn.example.com"}},
		{Name: "api", Hosts: []string{"api?.example.com"}, Paths: []string{"/api/*"}},
		{Name: "all", Paths: []string{"*"}},
	}
	for _, c := range []struct {
		host, path string
		cookies    []string
		want       string
	}{
		{"static.example.com", "/x.cgi", nil, "static"},                // host before path
		{"STATIC.Example.COM:8443", "/x.cgi", nil, "static"},           // case, port
		{"static.example.com.", "", nil, "static"},                     // FQDN dot; TLS: no path
		{"a.b.cdn.example.com", "/", nil, "static"},                    // '*' spans labels
		{"cdn.example.com", "/x.cgi", nil, "cgi"},                      // "*." needs a label
		{"static.example.com", "/", []string{"SESSIONID"}, "sessions"}, // cookie first
		{"api1.example.com", "", nil, "api"},
		{"api12.example.com", "/api/v", nil, "api"}, // no host match, path does
		{"www.example.com", "/x.cgi", nil, "cgi"},
		{"", "/x.cgi", nil, "cgi"},
		{"", "", nil, ""},                // TLS without SNI
		{"www.example.com", "", nil, ""}, // path rules need a path
		{"[::1]:80", "/p", nil, "all"},
		{"static.example.com.evil", "/p", nil, "all"},
	} {
		got, ok := MatchHost(d, c.host, c.path, c.cookies)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("host %q path %q cookies %v: %q %v, want %q", c.host, c.path, c.cookies, got, ok, c.want)
		}
	}
	if g, _ := Match(d, "/x.cgi", nil); g != "cgi" {
		t.Errorf("Match without host: %q", g)
	}
	for in, want := range map[string]string{"Example.COM": "example.com", "example.com:80": "example.com", "[2001:db8::1]:443": "2001:db8::1", "2001:db8::1": "2001:db8::1", "a.": "a", "": ""} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Validate(defs); err != nil {
		t.Fatal(err)
	}
	if err := Validate([]Group{{Name: "h", Hosts: []string{"*.Example.com", "a-b_c.example.com"}}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		host, field string
	}{
		{"", "groups[0].hosts[1]"},
		{"example.com:443", "groups[0].hosts[1]"},
		{"example.com/x", "groups[0].hosts[1]"},
		{"exa mple.com", "groups[0].hosts[1]"},
		{"[a-", "groups[0].hosts[1]"},
	} {
		err := Validate([]Group{{Name: "h", Hosts: []string{"ok.example.com", c.host}}})
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("host %q: %v, want an error naming %s", c.host, err, c.field)
		}
	}
	for _, bad := range [][]Group{
		{{Name: "a b", Paths: []string{"*"}}},
		{{Name: "a", Paths: []string{"*"}}, {Name: "a", Paths: []string{"*"}}},
		{{Name: "a", Paths: []string{"["}}},
		{{Name: "a", Cookies: []string{"x=y"}}},
		{{Name: "a", Paths: []string{"*"}, Policy: "random"}},
	} {
		if err := Validate(bad); err == nil || !strings.Contains(err.Error(), "groups[") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// TestGroupWithoutRules: a group with no rules matches no request by
// itself; it is a target for published content (every lab's group "all").
func TestGroupWithoutRules(t *testing.T) {
	gs := []Group{{Name: "all"}, {Name: "html", Paths: []string{"*.html"}}}
	if err := Validate(gs); err != nil {
		t.Fatal(err)
	}
	if g, ok := Match(gs, "/index.html", nil); !ok || g != "html" {
		t.Fatalf("Match = %q, %v; want html", g, ok)
	}
	if g, ok := Match(gs, "/x", nil); ok {
		t.Fatalf("Match = %q: a group without rules matched", g)
	}
}

func members() []Member {
	return []Member{
		{ID: "n1", Availability: 1, Groups: []string{"html", "cgi"}},
		{ID: "n2", Availability: 3, Groups: []string{"html"}},
		{ID: "n3", Availability: 2, Groups: []string{"cgi", "video", "sessions"}},
	}
}

func TestGroupTablesProportional(t *testing.T) {
	tb, err := Build(7, defs, members())
	if err != nil {
		t.Fatal(err)
	}
	html, _ := tb.Table("html")
	c := html.Count()
	if math.Abs(float64(c["n1"])/65536-0.25) > 0.01 || math.Abs(float64(c["n2"])/65536-0.75) > 0.01 || c["n3"] != 0 {
		t.Fatalf("html shares %v", c)
	}
	for v := uint32(0); v < 1000; v++ {
		id, ok := tb.Destination("html", v*7919)
		if !ok || id == "n3" {
			t.Fatalf("html destination %q", id)
		}
	}
	if id, _ := tb.Destination("cgi", 1); id != "n3" {
		t.Fatalf("cgi by availability: %s, want n3", id)
	}
	if _, ok := tb.Destination("nosuch", 1); ok {
		t.Fatal("unknown group answered")
	}
}

func TestGroupSeedsDiffer(t *testing.T) {
	ms := []Member{{ID: "a", Availability: 1, Groups: []string{"x", "y"}}, {ID: "b", Availability: 1, Groups: []string{"x", "y"}}}
	d := []Group{{Name: "x", Paths: []string{"*"}}, {Name: "y", Paths: []string{"*"}}}
	tb, _ := Build(1, d, ms)
	x, _ := tb.Table("x")
	y, _ := tb.Table("y")
	if x.Hash == y.Hash {
		t.Fatal("two groups with the same members share a table: seeds are not per group")
	}
	if fmt.Sprint(Seed(1, "x")) == fmt.Sprint(Seed(2, "x")) {
		t.Fatal("group seed ignores the cluster seed")
	}
}

// TestBuildVersion: group tables use the table algorithm version they are
// given; version 2 gives every member of a group its exact quota.
func TestBuildVersion(t *testing.T) {
	v1, err := Build(7, defs, members())
	if err != nil {
		t.Fatal(err)
	}
	v2, err := BuildV(ranges.AlgoV2, 7, defs, members())
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version() != ranges.AlgoV1 || v2.Version() != ranges.AlgoV2 {
		t.Fatalf("versions %d, %d", v1.Version(), v2.Version())
	}
	for _, g := range defs {
		a, _ := v1.Table(g.Name)
		b, _ := v2.Table(g.Name)
		if a.Algorithm != ranges.AlgoV1 || b.Algorithm != ranges.AlgoV2 || (len(v2.Members(g.Name)) > 0 && a.Hash == b.Hash) {
			t.Fatalf("group %s: tables v%d %s, v%d %s", g.Name, a.Algorithm, a.Hash, b.Algorithm, b.Hash)
		}
	}
	html, _ := v2.Table("html")
	if c := html.Count(); c["n1"] != ranges.Buckets/4 || c["n2"] != 3*ranges.Buckets/4 {
		t.Fatalf("html shares with version 2: %v, want exactly 1:3", c)
	}
	for _, d := range [][]Group{defs, nil} {
		if _, err := BuildV(9, 7, d, members()); err == nil || !strings.Contains(err.Error(), "version 9") {
			t.Fatalf("version 9, %d groups: err = %v", len(d), err)
		}
	}
}
