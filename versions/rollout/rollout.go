package rollout

import (
	"hash/fnv"
	"sort"
	"strconv"

	"github.com/shoal-lb/shoal/versions/table"
)

// Member is one member of the publication's group as this node sees it.
type Member struct {
	ID      string
	Alive   bool // in the gossip membership
	Serving bool // healthy and serving in the cluster table (clients can be sent to it)
}

// Kind is the step a node should take next.
type Kind int

// Steps.
const (
	Nothing         Kind = iota // the row is right as it is
	StartUpdating               // write own row state updating (serve nothing for the path)
	Fetch                       // get the object into the store from Sources, then write {version, sha256, updating, holds}
	Publish                     // switch the store to the version and write the row available at it
	MarkUnavailable             // write own row state unavailable (stale after the threshold)
)

func (k Kind) String() string {
	return [...]string{"nothing", "start_updating", "fetch", "publish", "mark_unavailable"}[k]
}

// Action is Plan's answer.
type Action struct {
	Kind    Kind
	Version uint64
	SHA256  [32]byte
	// KeepServing (Fetch): this node is the last available server of the
	// group; it keeps its row available at the old version while it
	// fetches, then publishes and writes the row available at the new
	// version in one step.
	KeepServing bool
	// Sources (Fetch): nodes holding the object, the holders among alive
	// members first (in an order spread by self), then the publisher.
	Sources []string
	// Source (Nothing): this node published the object and is not in the
	// group: keep it in the store for the others.
	Source bool
	Round  int    // this node's round in the order, -1 outside the group
	Why    string // one line for logs and status
}

// Order returns the alive members' IDs in rollout order: FNV-1a 64 over
// "path|version|id" ascending, ties by ID. Frozen: every node must derive
// the same order.
func Order(pub table.Publication, members []Member) []string {
	type keyed struct {
		id string
		h  uint64
	}
	var ks []keyed
	for _, m := range members {
		if m.Alive {
			h := fnv.New64a()
			h.Write([]byte(pub.Path + "|" + strconv.FormatUint(pub.Version, 10) + "|" + m.ID))
			ks = append(ks, keyed{m.ID, h.Sum64()})
		}
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].h != ks[j].h {
			return ks[i].h < ks[j].h
		}
		return ks[i].id < ks[j].id
	})
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.id
	}
	return out
}

// Done reports whether a row is available at pub's version (same sha256)
// or a newer one.
func Done(pub table.Publication, r table.Row) bool {
	return r.State == table.Available && (r.Version > pub.Version || r.Version == pub.Version && r.SHA256 == pub.SHA256)
}

// Threshold returns the share of the alive members that are serving and
// done, and whether it reached pub.Threshold percent. No alive member:
// not reached.
func Threshold(pub table.Publication, members []Member, rows map[string]table.Row) (reached bool, share float64) {
	alive, done := 0, 0
	for _, m := range members {
		if !m.Alive {
			continue
		}
		alive++
		if r, ok := rows[m.ID]; ok && m.Serving && Done(pub, r) {
			done++
		}
	}
	if alive == 0 {
		return false, 0
	}
	return done*100 >= pub.Threshold*alive, float64(done) / float64(alive)
}

// Plan returns self's next step for pub (see the package documentation).
func Plan(pub table.Publication, members []Member, rows map[string]table.Row, self string) Action {
	a := Action{Version: pub.Version, SHA256: pub.SHA256, Round: -1}
	order := Order(pub, members)
	idx := -1
	for i, id := range order {
		if id == self {
			idx = i
		}
	}
	if idx < 0 {
		a.Source = self == pub.Publisher
		a.Why = "not an alive member of group " + pub.Group
		return a
	}
	batch := max(pub.Batch, 1)
	a.Round = idx / batch
	r := rows[self]
	switch {
	case Done(pub, r):
		a.Why = "serving the version"
		return a
	case r.Version == pub.Version && r.SHA256 == pub.SHA256 && r.Holds:
		a.Kind, a.Why = Publish, "holds the version: switch to it"
		return a
	case r.State == table.Updating:
		a.Kind, a.Sources, a.Why = Fetch, sources(pub, members, rows, self), "updating: fetch the version"
		return a
	}
	// The first round with an unfinished member is the one whose turn it is.
	frontier := -1
	for i, id := range order {
		if !Done(pub, rows[id]) {
			frontier = i / batch
			break
		}
	}
	if a.Round <= frontier {
		// Our turn. Are we the last server standing?
		serving := map[string]bool{}
		for _, m := range members {
			serving[m.ID] = m.Alive && m.Serving
		}
		keeper := ""
		outside := false // an available server that is not about to update
		for i, id := range order {
			if !serving[id] || rows[id].State != table.Available {
				continue
			}
			if i/batch == frontier && !Done(pub, rows[id]) {
				if keeper == "" {
					keeper = id
				}
			} else {
				outside = true
			}
		}
		if r.State == table.Available && !outside && keeper == self {
			a.Kind, a.KeepServing, a.Sources = Fetch, true, sources(pub, members, rows, self)
			a.Why = "turn, and the last available server: keep serving while fetching"
			return a
		}
		a.Kind, a.Why = StartUpdating, "turn: round "+strconv.Itoa(a.Round)
		return a
	}
	if reached, _ := Threshold(pub, members, rows); reached && r.State == table.Available {
		a.Kind, a.Why = MarkUnavailable, "threshold reached: stale until updated"
		return a
	}
	a.Why = "waiting for round " + strconv.Itoa(frontier)
	return a
}

// sources lists the nodes holding pub's object: alive members whose row
// holds it, ordered by FNV-1a of self and the node (so fetchers spread
// over holders), then the publisher if not among them.
func sources(pub table.Publication, members []Member, rows map[string]table.Row, self string) []string {
	type keyed struct {
		id string
		h  uint64
	}
	var ks []keyed
	for _, m := range members {
		r := rows[m.ID]
		if m.Alive && m.ID != self && m.ID != pub.Publisher && r.Holds && r.Version == pub.Version && r.SHA256 == pub.SHA256 {
			h := fnv.New64a()
			h.Write([]byte(self + "|" + m.ID))
			ks = append(ks, keyed{m.ID, h.Sum64()})
		}
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].h < ks[j].h || ks[i].h == ks[j].h && ks[i].id < ks[j].id })
	var out []string
	for _, k := range ks {
		out = append(out, k.id)
	}
	if pub.Publisher != self {
		out = append(out, pub.Publisher)
	}
	return out
}
