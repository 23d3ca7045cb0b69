package route

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand"
	"net/netip"
	"testing"

	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// view is the in-repo fake of View: real group tables (groups.BuildV)
// and a health map, which may disagree with the tables as a stale view
// does.
type view struct {
	*groups.Tables
	healthy map[string]bool
}

func (v view) Healthy(node string) bool { return v.healthy[node] }

func build(t testing.TB, defs []groups.Group, ms []groups.Member, healthy ...string) view {
	t.Helper()
	tb, err := groups.BuildV(ranges.AlgoLatest, 42, defs, ms)
	if err != nil {
		t.Fatal(err)
	}
	v := view{Tables: tb, healthy: map[string]bool{}}
	for _, h := range healthy {
		v.healthy[h] = true
	}
	return v
}

var labDefs = []groups.Group{
	{Name: "html", Paths: []string{"*.html"}},
	{Name: "cgi", Paths: []string{"*.cgi", "/upload"}},
	{Name: "static", Hosts: []string{"*.static.test"}},
	{Name: "video", Paths: []string{"/video/*"}}, // nobody serves it
}

func labMembers() []groups.Member {
	return []groups.Member{
		{ID: "n1", Availability: 1, Groups: []string{"html", "static"}},
		{ID: "n2", Availability: 1, Groups: []string{"html", "cgi"}},
		{ID: "n3", Availability: 1, Groups: []string{"cgi"}},
	}
}

const cookieName = "shoal_session"

func client(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), uint16(40000+i))
}

// clientTo finds a client the group table sends to want.
func clientTo(t *testing.T, v View, group, want string) netip.AddrPort {
	for i := 0; i < 1<<16; i++ {
		if d, _ := v.Destination(group, ConnValue(client(i))); d == want {
			return client(i)
		}
	}
	t.Fatalf("no client maps to %s in %s", want, group)
	return netip.AddrPort{}
}

func cookies(v string) []peek.Cookie {
	return []peek.Cookie{{Name: "lang", Value: "en"}, {Name: cookieName, Value: v}}
}

