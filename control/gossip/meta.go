package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/hashicorp/memberlist"
)

// Meta wire format versions. This code reads both and writes the oldest one
// that carries the meta's fields (see EncodeMeta).
const (
	// MetaVersion1 has no table algorithm field: its sender builds range
	// tables with algorithm version 1 only.
	MetaVersion1 uint8 = 1
	// MetaVersion2 appends the highest range-table algorithm version the
	// sender can build.
	MetaVersion2 uint8 = 2
	// MetaVersion is the newest version this code reads and writes.
	MetaVersion = MetaVersion2
)

// MaxCapacity bounds Capacity and Availability. It is far above any real
// node's weight, so a value beyond it is a bug or an attack, never a
// configuration: strict decoding rejects it and Sanitize clamps it.
const MaxCapacity = 1e6

// MetaMaxSize is the largest encoded meta, memberlist's limit for NodeMeta.
const MetaMaxSize = memberlist.MetaMaxSize

// maxField is the longest node ID, table hash or group name: each carries a
// one-byte length prefix.
const maxField = 255

// Health values. The empty string is read as HealthHealthy.
const (
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
	HealthDraining  = "draining"
)

var healthCodes = []string{HealthHealthy, HealthUnhealthy, HealthDraining}

// Meta is the versioned node metadata gossiped in memberlist's NodeMeta.
//
// Wire format, version 1 (all integers big-endian; at most MetaMaxSize = 512
// bytes; no trailing bytes allowed):
//
//	offset size  field
//	0      1     version = 1
//	1      8     epoch, uint64
//	9      8     capacity, IEEE-754 binary64 bits
//	17     8     availability, IEEE-754 binary64 bits
//	25     1     health: 0 healthy, 1 unhealthy, 2 draining
//	26     1+n   node ID: length n (1..255), then n bytes of UTF-8
//	..     1+n   table hash: length n (0..255), then n bytes of UTF-8
//	..     1     group count g (0..255)
//	..     g×    group: length n (1..255), then n bytes of UTF-8
//
// Version 2 is version 1 with the version byte 2 and one more byte at the
// end:
//
//	..     1     table algorithm: the highest range-table algorithm version
//	             the sender can build (1..255; control/ranges)
//
// A reader rejects a version it does not know rather than guessing, so a
// format change must bump the version. A version-1 meta says the sender
// builds algorithm 1 only. testdata/meta_v1.golden and meta_v2.golden pin
// both versions.
type Meta struct {
	// Version is the format version; 0 means the oldest one that carries
	// the fields (1 unless TableAlgorithm is above 1). Decoded metas hold
	// the version they arrived in.
	Version      uint8
	NodeID       string  // equals the memberlist node name
	Capacity     float64 // configured capacity (weight), 0..MaxCapacity
	Availability float64 // current available capacity, quantized by the sender, 0..Capacity
	Health       string  // HealthHealthy, HealthUnhealthy or HealthDraining; "" means healthy
	Groups       []string
	TableHash    string // hash of the range table the sender runs
	Epoch        uint64
	// TableAlgorithm is the highest range-table algorithm version the
	// sender can build; 0, as in every version-1 meta, means 1.
	TableAlgorithm uint8
}

// TableAlgorithmMax is the highest range-table algorithm version the sender
// can build: TableAlgorithm, or 1 when the meta predates the field.
func (m Meta) TableAlgorithmMax() int { return max(1, int(m.TableAlgorithm)) }

// wireVersion is the format EncodeMeta writes for m.
func wireVersion(m Meta) (uint8, error) {
	switch m.Version {
	case 0:
		if m.TableAlgorithm > 1 {
			return MetaVersion2, nil
		}
		return MetaVersion1, nil
	case MetaVersion1:
		if m.TableAlgorithm > 1 {
			return 0, metaErr(ReasonVersion, "meta version 1 cannot carry table algorithm %d; use version 2", m.TableAlgorithm)
		}
		return MetaVersion1, nil
	case MetaVersion2:
		return MetaVersion2, nil
	}
	return 0, metaErr(ReasonVersion, "cannot encode version %d; this code writes versions 1 and 2", m.Version)
}

