package groups

import (
	"encoding/binary"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/shoal-lb/shoal/control/ranges"
)

// Policy picks a destination inside a group.
type Policy string

const (
	// ByHash uses the group's range table: the member owning the
	// bucket of the connection value (sticky for a client tuple, spread
	// in proportion to availability).
	ByHash Policy = "hash"
	// ByAvailability picks the member with the highest availability.
	ByAvailability Policy = "availability"
)

// Group is one group's definition.
type Group struct {
	Name string `yaml:"name" json:"name"`
	// Paths are globs matched against the request path: "*.cgi" matches
	// the last path element, "/video/*" the whole path (path.Match rules).
	Paths []string `yaml:"paths" json:"paths,omitempty"`
	// Cookies: a request carrying any of these cookies belongs here
	// (persistent sessions).
	Cookies []string `yaml:"cookies" json:"cookies,omitempty"`
	// Hosts are globs matched case-insensitively against the host the
	// client named: the HTTP Host without its port, or the TLS SNI.
	// "*.example.com" matches "www.example.com" and "a.b.example.com" but
	// not "example.com" (path.Match rules; hosts have no '/').
	Hosts  []string `yaml:"hosts" json:"hosts,omitempty"`
	Policy Policy   `yaml:"policy" json:"policy"`
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

// Validate checks a set of definitions; errors name the field.
func Validate(gs []Group) error {
	seen := map[string]bool{}
	for i, g := range gs {
		f := fmt.Sprintf("groups[%d]", i)
		if !namePattern.MatchString(g.Name) {
			return fmt.Errorf("%s.name: %q must be 1-32 letters, digits, '.', '-' or '_'", f, g.Name)
		}
		if seen[g.Name] {
			return fmt.Errorf("%s.name: %q defined twice", f, g.Name)
		}
		seen[g.Name] = true
		for j, p := range g.Paths {
			if _, err := path.Match(p, "/x"); err != nil || p == "" {
				return fmt.Errorf("%s.paths[%d]: %q is not a valid glob", f, j, p)
			}
		}
		for j, c := range g.Cookies {
			if c == "" || strings.ContainsAny(c, "=; \t") {
				return fmt.Errorf("%s.cookies[%d]: %q is not a cookie name", f, j, c)
			}
		}
		for j, h := range g.Hosts {
			if err := validHostGlob(h); err != nil {
				return fmt.Errorf("%s.hosts[%d]: %q %v", f, j, h, err)
			}
		}
		switch g.Policy {
		case "", ByHash, ByAvailability:
		default:
			return fmt.Errorf("%s.policy: %q must be hash or availability", f, g.Policy)
		}
	}
	return nil
}

// hostGlobPattern: the characters of a host name (letters, digits, '-',
// '.', and '_' seen in the wild) plus the glob characters '*' and '?';
// no '[' classes, no '\' escapes.
var hostGlobPattern = regexp.MustCompile(`^[A-Za-z0-9*?_.-]{1,253}$`)

func validHostGlob(h string) error {
	switch {
	case h == "":
		return fmt.Errorf("is empty: a host glob names a host, e.g. \"*.example.com\"")
	case strings.Contains(h, ":"):
		return fmt.Errorf("has a ':': hosts match the host without its port (and IPv6 literals are not routed by host)")
	case !hostGlobPattern.MatchString(h):
		return fmt.Errorf("is not a host glob: only letters, digits, '-', '.', '_', '*' and '?' (at most 253)")
	}
	return nil // with only '*' and '?' as special characters, path.Match never fails
}

// Match returns the group of a request by its path and cookie names, for a
// request with no host; see MatchHost.
func Match(gs []Group, reqPath string, cookies []string) (string, bool) {
	return MatchHost(gs, "", reqPath, cookies)
}

// MatchHost returns the group of a request. Each kind of rule alone
// selects a group; the kinds are tried in this order, each over the groups
// in definition order:
//
//  1. cookies: a session overrides content;
//  2. hosts: a virtual host is a whole site, and the host is all a TLS
//     connection shows before its handshake, so a host rule wins over a
//     path rule and an HTTP request and an HTTPS connection to one host
//     land in one group;
//  3. paths, skipped when reqPath is "" (a TLS connection, or a CONNECT).
//
// host is the HTTP Host or the TLS SNI; a port and a trailing dot are
// ignored, case does not matter, and "" matches no host rule.
func MatchHost(gs []Group, host, reqPath string, cookies []string) (string, bool) {
	for _, g := range gs {
		for _, want := range g.Cookies {
			for _, c := range cookies {
				if c == want {
					return g.Name, true
				}
			}
		}
	}
	if h := NormalizeHost(host); h != "" {
		for _, g := range gs {
			for _, p := range g.Hosts {
				if ok, _ := path.Match(strings.ToLower(p), h); ok {
					return g.Name, true
				}
			}
		}
	}
	if reqPath == "" {
		return "", false
	}
	base := path.Base(reqPath)
	for _, g := range gs {
		for _, p := range g.Paths {
			target := reqPath
			if !strings.Contains(p, "/") {
				target = base
			}
			if ok, _ := path.Match(p, target); ok {
				return g.Name, true
			}
		}
	}
	return "", false
}

// NormalizeHost returns the host part of an HTTP Host value or an SNI in
// the form host rules match: lower case, without a port, without the
// trailing dot of a fully qualified name. An IPv6 literal keeps its
// brackets off ("[::1]:80" is "::1"); "" stays "".
func NormalizeHost(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	return strings.ToLower(host)
}

// Member is one node as the group tables see it.
type Member struct {
	ID           string
	Availability float64
	Groups       []string
}

// Seed is a group's table seed: FNV-1a 32 over the cluster seed (4 bytes,
// big endian) and the group name, so that groups spread independently.
func Seed(clusterSeed uint32, group string) uint32 {
	h := uint32(2166136261)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], clusterSeed)
	for _, c := range append(b[:], group...) {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// Tables are the group tables of one membership view. Immutable.
type Tables struct {
	version int
	defs    []Group
	tables  map[string]*ranges.Table
	members map[string][]Member // by group, sorted by ID
}

// Build computes every group's table with table algorithm version 1
// (BuildV with ranges.AlgoV1).
func Build(clusterSeed uint32, defs []Group, members []Member) (*Tables, error) {
	return BuildV(ranges.AlgoV1, clusterSeed, defs, members)
}

// BuildV computes every group's table from the members' memberships with
// the given table algorithm version (ranges.BuildV), the one the cluster
// table uses, so that every node agrees on group destinations as it agrees
// on buckets.
func BuildV(version int, clusterSeed uint32, defs []Group, members []Member) (*Tables, error) {
	if version < ranges.AlgoV1 || version > ranges.AlgoLatest {
		return nil, fmt.Errorf("groups: table algorithm version %d unknown: this build knows %d to %d", version, ranges.AlgoV1, ranges.AlgoLatest)
	}
	t := &Tables{version: version, defs: defs, tables: map[string]*ranges.Table{}, members: map[string][]Member{}}
	for _, g := range defs {
		var ms []ranges.Member
		var gm []Member
		for _, m := range members {
			for _, name := range m.Groups {
				if name == g.Name {
					ms = append(ms, ranges.Member{ID: m.ID, Weight: m.Availability})
					gm = append(gm, m)
					break
				}
			}
		}
		sort.Slice(gm, func(i, j int) bool { return gm[i].ID < gm[j].ID })
		tb, err := ranges.BuildV(version, Seed(clusterSeed, g.Name), ms)
		if err != nil {
			return nil, fmt.Errorf("group %q: %w", g.Name, err)
		}
		t.tables[g.Name], t.members[g.Name] = tb, gm
	}
	return t, nil
}

// Chooser is what the handoff layer needs: the node that should serve a
// connection of a group.
type Chooser interface {
	Destination(group string, connValue uint32) (nodeID string, ok bool)
}

// Destination applies the group's policy. ok is false for an unknown group
// or a group with no available member.
func (t *Tables) Destination(group string, connValue uint32) (string, bool) {
	var def *Group
	for i := range t.defs {
		if t.defs[i].Name == group {
			def = &t.defs[i]
		}
	}
	if def == nil {
		return "", false
	}
	if def.Policy == ByAvailability {
		best, bestAv := "", 0.0
		for _, m := range t.members[group] {
			if m.Availability > bestAv {
				best, bestAv = m.ID, m.Availability
			}
		}
		return best, best != ""
	}
	id := t.tables[group].OwnerOf(uint16(connValue))
	return id, id != ""
}

// Table returns one group's range table.
func (t *Tables) Table(group string) (*ranges.Table, bool) {
	tb, ok := t.tables[group]
	return tb, ok
}

// Members returns one group's members, sorted by ID.
func (t *Tables) Members(group string) []Member { return t.members[group] }

// Defs returns the definitions the tables were built from.
func (t *Tables) Defs() []Group { return t.defs }

// Version returns the table algorithm version the tables were built with.
func (t *Tables) Version() int { return t.version }
