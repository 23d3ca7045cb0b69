package route

import (
	"net/netip"
	"strings"

	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/wire"
	"github.com/shoal-lb/shoal/versions/table"
)

// Request is what the front server knows of a connection before deciding.
type Request struct {
	TLS         bool
	Path        string        // HTTP: the cleaned path (peek.HTTPHead.Path); "" on TLS
	Host        string        // HTTP Host without port, or the TLS SNI
	Cookies     []peek.Cookie // HTTP
	SessionNode string        // node named by a TLS ticket tag (tickets.NodeOf), "" if none
	Client      netip.AddrPort
}

// View is the cluster as the decision sees it: the group tables and the
// health of nodes. Implementations return immutable snapshots.
type View interface {
	groups.Chooser                        // Destination(group, connValue) (node, ok)
	Members(group string) []groups.Member // the group's members (Availability > 0 = serving)
	Healthy(node string) bool             // alive and serving (in the cluster table)
}

// Contents is the part of a View that reads the update table
// (versions/table.Table.Content has this method). A View that also
// implements it gets version-aware decisions (rule 2 of the package
// documentation); one that does not decides as before. rows are by node
// and must not be modified.
type Contents interface {
	Content(path string) (pub table.Publication, rows map[string]table.Row, ok bool)
}

// Config is this node's part of the decision.
type Config struct {
	Self          string
	Groups        []groups.Group
	SessionCookie string // "" = no cookie sessions
}

// Decision says who serves a connection.
type Decision struct {
	Node   string      // who serves; == Config.Self means local
	Local  bool        // Node == Config.Self
	Group  string      // "" when no rule matched (every node serves it)
	Reason wire.Reason // ReasonGroup or ReasonSession when !Local, 0 when Local
	// NoMember: a group matched but no healthy member serves it, so this
	// node serves it anyway (the caller counts these as "no_member").
	NoMember bool
}

// Decide applies the rules of the package documentation.
func Decide(c Config, v View, r Request) Decision {
	var names []string
	for _, ck := range r.Cookies {
		names = append(names, ck.Name)
	}
	group, _ := groups.MatchHost(c.Groups, r.Host, r.Path, names)

	session := r.SessionNode
	cookie, hasCookie := "", false
	if c.SessionCookie != "" {
		for _, ck := range r.Cookies {
			if ck.Name == c.SessionCookie {
				cookie, hasCookie = ck.Value, true
				break
			}
		}
	}
	if hasCookie {
		if node, _, ok := SessionNode(cookie); ok {
			session = node
		}
	}
	value := ConnValue(r.Client)
	if hasCookie && cookie != "" {
		value = hash32([]byte(cookie))
	}
	if cv, ok := v.(Contents); ok && !r.TLS && r.Path != "" {
		if pub, rows, ok := cv.Content(r.Path); ok {
			if d, ok := byVersion(c, v, pub, rows, session, value); ok {
				return d
			}
		}
	}
	if session != "" && v.Healthy(session) && (group == "" || serving(v.Members(group), session)) {
		return decision(c.Self, session, group, wire.ReasonSession)
	}
	if group == "" {
		return Decision{Node: c.Self, Local: true}
	}

	members := v.Members(group)
	node, ok := v.Destination(group, value)
	if !ok || !v.Healthy(node) || !serving(members, node) {
		node, ok = rendezvous(v, members, value)
	}
	if !ok {
		return Decision{Node: c.Self, Local: true, Group: group, NoMember: true}
	}
	return decision(c.Self, node, group, wire.ReasonGroup)
}