// Reason names why a peer's meta was rejected or altered; Stats counts by it.
type Reason string

// Reasons for rejecting or clamping a meta.
const (
	ReasonVersion    Reason = "version"      // unknown or newer format version
	ReasonOversize   Reason = "oversize"     // longer than MetaMaxSize
	ReasonMalformed  Reason = "malformed"    // truncated, trailing bytes, bad UTF-8, bad lengths
	ReasonNotFinite  Reason = "not_finite"   // capacity or availability is NaN or ±Inf
	ReasonOutOfRange Reason = "out_of_range" // negative, above MaxCapacity, or availability above capacity
	ReasonHealth     Reason = "health"       // unknown health value
	ReasonNodeID     Reason = "node_id"      // meta node ID differs from the memberlist node name
	ReasonClamped    Reason = "clamped"      // accepted after Sanitize clamped a value
)

// MetaError is the error EncodeMeta, DecodeMeta and Sanitize return.
type MetaError struct {
	Reason Reason
	Detail string
}

func (e *MetaError) Error() string { return "gossip meta: " + e.Detail }

// Is lets errors.Is match any *MetaError with the same Reason.
func (e *MetaError) Is(target error) bool {
	t, ok := target.(*MetaError)
	return ok && t.Reason == e.Reason && t.Detail == ""
}

// ErrMetaVersion and its siblings match a *MetaError by reason with errors.Is.
var (
	ErrMetaVersion    = &MetaError{Reason: ReasonVersion}
	ErrMetaOversize   = &MetaError{Reason: ReasonOversize}
	ErrMetaMalformed  = &MetaError{Reason: ReasonMalformed}
	ErrMetaNotFinite  = &MetaError{Reason: ReasonNotFinite}
	ErrMetaOutOfRange = &MetaError{Reason: ReasonOutOfRange}
	ErrMetaHealth     = &MetaError{Reason: ReasonHealth}
)

func metaErr(r Reason, format string, args ...any) error {
	return &MetaError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// EncodeMeta encodes m. It refuses what a strict reader would reject, so a
// node never gossips a meta its peers drop. With Version 0 it writes the
// oldest format that carries m: version 1 unless TableAlgorithm is above 1,
// so a node held to table algorithm 1 (cluster.table_algorithm_max) stays
// readable by nodes that know only version 1, which is how a rolling
// upgrade starts (docs/protocol.md).
func EncodeMeta(m Meta) ([]byte, error) {
	v, err := wireVersion(m)
	if err != nil {
		return nil, err
	}
	m.Version = v
	if m.Version == MetaVersion2 && m.TableAlgorithm == 0 {
		m.TableAlgorithm = 1
	}
	if err := validate(m); err != nil {
		return nil, err
	}
	health := healthCode(m.Health)
	if health < 0 {
		return nil, metaErr(ReasonHealth, "unknown health %q (want healthy, unhealthy or draining)", m.Health)
	}
	if len(m.Groups) > maxField {
		return nil, metaErr(ReasonMalformed, "%d groups, at most %d fit", len(m.Groups), maxField)
	}
	b := make([]byte, 0, 64)
	b = append(b, m.Version)
	b = binary.BigEndian.AppendUint64(b, m.Epoch)
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(m.Capacity))
	b = binary.BigEndian.AppendUint64(b, math.Float64bits(m.Availability))
	b = append(b, byte(health))
	if b, err = appendField(b, "node ID", m.NodeID, 1); err != nil {
		return nil, err
	}
	if b, err = appendField(b, "table hash", m.TableHash, 0); err != nil {
		return nil, err
	}
	b = append(b, byte(len(m.Groups)))
	for i, g := range m.Groups {
		if b, err = appendField(b, fmt.Sprintf("group %d", i), g, 1); err != nil {
			return nil, err
		}
	}
	if m.Version == MetaVersion2 {
		b = append(b, m.TableAlgorithm)
	}
	if len(b) > MetaMaxSize {
		return nil, metaErr(ReasonOversize, "encoded meta is %d bytes, limit %d: fewer or shorter groups", len(b), MetaMaxSize)
	}
	return b, nil
}