// TestDecideRules: one case per rule of the package documentation.
func TestDecideRules(t *testing.T) {
	all := build(t, labDefs, labMembers(), "n1", "n2", "n3")
	n3dead := build(t, labDefs, labMembers(), "n1", "n2") // tables still hold n3
	n2drained := func() view {
		ms := labMembers()
		ms[1].Availability = 0
		return build(t, labDefs, ms, "n1", "n2", "n3")
	}()
	cfg := func(self string) Config { return Config{Self: self, Groups: labDefs, SessionCookie: cookieName} }
	toN3 := clientTo(t, all, "cgi", "n3")
	toN2 := clientTo(t, all, "cgi", "n2")
	cookieToN3 := ""
	for i := 0; cookieToN3 == ""; i++ {
		if d, _ := all.Destination("cgi", hash32([]byte(fmt.Sprintf("app%d", i)))); d == "n3" {
			cookieToN3 = fmt.Sprintf("app%d", i)
		}
	}
	for _, c := range []struct {
		name string
		cfg  Config
		v    View
		r    Request
		want Decision
	}{
		{"no group: local", cfg("n3"), all, Request{Path: "/x.png", Client: toN3},
			Decision{Node: "n3", Local: true}},
		{"no group, session cookie names a healthy node", cfg("n1"), all, Request{Path: "/x.png", Cookies: cookies("n2~abc")},
			Decision{Node: "n2", Reason: wire.ReasonSession}},
		{"no group, session cookie names a dead node: local", cfg("n1"), n3dead, Request{Path: "/x.png", Cookies: cookies("n3~abc")},
			Decision{Node: "n1", Local: true}},
		{"no group, session names self", cfg("n2"), all, Request{Path: "/x.png", Cookies: cookies("n2~abc")},
			Decision{Node: "n2", Local: true}},
		{"session cookie ignored without http.session_cookie", Config{Self: "n1", Groups: labDefs}, all, Request{Path: "/x.png", Cookies: cookies("n2~abc")},
			Decision{Node: "n1", Local: true}},
		{"group, session node a member", cfg("n1"), all, Request{Path: "/app.cgi", Cookies: cookies("n3~abc"), Client: toN2},
			Decision{Node: "n3", Group: "cgi", Reason: wire.ReasonSession}},
		{"group, session node not a member: table by cookie", cfg("n2"), all, Request{Path: "/app.cgi", Cookies: cookies(cookieToN3), Client: toN2},
			Decision{Node: "n3", Group: "cgi", Reason: wire.ReasonGroup}},
		{"group, session node dead: cookie value hashed, stale owner replaced", cfg("n1"), n3dead, Request{Path: "/app.cgi", Cookies: cookies("n3~abc"), Client: toN3},
			Decision{Node: "n2", Group: "cgi", Reason: wire.ReasonGroup}},
		{"group, session node drained (availability 0)", cfg("n1"), n2drained, Request{Path: "/app.cgi", Cookies: cookies("n2~abc"), Client: toN2},
			Decision{Node: "n3", Group: "cgi", Reason: wire.ReasonGroup}},
		{"group by client: member hands off to member", cfg("n2"), all, Request{Path: "/app.cgi", Client: toN3},
			Decision{Node: "n3", Group: "cgi", Reason: wire.ReasonGroup}},
		{"group by client: local member", cfg("n2"), all, Request{Path: "/upload", Client: toN2},
			Decision{Node: "n2", Local: true, Group: "cgi"}},
		{"group by client: non-member", cfg("n1"), all, Request{Path: "/app.cgi", Client: toN2},
			Decision{Node: "n2", Group: "cgi", Reason: wire.ReasonGroup}},
		{"stale table owner dead: the remaining member", cfg("n1"), n3dead, Request{Path: "/app.cgi", Client: toN3},
			Decision{Node: "n2", Group: "cgi", Reason: wire.ReasonGroup}},
		{"empty session cookie: hashed by client", cfg("n1"), all, Request{Path: "/app.cgi", Cookies: cookies(""), Client: toN3},
			Decision{Node: "n3", Group: "cgi", Reason: wire.ReasonGroup}},
		{"no member: local, counted", cfg("n2"), all, Request{Path: "/video/a.mp4", Client: toN3},
			Decision{Node: "n2", Local: true, Group: "video", NoMember: true}},
		{"no healthy member: local, counted", cfg("n1"), build(t, labDefs, labMembers(), "n1"), Request{Path: "/app.cgi", Client: toN3},
			Decision{Node: "n1", Local: true, Group: "cgi", NoMember: true}},
		{"TLS: SNI group", cfg("n3"), all, Request{TLS: true, Host: "www.static.test", Client: toN3},
			Decision{Node: "n1", Group: "static", Reason: wire.ReasonGroup}},
		{"TLS: ticket node, no group", cfg("n1"), all, Request{TLS: true, SessionNode: "n3"},
			Decision{Node: "n3", Reason: wire.ReasonSession}},
		{"TLS: ticket node a member of the SNI group", cfg("n3"), all, Request{TLS: true, Host: "A.Static.Test", SessionNode: "n1"},
			Decision{Node: "n1", Group: "static", Reason: wire.ReasonSession}},
		{"TLS: ticket node not a member of the SNI group", cfg("n1"), all, Request{TLS: true, Host: "a.static.test", SessionNode: "n2"},
			Decision{Node: "n1", Local: true, Group: "static"}},
		{"TLS: ticket node dead", cfg("n1"), n3dead, Request{TLS: true, SessionNode: "n3"},
			Decision{Node: "n1", Local: true}},
		{"TLS: no SNI, no ticket: path rules do not apply", cfg("n1"), all, Request{TLS: true},
			Decision{Node: "n1", Local: true}},
		{"malformed prefix names no node", cfg("n1"), all, Request{Path: "/x.png", Cookies: cookies("~n2")},
			Decision{Node: "n1", Local: true}},
		{"unknown node in prefix", cfg("n1"), all, Request{Path: "/x.png", Cookies: cookies("n9~a")},
			Decision{Node: "n1", Local: true}},
	} {
		if got := Decide(c.cfg, c.v, c.r); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestHashesFrozen holds ConnValue and the cookie hash to their documented
// definition, written here with the standard library's FNV.
func TestHashesFrozen(t *testing.T) {
	fmix := func(h uint32) uint32 {
		h ^= h >> 16
		h *= 0x85ebca6b
		h ^= h >> 13
		h *= 0xc2b2ae35
		return h ^ h>>16
	}
	for _, s := range []string{"198.18.0.7:40001", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:9"} {
		ap := netip.MustParseAddrPort(s)
		f := fnv.New32a()
		a := ap.Addr().Unmap().As16()
		f.Write(a[:])
		f.Write([]byte{byte(ap.Port() >> 8), byte(ap.Port())})
		if got, want := ConnValue(ap), fmix(f.Sum32()); got != want {
			t.Errorf("ConnValue(%s) = %#x, want %#x", s, got, want)
		}
	}
	if ConnValue(netip.MustParseAddrPort("10.0.0.1:9")) != ConnValue(netip.MustParseAddrPort("[::ffff:10.0.0.1]:9")) {
		t.Error("an IPv4 client and its mapped form hash apart")
	}
	f := fnv.New32a()
	f.Write([]byte("n1~abc"))
	if got, want := hash32([]byte("n1~abc")), fmix(f.Sum32()); got != want {
		t.Errorf("cookie hash %#x, want %#x", got, want)
	}
}

// TestDecideProperties: over random memberships, availabilities, health
// views (including tables older than the health view) and requests, the
// destination is this node or a Healthy serving member of the matched
// group (a session with no group may go to any Healthy node), and
// NoMember is set exactly when the group has no Healthy serving member.
func TestDecideProperties(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	nodes := []string{"n1", "n2", "n3", "n4", "n5"}
	paths := []string{"/a.html", "/b.cgi", "/upload", "/video/x", "/x.png", "/"}
	hosts := []string{"", "www.static.test", "example.com"}
	for round := 0; round < 300; round++ {
		var ms []groups.Member
		var healthy []string
		for _, n := range nodes {
			if rng.Intn(5) == 0 {
				continue // not in the tables at all
			}
			m := groups.Member{ID: n, Availability: float64(rng.Intn(4))}
			for _, g := range labDefs {
				if rng.Intn(2) == 0 {
					m.Groups = append(m.Groups, g.Name)
				}
			}
			ms = append(ms, m)
		}
		for _, n := range nodes {
			if rng.Intn(4) != 0 {
				healthy = append(healthy, n)
			}
		}
		v := build(t, labDefs, ms, healthy...)
		self := nodes[rng.Intn(len(nodes))]
		cfg := Config{Self: self, Groups: labDefs, SessionCookie: cookieName}
		for i := 0; i < 200; i++ {
			r := Request{Path: paths[rng.Intn(len(paths))], Host: hosts[rng.Intn(len(hosts))], Client: client(rng.Intn(1 << 16))}
			switch rng.Intn(4) {
			case 0:
				r.Cookies = cookies(PrefixSessionValue(nodes[rng.Intn(len(nodes))], fmt.Sprint(rng.Int())))
			case 1:
				r.Cookies = cookies(fmt.Sprint(rng.Int()))
			case 2:
				r.TLS, r.Path, r.SessionNode = true, "", nodes[rng.Intn(len(nodes))]
			}
			d := Decide(cfg, v, r)
			if d.Local != (d.Node == self) || (d.Local && d.Reason != 0) || (!d.Local && d.Reason == 0) {
				t.Fatalf("%+v: inconsistent decision %+v at %s", r, d, self)
			}
			var names []string
			for _, c := range r.Cookies {
				names = append(names, c.Name)
			}
			group, _ := groups.MatchHost(labDefs, r.Host, r.Path, names)
			if d.Group != group {
				t.Fatalf("%+v: group %q, want %q", r, d.Group, group)
			}
			anyServing := false
			for _, m := range v.Members(group) {
				anyServing = anyServing || (m.Availability > 0 && v.Healthy(m.ID))
			}
			if d.NoMember != (group != "" && !anyServing) || (d.NoMember && !d.Local) {
				t.Fatalf("%+v: NoMember %v, group %q has a serving member: %v", r, d.NoMember, group, anyServing)
			}
			if d.Local {
				continue
			}
			if !v.Healthy(d.Node) {
				t.Fatalf("%+v: destination %s is not healthy (%v)", r, d.Node, healthy)
			}
			if group == "" && d.Reason != wire.ReasonSession {
				t.Fatalf("%+v: no group but moved for %v", r, d.Reason)
			}
			if group != "" && !serving(v.Members(group), d.Node) {
				t.Fatalf("%+v: destination %s does not serve %s: %+v", r, d.Node, group, v.Members(group))
			}
		}
	}
}

// TestOneCookieOneNode: a session cookie that names no usable node (no
// prefix, or a dead node) lands on one node whichever client sends it and
// whichever node accepts it.
func TestOneCookieOneNode(t *testing.T) {
	v := build(t, labDefs, labMembers(), "n1", "n2") // n3 dead, tables stale
	rng := rand.New(rand.NewSource(2))
	spread := map[string]int{}
	for k := 0; k < 200; k++ {
		value := fmt.Sprintf("%x", rng.Int63())
		if k%2 == 1 {
			value = PrefixSessionValue("n3", value)
		}
		where := ""
		for i := 0; i < 50; i++ {
			self := []string{"n1", "n2", "n3"}[i%3]
			d := Decide(Config{Self: self, Groups: labDefs, SessionCookie: cookieName}, v,
				Request{Path: "/app.cgi", Cookies: cookies(value), Client: client(rng.Intn(1 << 16))})
			if where == "" {
				where = d.Node
			}
			if d.Node != where {
				t.Fatalf("cookie %q: served by %s and %s", value, where, d.Node)
			}
		}
		spread[where]++
	}
	if spread["n2"] != 200 {
		t.Fatalf("with n3 dead every cgi cookie belongs on n2: %v", spread)
	}
	// With every node healthy, cookies spread over both cgi members.
	v = build(t, labDefs, labMembers(), "n1", "n2", "n3")
	spread = map[string]int{}
	for k := 0; k < 2000; k++ {
		d := Decide(Config{Self: "n1", Groups: labDefs, SessionCookie: cookieName}, v,
			Request{Path: "/app.cgi", Cookies: cookies(fmt.Sprint(k)), Client: client(k)})
		spread[d.Node]++
	}
	if math.Abs(float64(spread["n2"])/2000-0.5) > 0.05 || spread["n2"]+spread["n3"] != 2000 {
		t.Fatalf("cookies spread %v, want about 1000 each on n2 and n3", spread)
	}
}

// TestLabShares: the lab's groups preset (html={n1,n2}, cgi={n2,n3}, equal
// availability) with connections accepted evenly by n1, n2 and n3: a node
// outside the group hands off everything, a member half, so 2/3 of the
// group's requests move (the lab check asks for at least a third), and
// the group's members serve equal shares.
func TestLabShares(t *testing.T) {
	defs := []groups.Group{{Name: "html", Paths: []string{"*.html"}}, {Name: "cgi", Paths: []string{"*.cgi", "/upload"}}}
	ms := []groups.Member{
		{ID: "n1", Availability: 1, Groups: []string{"html"}},
		{ID: "n2", Availability: 1, Groups: []string{"html", "cgi"}},
		{ID: "n3", Availability: 1, Groups: []string{"cgi"}},
	}
	rng := rand.New(rand.NewSource(3))
	for _, c := range []struct {
		path    string
		members [2]string
		atNode  map[string]float64 // expected share of remote decisions where accepted
	}{
		{"/app.cgi", [2]string{"n2", "n3"}, map[string]float64{"n1": 1, "n2": 0.5, "n3": 0.5}},
		{"/page.html", [2]string{"n1", "n2"}, map[string]float64{"n1": 0.5, "n2": 0.5, "n3": 1}},
	} {
		for _, version := range []int{ranges.AlgoV1, ranges.AlgoV2} {
			tb, err := groups.BuildV(version, 0x5eed, defs, ms)
			if err != nil {
				t.Fatal(err)
			}
			v := view{Tables: tb, healthy: map[string]bool{"n1": true, "n2": true, "n3": true}}
			const per = 20000
			remote, served := 0, map[string]int{}
			for _, self := range []string{"n1", "n2", "n3"} {
				moved := 0
				for i := 0; i < per; i++ {
					ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(rng.Intn(256)), byte(rng.Intn(256))}), uint16(1024+rng.Intn(64512)))
					d := Decide(Config{Self: self, Groups: defs}, v, Request{Path: c.path, Client: ap})
					if !d.Local {
						moved++
					}
					served[d.Node]++
				}
				share := float64(moved) / per
				if math.Abs(share-c.atNode[self]) > 0.02 {
					t.Errorf("%s v%d at %s: %.3f handed off, want %.2f", c.path, version, self, share, c.atNode[self])
				}
				remote += moved
			}
			total := float64(remote) / (3 * per)
			t.Logf("%s table v%d: %.3f of requests handed off (want 2/3); served %v", c.path, version, total, served)
			if math.Abs(total-2.0/3) > 0.02 {
				t.Errorf("%s v%d: %.3f handed off, want 2/3", c.path, version, total)
			}
			for _, m := range c.members {
				if math.Abs(float64(served[m])/(3*per)-0.5) > 0.02 {
					t.Errorf("%s v%d: %s served %d of %d, want half", c.path, version, m, served[m], 3*per)
				}
			}
		}
	}
}

func TestSessionCodec(t *testing.T) {
	for _, c := range []struct {
		value, node, app string
		ok               bool
	}{
		{"n1~abc", "n1", "abc", true},
		{"n1~", "n1", "", true},
		{"node_2-b~a~b", "node_2-b", "a~b", true},
		{"abc", "", "", false},
		{"~abc", "", "", false},
		{"n.1~abc", "", "", false},
		{"n 1~abc", "", "", false},
		{"abcdefghijabcdefghijabcdefghijab~x", "abcdefghijabcdefghijabcdefghijab", "x", true},
		{"abcdefghijabcdefghijabcdefghijabc~x", "", "", false},
		{"", "", "", false},
	} {
		node, app, ok := SessionNode(c.value)
		if node != c.node || app != c.app || ok != c.ok {
			t.Errorf("SessionNode(%q) = %q, %q, %v; want %q, %q, %v", c.value, node, app, ok, c.node, c.app, c.ok)
		}
	}
	if v := PrefixSessionValue("n2", "s3cr3t"); v != "n2~s3cr3t" {
		t.Errorf("PrefixSessionValue: %q", v)
	}
}
