package table

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Wire format constants (see the package documentation).
const (
	WireVersion = 1

	kindPub   = 1
	kindRow   = 2
	kindState = 3

	headerSize = 4

	// MaxDeltaSize bounds one delta message: the largest publication (a
	// MaxPathLen path, 32-byte group and publisher) is 1155 bytes, below
	// memberlist's ~1360 bytes per encrypted broadcast.
	MaxDeltaSize = 1200
	// MaxStateSize bounds a full state (push/pull): about 40 000 rows.
	MaxStateSize = 4 << 20
)

// Reasons a remote message is refused, for counters (Stats.Rejected).
const (
	ReasonMagic     = "magic"     // not an update table message
	ReasonVersion   = "version"   // a format version this code does not read
	ReasonKind      = "kind"      // an unknown message kind
	ReasonTruncated = "truncated" // the message ends inside a field
	ReasonOversize  = "oversize"  // a message or a length beyond the bounds
	ReasonInvalid   = "invalid"   // a field out of range (ValidPath, Validate)
	ReasonTrailing  = "trailing"  // bytes after the last field
)

// Reasons lists every refusal reason, to pre-register counters.
var Reasons = []string{ReasonMagic, ReasonVersion, ReasonKind, ReasonTruncated, ReasonOversize, ReasonInvalid, ReasonTrailing}

// WireError is a refused message: the reason (for counters) and the field.
type WireError struct {
	Reason string
	Field  string
	Detail string
}

