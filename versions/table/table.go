package table

import (
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"time"
)

// State is a node's serving state for the version in its row.
type State uint8

// Serving states.
const (
	Available   State = 1 // serves the row's version to clients
	Updating    State = 2 // fetching or switching; serves nothing for the path
	Unavailable State = 3 // stale after the threshold, or holds nothing
)

func (s State) String() string {
	switch s {
	case Available:
		return "available"
	case Updating:
		return "updating"
	case Unavailable:
		return "unavailable"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Bounds of the model. They keep a delta within one memberlist broadcast.
const (
	MaxPathLen   = 1024
	MaxNodeLen   = 32
	MaxGroupLen  = 32
	MinThreshold = 5
	MaxThreshold = 95
	MaxBatch     = 1024
)

// Publication says which version of a path the cluster should serve.
type Publication struct {
	Path      string
	Version   uint64
	SHA256    [32]byte
	Size      int64
	Group     string
	Threshold int // percent, MinThreshold..MaxThreshold
	Batch     int // members updating at once, 1..MaxBatch
	Publisher string
	Stamp     int64 // unix nanoseconds, informational
}

// Row is one node's word about one path.
type Row struct {
	Path    string
	Node    string
	Version uint64 // 0: the node has no version of the path
	SHA256  [32]byte
	State   State
	Holds   bool   // the object of Version is verified in the node's store and served to peers
	Gen     uint64 // the owning node's counter, +1 per change
}

var (
	nodePattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	groupPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)
)

// ValidPath reports why p is not a content path, or nil.
func ValidPath(p string) error {
	if len(p) == 0 || p[0] != '/' {
		return fmt.Errorf("path %q must start with '/'", p)
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("path is %d bytes, more than %d", len(p), MaxPathLen)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return fmt.Errorf("path %q has a control byte at %d", p, i)
		}
	}
	return nil
}

// Validate reports the first field of p that is out of range, naming it.
func (p Publication) Validate() error {
	switch {
	case ValidPath(p.Path) != nil:
		return fmt.Errorf("publication.path: %v", ValidPath(p.Path))
	case p.Version == 0:
		return fmt.Errorf("publication.version: must be >= 1 (path %s)", p.Path)
	case p.SHA256 == [32]byte{}:
		return fmt.Errorf("publication.sha256: zero (path %s)", p.Path)
	case p.Size < 0:
		return fmt.Errorf("publication.size: %d is negative (path %s)", p.Size, p.Path)
	case !groupPattern.MatchString(p.Group):
		return fmt.Errorf("publication.group: %q must be 1-32 letters, digits, '-', '_' or '.'", p.Group)
	case p.Threshold < MinThreshold || p.Threshold > MaxThreshold:
		return fmt.Errorf("publication.threshold: %d outside %d..%d percent", p.Threshold, MinThreshold, MaxThreshold)
	case p.Batch < 1 || p.Batch > MaxBatch:
		return fmt.Errorf("publication.batch: %d outside 1..%d", p.Batch, MaxBatch)
	case !nodePattern.MatchString(p.Publisher):
		return fmt.Errorf("publication.publisher: %q is not a node ID", p.Publisher)
	}
	return nil
}

// Validate reports the first field of r that is out of range, naming it.
func (r Row) Validate() error {
	switch {
	case ValidPath(r.Path) != nil:
		return fmt.Errorf("row.path: %v", ValidPath(r.Path))
	case !nodePattern.MatchString(r.Node):
		return fmt.Errorf("row.node: %q is not a node ID", r.Node)
	case r.State < Available || r.State > Unavailable:
		return fmt.Errorf("row.state: %d is not available (1), updating (2) or unavailable (3)", uint8(r.State))
	case r.Gen == 0:
		return fmt.Errorf("row.gen: must be >= 1 (node %s, path %s)", r.Node, r.Path)
	case r.Version == 0 && (r.SHA256 != [32]byte{} || r.Holds || r.State == Available):
		return fmt.Errorf("row.version: 0 (no version) with a sha256, holds or state available (node %s, path %s)", r.Node, r.Path)
	case r.Version > 0 && r.SHA256 == [32]byte{}:
		return fmt.Errorf("row.sha256: zero for version %d (node %s, path %s)", r.Version, r.Node, r.Path)
	}
	return nil
}

// pubWins reports whether a replaces b: greater (version, sha256), then
// greater encoding, so the order is total and every node agrees.
func pubWins(a, b Publication) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	if c := bytes.Compare(a.SHA256[:], b.SHA256[:]); c != 0 {
		return c > 0
	}
	return bytes.Compare(appendPub(nil, a), appendPub(nil, b)) > 0
}

// rowWins reports whether a replaces b: higher gen, then greater encoding.
func rowWins(a, b Row) bool {
	if a.Gen != b.Gen {
		return a.Gen > b.Gen
	}
	return bytes.Compare(appendRow(nil, a), appendRow(nil, b)) > 0
}

