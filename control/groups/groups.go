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
	Policy  Policy   `yaml:"policy" json:"policy"`
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
		if len(g.Paths) == 0 && len(g.Cookies) == 0 {
			return fmt.Errorf("%s: group %q has no paths and no cookies: it would match nothing", f, g.Name)
		}
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
		switch g.Policy {
		case "", ByHash, ByAvailability:
		default:
			return fmt.Errorf("%s.policy: %q must be hash or availability", f, g.Policy)
		}
	}
	return nil
}

// Match returns the group of a request: a cookie rule first (a session
// overrides content), then the first group whose path glob matches, in
// definition order.
func Match(gs []Group, reqPath string, cookies []string) (string, bool) {
	for _, g := range gs {
		for _, want := range g.Cookies {
			for _, c := range cookies {
				if c == want {
					return g.Name, true
				}
			}
		}
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