// byVersion is the decision for a published path: among the healthy
// serving members of the publication's group whose row is available, those
// with the highest version, then the session node if it is one of them,
// else the group policy. ok is false when there is no such member.
func byVersion(c Config, v View, pub table.Publication, rows map[string]table.Row, session string, value uint32) (Decision, bool) {
	members := v.Members(pub.Group)
	var cands []groups.Member
	best := uint64(0)
	selfMember, selfCand := false, false
	for _, m := range members {
		selfMember = selfMember || m.ID == c.Self
		r, ok := rows[m.ID]
		if !ok || r.State != table.Available || m.Availability <= 0 || !v.Healthy(m.ID) {
			continue
		}
		if r.Version > best {
			best, cands = r.Version, cands[:0]
		}
		if r.Version == best {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return Decision{}, false
	}
	for _, m := range cands {
		selfCand = selfCand || m.ID == c.Self
		if m.ID == session {
			return decision(c.Self, session, pub.Group, wire.ReasonSession), true
		}
	}
	// Every candidate serves the same bytes: a candidate that holds the
	// connection serves it (no move buys anything); the cluster table
	// already spread connections by capacity.
	if selfCand {
		return Decision{Node: c.Self, Local: true, Group: pub.Group}, true
	}
	var node string
	if policyOf(c.Groups, pub.Group) == groups.ByAvailability {
		bestAv := 0.0
		for _, m := range cands { // sorted by ID: ties go to the first
			if m.Availability > bestAv {
				node, bestAv = m.ID, m.Availability
			}
		}
	} else {
		node, _ = rendezvous(v, cands, value)
	}
	reason := wire.ReasonGroup
	if selfMember && !selfCand {
		reason = wire.ReasonVersion
	}
	return decision(c.Self, node, pub.Group, reason), true
}

func policyOf(defs []groups.Group, group string) groups.Policy {
	for _, g := range defs {
		if g.Name == group {
			return g.Policy
		}
	}
	return groups.ByHash
}

func decision(self, node, group string, reason wire.Reason) Decision {
	if node == self {
		return Decision{Node: self, Local: true, Group: group}
	}
	return Decision{Node: node, Group: group, Reason: reason}
}

// serving says whether node is a member of the group with Availability > 0.
func serving(ms []groups.Member, node string) bool {
	for _, m := range ms {
		if m.ID == node {
			return m.Availability > 0
		}
	}
	return false
}

// rendezvous picks, among the healthy serving members, the one with the
// highest hash of (value, ID): deterministic for a value, and a member
// that goes away moves only its own share.
func rendezvous(v View, ms []groups.Member, value uint32) (string, bool) {
	best, bestH := "", uint32(0)
	for _, m := range ms {
		if m.Availability <= 0 || !v.Healthy(m.ID) {
			continue
		}
		b := []byte{byte(value >> 24), byte(value >> 16), byte(value >> 8), byte(value)}
		h := hash32(append(b, m.ID...))
		if best == "" || h > bestH || (h == bestH && m.ID < best) {
			best, bestH = m.ID, h
		}
	}
	return best, best != ""
}

// ConnValue is the stable hash of a client's address and port that picks
// its member in a group table (frozen; see the package documentation).
func ConnValue(client netip.AddrPort) uint32 {
	a := client.Addr().Unmap().As16()
	p := client.Port()
	return hash32(append(a[:], byte(p>>8), byte(p)))
}

// hash32 is FNV-1a 32 finished with murmur3's fmix32, so that the low 16
// bits the group tables use depend on every input byte.
func hash32(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// SessionNode splits a session cookie value "<node>~<app value>" at its
// first '~'. ok is false when there is no '~' or the part before it is not
// a node ID (1-32 letters, digits, '-', '_'): such a value was not set
// through shoal and names no node.
func SessionNode(value string) (node, appValue string, ok bool) {
	i := strings.IndexByte(value, '~')
	if i < 1 || i > 32 {
		return "", "", false
	}
	for j := 0; j < i; j++ {
		c := value[j]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", "", false
		}
	}
	return value[:i], value[i+1:], true
}

// PrefixSessionValue is the value a client is given for an upstream's
// session cookie: "<node>~<app value>". node must be a node ID.
func PrefixSessionValue(node, appValue string) string {
	return node + "~" + appValue
}