func (e *WireError) Error() string {
	s := "versions table wire: " + e.Reason
	if e.Field != "" {
		s += ": " + e.Field
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func reasonOf(err error) string {
	var we *WireError
	if errors.As(err, &we) {
		return we.Reason
	}
	return ReasonInvalid
}

func header(kind byte) []byte { return []byte{'V', 'T', WireVersion, kind} }

func appendStr8(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }
func appendStr16(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}
func appendU64(b []byte, v uint64) []byte      { return binary.BigEndian.AppendUint64(b, v) }
func appendPub(b []byte, p Publication) []byte { return appendPubBody(appendStr16(b, p.Path), p) }
func appendRow(b []byte, r Row) []byte {
	return appendRowBody(appendStr8(appendStr16(b, r.Path), r.Node), r)
}

func appendPubBody(b []byte, p Publication) []byte {
	b = appendU64(b, p.Version)
	b = append(b, p.SHA256[:]...)
	b = appendU64(b, uint64(p.Size))
	b = appendStr8(b, p.Group)
	b = append(b, byte(p.Threshold))
	b = binary.BigEndian.AppendUint16(b, uint16(p.Batch))
	b = appendStr8(b, p.Publisher)
	return appendU64(b, uint64(p.Stamp))
}

func appendRowBody(b []byte, r Row) []byte {
	b = appendU64(b, r.Version)
	b = append(b, r.SHA256[:]...)
	b = append(b, byte(r.State))
	if r.Holds {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return appendU64(b, r.Gen)
}

// EncodePub returns p as a delta message. p must be valid (Validate).
func EncodePub(p Publication) []byte { return appendPub(header(kindPub), p) }

// EncodeRow returns r as a delta message. r must be valid (Validate).
func EncodeRow(r Row) []byte { return appendRow(header(kindRow), r) }

// EncodeState encodes a whole table, paths in byte order and rows in node
// order, so equal tables encode to equal bytes. It fails when the result
// would exceed MaxStateSize.
func EncodeState(s Snapshot) ([]byte, error) {
	paths := map[string]bool{}
	for p := range s.Pubs {
		paths[p] = true
	}
	for p, m := range s.Rows {
		if len(m) > 0 {
			paths[p] = true
		}
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	b := binary.BigEndian.AppendUint32(header(kindState), uint32(len(sorted)))
	for i, path := range sorted {
		b = appendStr16(b, path)
		if pub, ok := s.Pubs[path]; ok {
			b = appendPubBody(append(b, 1), pub)
		} else {
			b = append(b, 0)
		}
		m := s.Rows[path]
		if len(m) > 0xffff {
			return nil, fmt.Errorf("versions table: %d rows for %s, more than 65535", len(m), path)
		}
		nodes := make([]string, 0, len(m))
		for n := range m {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		b = binary.BigEndian.AppendUint16(b, uint16(len(nodes)))
		for _, n := range nodes {
			b = appendRowBody(appendStr8(b, n), m[n])
		}
		if len(b) > MaxStateSize {
			return nil, fmt.Errorf("versions table: full state exceeds %d bytes at path %d of %d", MaxStateSize, i+1, len(sorted))
		}
	}
	return b, nil
}

// reader decodes fields, remembering the first error with its field name.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(reason, field, format string, args ...any) {
	if r.err == nil {
		r.err = &WireError{Reason: reason, Field: field, Detail: fmt.Sprintf(format, args...)}
	}
}

func (r *reader) take(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail(ReasonTruncated, field, "needs %d bytes, %d left", n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(field string) byte {
	if v := r.take(1, field); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16(field string) uint16 {
	if v := r.take(2, field); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if v := r.take(4, field); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if v := r.take(8, field); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) str(n int, max int, field string) string {
	if r.err == nil && n > max {
		r.fail(ReasonOversize, field, "%d bytes, at most %d", n, max)
	}
	return string(r.take(n, field))
}

func (r *reader) str8(max int, field string) string { return r.str(int(r.u8(field)), max, field) }
func (r *reader) str16(max int, field string) string {
	return r.str(int(r.u16(field)), max, field)
}

func (r *reader) pubBody(path string) Publication {
	p := Publication{Path: path}
	p.Version = r.u64("publication.version")
	copy(p.SHA256[:], r.take(32, "publication.sha256"))
	p.Size = int64(r.u64("publication.size"))
	p.Group = r.str8(MaxGroupLen, "publication.group")
	p.Threshold = int(r.u8("publication.threshold"))
	p.Batch = int(r.u16("publication.batch"))
	p.Publisher = r.str8(MaxNodeLen, "publication.publisher")
	p.Stamp = int64(r.u64("publication.stamp"))
	r.valid(p.Validate)
	return p
}

func (r *reader) rowBody(path, node string) Row {
	w := Row{Path: path, Node: node}
	w.Version = r.u64("row.version")
	copy(w.SHA256[:], r.take(32, "row.sha256"))
	w.State = State(r.u8("row.state"))
	switch h := r.u8("row.holds"); h {
	case 0, 1:
		w.Holds = h == 1
	default:
		r.fail(ReasonInvalid, "row.holds", "%d is not 0 or 1", h)
	}
	w.Gen = r.u64("row.gen")
	r.valid(w.Validate)
	return w
}

func (r *reader) valid(f func() error) {
	if r.err != nil {
		return
	}
	if err := f(); err != nil {
		r.fail(ReasonInvalid, "", "%v", err)
	}
}

func (r *reader) header(max int) byte {
	if len(r.b) > max {
		r.fail(ReasonOversize, "message", "%d bytes, at most %d", len(r.b), max)
		return 0
	}
	h := r.take(headerSize, "header")
	if h == nil {
		return 0
	}
	if h[0] != 'V' || h[1] != 'T' {
		r.fail(ReasonMagic, "header", "starts %#x %#x, not 'V' 'T'", h[0], h[1])
	} else if h[2] != WireVersion {
		r.fail(ReasonVersion, "header", "format version %d, this build reads %d", h[2], WireVersion)
	}
	return h[3]
}

func (r *reader) end() {
	if r.err == nil && len(r.b) > 0 {
		r.fail(ReasonTrailing, "message", "%d bytes after the last field", len(r.b))
	}
}

// DecodeDelta decodes one delta message: exactly one publication or one
// row, validated. Errors are *WireError naming the field.
func DecodeDelta(buf []byte) ([]Publication, []Row, error) {
	r := &reader{b: buf}
	kind := r.header(MaxDeltaSize)
	var pubs []Publication
	var rows []Row
	if r.err == nil {
		switch kind {
		case kindPub:
			path := r.str16(MaxPathLen, "publication.path")
			pubs = append(pubs, r.pubBody(path))
		case kindRow:
			path := r.str16(MaxPathLen, "row.path")
			node := r.str8(MaxNodeLen, "row.node")
			rows = append(rows, r.rowBody(path, node))
		default:
			r.fail(ReasonKind, "header", "kind %d is not a delta (1 publication, 2 row)", kind)
		}
	}
	r.end()
	if r.err != nil {
		return nil, nil, r.err
	}
	return pubs, rows, nil
}

// DecodeState decodes a full state, validated whole. Paths must be in
// strictly increasing byte order and rows in strictly increasing node
// order (the canonical encoding), so a state has one encoding.
func DecodeState(buf []byte) (Snapshot, error) {
	r := &reader{b: buf}
	kind := r.header(MaxStateSize)
	if r.err == nil && kind != kindState {
		r.fail(ReasonKind, "header", "kind %d is not a full state (3)", kind)
	}
	s := Snapshot{Pubs: map[string]Publication{}, Rows: map[string]map[string]Row{}}
	n := r.u32("state.paths")
	// The smallest path entry is 6 bytes; refuse counts the buffer cannot hold.
	if r.err == nil && uint64(n)*6 > uint64(len(r.b)) {
		r.fail(ReasonTruncated, "state.paths", "%d paths cannot fit in %d bytes", n, len(r.b))
	}
	prev := ""
	for i := uint32(0); i < n && r.err == nil; i++ {
		path := r.str16(MaxPathLen, "state.path")
		if r.err == nil {
			if err := ValidPath(path); err != nil {
				r.fail(ReasonInvalid, "state.path", "%v", err)
			} else if i > 0 && path <= prev {
				r.fail(ReasonInvalid, "state.path", "%q after %q: paths must be sorted and unique", path, prev)
			}
		}
		prev = path
		switch f := r.u8("state.flags"); f {
		case 0:
		case 1:
			s.Pubs[path] = r.pubBody(path)
		default:
			r.fail(ReasonInvalid, "state.flags", "%#x at path %q", f, path)
		}
		nrows := int(r.u16("state.rows"))
		prevNode := ""
		for j := 0; j < nrows && r.err == nil; j++ {
			node := r.str8(MaxNodeLen, "row.node")
			if r.err == nil && j > 0 && node <= prevNode {
				r.fail(ReasonInvalid, "row.node", "%q after %q at path %q: nodes must be sorted and unique", node, prevNode, path)
			}
			prevNode = node
			w := r.rowBody(path, node)
			if r.err == nil {
				if s.Rows[path] == nil {
					s.Rows[path] = map[string]Row{}
				}
				s.Rows[path][node] = w
			}
		}
		if r.err == nil && nrows == 0 && s.Pubs[path] == (Publication{}) {
			r.fail(ReasonInvalid, "state.rows", "path %q has neither a publication nor rows", path)
		}
	}
	r.end()
	if r.err != nil {
		return Snapshot{}, r.err
	}
	return s, nil
}