func appendField(b []byte, name, s string, minLen int) ([]byte, error) {
	if len(s) < minLen || len(s) > maxField {
		return nil, metaErr(ReasonMalformed, "%s is %d bytes, want %d..%d", name, len(s), minLen, maxField)
	}
	if !utf8.ValidString(s) {
		return nil, metaErr(ReasonMalformed, "%s is not valid UTF-8", name)
	}
	b = append(b, byte(len(s)))
	return append(b, s...), nil
}

// DecodeMeta decodes and strictly validates a peer's meta. It rejects an
// unknown or newer version, oversize input, malformed fields, and NaN, ±Inf,
// negative or above-MaxCapacity capacity or availability. The caller counts
// the rejection (by MetaError.Reason) and ignores the peer.
func DecodeMeta(b []byte) (Meta, error) {
	m, err := parseMeta(b)
	if err != nil {
		return Meta{}, err
	}
	if err := validate(m); err != nil {
		return Meta{}, err
	}
	return m, nil
}

// DecodeMetaSanitized decodes a peer's meta and applies Sanitize instead of
// the strict range checks: out-of-range values are clamped (clamped reports
// it), NaN and ±Inf are still rejected. Gossip uses it for peers.
func DecodeMetaSanitized(b []byte) (m Meta, clamped bool, err error) {
	m, err = parseMeta(b)
	if err != nil {
		return Meta{}, false, err
	}
	return Sanitize(m)
}

// Sanitize applies the policy for out-of-range values received from a peer:
// negative capacity or availability becomes 0, values above MaxCapacity become
// MaxCapacity, and availability above capacity becomes capacity. NaN and ±Inf
// cannot be repaired and are rejected. clamped reports whether anything
// changed. Sanitize is deterministic, so every node that receives the same
// meta derives the same weights.
func Sanitize(m Meta) (out Meta, clamped bool, err error) {
	if bad(m.Capacity) || bad(m.Availability) {
		return Meta{}, false, metaErr(ReasonNotFinite, "node %q: capacity %v, availability %v: must be finite", m.NodeID, m.Capacity, m.Availability)
	}
	clamp := func(v, hi float64) float64 {
		switch {
		case v < 0:
			clamped = true
			return 0
		case v > hi:
			clamped = true
			return hi
		}
		return v
	}
	m.Capacity = clamp(m.Capacity, MaxCapacity)
	m.Availability = clamp(m.Availability, m.Capacity)
	if m.Health == "" {
		m.Health = HealthHealthy
	}
	if healthCode(m.Health) < 0 {
		return Meta{}, false, metaErr(ReasonHealth, "node %q: unknown health %q", m.NodeID, m.Health)
	}
	return m, clamped, nil
}

func bad(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }

// validate applies the strict value checks shared by encoder and decoder.
func validate(m Meta) error {
	if bad(m.Capacity) || bad(m.Availability) {
		return metaErr(ReasonNotFinite, "node %q: capacity %v, availability %v: must be finite", m.NodeID, m.Capacity, m.Availability)
	}
	if m.Capacity < 0 || m.Capacity > MaxCapacity {
		return metaErr(ReasonOutOfRange, "node %q: capacity %v outside 0..%g", m.NodeID, m.Capacity, float64(MaxCapacity))
	}
	if m.Availability < 0 || m.Availability > m.Capacity {
		return metaErr(ReasonOutOfRange, "node %q: availability %v outside 0..capacity (%v)", m.NodeID, m.Availability, m.Capacity)
	}
	if healthCode(m.Health) < 0 {
		return metaErr(ReasonHealth, "node %q: unknown health %q (want healthy, unhealthy or draining)", m.NodeID, m.Health)
	}
	return nil
}