// sameWord: equal rows apart from gen.
func sameWord(a, b Row) bool {
	a.Gen, b.Gen = 0, 0
	return a == b
}

// Change is one accepted change: a publication or a row.
type Change struct {
	Pub *Publication // set for a publication
	Row *Row         // set for a row
}

// Key names what the change replaces: "p<path>" or "r<node>\x00<path>".
func (c Change) Key() string {
	if c.Pub != nil {
		return "p" + c.Pub.Path
	}
	return "r" + c.Row.Node + "\x00" + c.Row.Path
}

// Encode returns the change as a delta message.
func (c Change) Encode() []byte {
	if c.Pub != nil {
		return EncodePub(*c.Pub)
	}
	return EncodeRow(*c.Row)
}

// Stats are a table's counters.
type Stats struct {
	Paths, Rows   int
	Accepted      uint64            // remote publications and rows that replaced ours
	Stale         uint64            // remote publications and rows that lost (duplicates, older)
	Reasserted    uint64            // own rows rewritten over a higher gen from an earlier life
	Rejected      map[string]uint64 // bad remote messages by reason (Reasons)
	StateOversize uint64            // full states not sent because they exceeded MaxStateSize
}

// Table is the update table of one node. It is safe for concurrent use.
type Table struct {
	self string
	now  func() time.Time

	mu                                    sync.Mutex
	pubs                                  map[string]Publication
	rows                                  map[string]map[string]Row // path → node → row
	asserted                              map[string]bool           // paths whose own row was written in this life
	watch                                 []func(Change)
	accepted, stale, reasserted, oversize uint64
	rejected                              map[string]uint64

	subsMu sync.Mutex
	subs   []chan struct{}
}

// New returns an empty table for node self.
func New(self string) (*Table, error) {
	if !nodePattern.MatchString(self) {
		return nil, fmt.Errorf("versions table: self %q is not a node ID", self)
	}
	return &Table{
		self: self, now: time.Now,
		pubs: map[string]Publication{}, rows: map[string]map[string]Row{},
		asserted: map[string]bool{}, rejected: map[string]uint64{},
	}, nil
}

// Self returns this node's ID.
func (t *Table) Self() string { return t.self }

// highest returns the highest version the table knows for path. t.mu held.
func (t *Table) highest(path string) uint64 {
	h := t.pubs[path].Version
	for _, r := range t.rows[path] {
		h = max(h, r.Version)
	}
	return h
}

// SetPublication publishes p locally. Publisher defaults to this node,
// Stamp to now, Version to 1 + the highest version known for the path. It
// returns the stored publication, or an error naming the field or the
// newer publication it would lose to; on error nothing changes.
func (t *Table) SetPublication(p Publication) (Publication, error) {
	if p.Publisher == "" {
		p.Publisher = t.self
	}
	if p.Stamp == 0 {
		p.Stamp = t.now().UnixNano()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.Version == 0 && ValidPath(p.Path) == nil {
		p.Version = t.highest(p.Path) + 1
	}
	if err := p.Validate(); err != nil {
		return Publication{}, err
	}
	if old, ok := t.pubs[p.Path]; ok && !pubWins(p, old) {
		return Publication{}, fmt.Errorf("publication.version: %d of %s does not supersede the published version %d", p.Version, p.Path, old.Version)
	}
	t.pubs[p.Path] = p
	t.changed(Change{Pub: &p})
	return p, nil
}

// SetOwnRow writes this node's row for path: Node and Path are set from
// the table and path, Gen to one above the row's last gen. Writing the
// row it already has changes nothing (and returns it).
func (t *Table) SetOwnRow(path string, r Row) (Row, error) {
	r.Path, r.Node = path, t.self
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had := t.rows[path][t.self]
	r.Gen = old.Gen + 1
	if err := r.Validate(); err != nil {
		return Row{}, err
	}
	t.asserted[path] = true
	if had && sameWord(r, old) {
		return old, nil
	}
	t.putRow(r)
	t.changed(Change{Row: &r})
	return r, nil
}

func (t *Table) putRow(r Row) {
	m := t.rows[r.Path]
	if m == nil {
		m = map[string]Row{}
		t.rows[r.Path] = m
	}
	m[r.Node] = r
}

// Merge merges remote publications and rows under the rules of the
// package documentation and returns how many replaced what the table had.
// Everything is validated first: on error nothing is merged.
func (t *Table) Merge(pubs []Publication, rows []Row) (int, error) {
	for _, p := range pubs {
		if err := p.Validate(); err != nil {
			return 0, err
		}
	}
	for _, r := range rows {
		if err := r.Validate(); err != nil {
			return 0, err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range pubs {
		if old, ok := t.pubs[p.Path]; ok && !pubWins(p, old) {
			t.stale++
			continue
		}
		t.pubs[p.Path] = p
		t.accepted++
		n++
		t.changed(Change{Pub: &p})
	}
	for _, r := range rows {
		old, had := t.rows[r.Path][r.Node]
		if had && !rowWins(r, old) {
			t.stale++
			continue
		}
		if r.Node == t.self && t.asserted[r.Path] && had && !sameWord(r, old) {
			// Our own word from an earlier life outranks what we wrote in
			// this one: say the current word again, above it.
			old.Gen = r.Gen + 1
			t.putRow(old)
			t.reasserted++
			n++
			t.changed(Change{Row: &old})
			continue
		}
		t.putRow(r)
		t.accepted++
		n++
		t.changed(Change{Row: &r})
	}
	return n, nil
}

// changed tells watchers (under t.mu, so they see changes in order) and
// wakes subscribers.
func (t *Table) changed(c Change) {
	for _, w := range t.watch {
		w(c)
	}
	t.subsMu.Lock()
	for _, ch := range t.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	t.subsMu.Unlock()
}

// Watch registers f to be called with every accepted change, local or
// remote, in the order the table applied them. f runs with the table
// locked: it must not block or call the table (the Gossip adapter only
// queues a broadcast).
func (t *Table) Watch(f func(Change)) {
	t.mu.Lock()
	t.watch = append(t.watch, f)
	t.mu.Unlock()
}

// Subscribe returns a channel that receives a value after any change.
// Notifications coalesce (room for one, a send never blocks), so a reader
// re-reads the table after each receive.
func (t *Table) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	t.subsMu.Lock()
	t.subs = append(t.subs, ch)
	t.subsMu.Unlock()
	return ch
}

// Publication returns the path's publication.
func (t *Table) Publication(path string) (Publication, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pubs[path]
	return p, ok
}

// Rows returns a copy of the path's rows by node.
func (t *Table) Rows(path string) map[string]Row {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]Row, len(t.rows[path]))
	for n, r := range t.rows[path] {
		out[n] = r
	}
	return out
}