func healthCode(h string) int {
	if h == "" {
		return 0
	}
	for i, s := range healthCodes {
		if s == h {
			return i
		}
	}
	return -1
}

// parseMeta checks size, version and structure, but not value ranges.
func parseMeta(b []byte) (Meta, error) {
	if len(b) > MetaMaxSize {
		return Meta{}, metaErr(ReasonOversize, "meta is %d bytes, limit %d", len(b), MetaMaxSize)
	}
	if len(b) == 0 {
		return Meta{}, metaErr(ReasonMalformed, "empty meta (peer is not a shoal node, or too old)")
	}
	if b[0] != MetaVersion1 && b[0] != MetaVersion2 {
		return Meta{}, metaErr(ReasonVersion, "peer speaks meta version %d, this node understands versions 1 and 2; upgrade this node", b[0])
	}
	const fixed = 26
	if len(b) < fixed {
		return Meta{}, metaErr(ReasonMalformed, "meta is %d bytes, shorter than the %d-byte header", len(b), fixed)
	}
	m := Meta{
		Version:      b[0],
		Epoch:        binary.BigEndian.Uint64(b[1:9]),
		Capacity:     math.Float64frombits(binary.BigEndian.Uint64(b[9:17])),
		Availability: math.Float64frombits(binary.BigEndian.Uint64(b[17:25])),
	}
	if int(b[25]) >= len(healthCodes) {
		return Meta{}, metaErr(ReasonHealth, "unknown health code %d", b[25])
	}
	m.Health = healthCodes[b[25]]
	r := reader{b: b, off: fixed}
	m.NodeID = r.field("node ID", 1)
	m.TableHash = r.field("table hash", 0)
	if n := int(r.byte("group count")); n > 0 {
		m.Groups = make([]string, 0, n)
		for i := range n {
			m.Groups = append(m.Groups, r.field(fmt.Sprintf("group %d", i), 1))
		}
	}
	if m.Version == MetaVersion2 {
		if m.TableAlgorithm = r.byte("table algorithm"); r.err == nil && m.TableAlgorithm == 0 {
			r.err = metaErr(ReasonMalformed, "table algorithm 0 in a version-2 meta (want 1..255)")
		}
	}
	if r.err == nil && r.off != len(b) {
		r.err = metaErr(ReasonMalformed, "%d trailing bytes after the last field", len(b)-r.off)
	}
	if r.err != nil {
		return Meta{}, r.err
	}
	return m, nil
}

// reader walks length-prefixed fields; the first error sticks.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) byte(name string) byte {
	if r.err != nil {
		return 0
	}
	if r.off >= len(r.b) {
		r.err = metaErr(ReasonMalformed, "truncated before %s", name)
		return 0
	}
	r.off++
	return r.b[r.off-1]
}

func (r *reader) field(name string, minLen int) string {
	n := int(r.byte(name))
	if r.err != nil {
		return ""
	}
	if n < minLen {
		r.err = metaErr(ReasonMalformed, "%s is empty", name)
		return ""
	}
	if r.off+n > len(r.b) {
		r.err = metaErr(ReasonMalformed, "%s truncated: %d bytes announced, %d left", name, n, len(r.b)-r.off)
		return ""
	}
	s := string(r.b[r.off : r.off+n])
	r.off += n
	if !utf8.ValidString(s) {
		r.err = metaErr(ReasonMalformed, "%s is not valid UTF-8", name)
		return ""
	}
	return s
}

// errorReason extracts the Reason of a meta error; other errors are malformed.
func errorReason(err error) Reason {
	var me *MetaError
	if errors.As(err, &me) {
		return me.Reason
	}
	return ReasonMalformed
}