// Content returns the path's publication and rows; ok is false when the
// path is not published. It is what handoff/route reads.
func (t *Table) Content(path string) (Publication, map[string]Row, bool) {
	t.mu.Lock()
	p, ok := t.pubs[path]
	t.mu.Unlock()
	if !ok {
		return Publication{}, nil, false
	}
	return p, t.Rows(path), true
}

// Paths returns every path with a publication or a row, sorted.
func (t *Table) Paths() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pathsLocked()
}

func (t *Table) pathsLocked() []string {
	var out []string
	for p := range t.pubs {
		out = append(out, p)
	}
	for p := range t.rows {
		if _, ok := t.pubs[p]; !ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// Snapshot is a copy of a whole table.
type Snapshot struct {
	Pubs map[string]Publication
	Rows map[string]map[string]Row
}

// Snapshot returns a copy of the table.
func (t *Table) Snapshot() Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Snapshot{Pubs: make(map[string]Publication, len(t.pubs)), Rows: make(map[string]map[string]Row, len(t.rows))}
	for p, pub := range t.pubs {
		s.Pubs[p] = pub
	}
	for p, m := range t.rows {
		c := make(map[string]Row, len(m))
		for n, r := range m {
			c[n] = r
		}
		s.Rows[p] = c
	}
	return s
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{Paths: len(t.pathsLocked()), Accepted: t.accepted, Stale: t.stale,
		Reasserted: t.reasserted, StateOversize: t.oversize, Rejected: map[string]uint64{}}
	for _, m := range t.rows {
		s.Rows += len(m)
	}
	for _, r := range Reasons {
		s.Rejected[r] = t.rejected[r]
	}
	return s
}

// MergeDelta decodes and merges one delta message from a peer. A bad
// message is counted by reason and changes nothing.
func (t *Table) MergeDelta(buf []byte) error {
	pubs, rows, err := DecodeDelta(buf)
	if err == nil {
		_, err = t.Merge(pubs, rows)
		if err != nil {
			err = &WireError{Reason: ReasonInvalid, Detail: err.Error()}
		}
	}
	t.reject(err)
	return err
}

// MergeState decodes and merges a full state from a peer (push/pull). A
// bad state is counted by reason and changes nothing.
func (t *Table) MergeState(buf []byte) error {
	s, err := DecodeState(buf)
	if err == nil {
		var pubs []Publication
		var rows []Row
		for _, p := range s.Pubs {
			pubs = append(pubs, p)
		}
		for _, m := range s.Rows {
			for _, r := range m {
				rows = append(rows, r)
			}
		}
		_, err = t.Merge(pubs, rows)
		if err != nil {
			err = &WireError{Reason: ReasonInvalid, Detail: err.Error()}
		}
	}
	t.reject(err)
	return err
}

func (t *Table) reject(err error) {
	if err == nil {
		return
	}
	t.mu.Lock()
	t.rejected[reasonOf(err)]++
	t.mu.Unlock()
}

// EncodeState encodes the whole table (for push/pull).
func (t *Table) EncodeState() ([]byte, error) {
	b, err := EncodeState(t.Snapshot())
	if err != nil {
		t.mu.Lock()
		t.oversize++
		t.mu.Unlock()
	}
	return b, err
}
