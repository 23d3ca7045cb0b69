package tickets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
)

// Format constants (see the package documentation).
const (
	Magic      = "SHT"
	Version    = 1
	MaxNodeLen = 32
	nonceLen   = 12
	overhead   = 16 // GCM tag
	label      = "shoal tls ticket v1"
)

// Keys derives and holds the ticket keys of the current, previous and next
// rotation periods. Safe for concurrent use.
type Keys struct {
	secret   []byte
	rotation time.Duration
	now      func() time.Time
	set      atomic.Pointer[keySet]
	stats    counters
}

// keySet is immutable: a change of period builds a new one.
type keySet struct {
	period uint32
	aead   [3]cipher.AEAD // periods period-1, period, period+1
}

// NewKeys returns the ticket keys of a cluster key (at least 16 bytes;
// config's gossip key is 16, 24 or 32: a shorter one is a programming
// error and panics). rotation is how long one key issues tickets
// (http.tls.ticket_rotation_sec); below one second it is one second. now
// is the clock (time.Now when nil).
func NewKeys(clusterKey []byte, rotation time.Duration, now func() time.Time) *Keys {
	if len(clusterKey) < 16 {
		panic(fmt.Sprintf("tickets: cluster key of %d bytes; want at least 16", len(clusterKey)))
	}
	if rotation < time.Second {
		rotation = time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &Keys{secret: append([]byte(nil), clusterKey...), rotation: rotation, now: now}
}

// Period returns the rotation period number at t.
func (k *Keys) Period(t time.Time) uint32 {
	return uint32(t.Unix() / int64(k.rotation/time.Second))
}

// derive returns the AEAD of one period.
func (k *Keys) derive(p uint32) cipher.AEAD {
	info := binary.BigEndian.AppendUint64([]byte(label), uint64(p))
	key, err := hkdf.Key(sha256.New, k.secret, nil, string(info), 32)
	if err != nil {
		panic("tickets: hkdf: " + err.Error()) // only for lengths beyond 255*32
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		panic("tickets: aes: " + err.Error())
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic("tickets: gcm: " + err.Error())
	}
	return g
}

// current returns the key set of the present period, deriving it (and
// keeping the keys it shares with the last one) when the period changed.
func (k *Keys) current() *keySet {
	p := k.Period(k.now())
	old := k.set.Load()
	if old != nil && old.period == p {
		return old
	}
	s := &keySet{period: p}
	for i := range s.aead {
		q := p + uint32(i) - 1
		if old != nil && q+1-old.period <= 2 { // q in old.period-1 .. old.period+1
			s.aead[i] = old.aead[q+1-old.period]
		} else {
			s.aead[i] = k.derive(q)
		}
	}
	k.set.Store(s) // a concurrent store of the same period is equivalent
	if old != nil {
		k.stats.rotations.Add(1)
	}
	return s
}

// Configure makes cfg issue tickets tagged with self and resume any
// ticket of this cluster's current, previous or next period: it sets
// cfg.WrapSession and cfg.UnwrapSession (crypto/tls then ignores its own
// ticket keys). self must be a node ID (1-32 letters, digits, '-', '_').
func (k *Keys) Configure(cfg *tls.Config, self string) {
	if !validNode(self) {
		panic(fmt.Sprintf("tickets: %q is not a node ID", self))
	}
	cfg.WrapSession = func(_ tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		return k.Wrap(self, ss)
	}
	cfg.UnwrapSession = func(identity []byte, _ tls.ConnectionState) (*tls.SessionState, error) {
		return k.Unwrap(identity), nil
	}
}

// Wrap seals a session into a ticket naming node.
func (k *Keys) Wrap(node string, ss *tls.SessionState) ([]byte, error) {
	state, err := ss.Bytes()
	if err != nil {
		return nil, fmt.Errorf("tickets: session state: %w", err)
	}
	s := k.current()
	hdr := make([]byte, 0, 5+len(node)+4+nonceLen+len(state)+overhead)
	hdr = append(hdr, Magic...)
	hdr = append(hdr, Version, byte(len(node)))
	hdr = append(hdr, node...)
	hdr = binary.BigEndian.AppendUint32(hdr, s.period)
	nonce := make([]byte, nonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("tickets: nonce: %w", err)
	}
	hdr = append(hdr, nonce...)
	k.stats.issued.Add(1)
	return s.aead[1].Seal(hdr, nonce, state, hdr), nil
}

// Unwrap opens a ticket; nil (counted by reason) when it is not a shoal
// ticket, its period's key is not held, it fails authentication or its
// state does not parse: crypto/tls then makes a full handshake.
func (k *Keys) Unwrap(ticket []byte) *tls.SessionState {
	node, ok := NodeOf(ticket)
	if !ok {
		k.stats.foreign.Add(1)
		return nil
	}
	hdrLen := 5 + len(node) + 4 + nonceLen
	p := binary.BigEndian.Uint32(ticket[5+len(node):])
	s := k.current()
	i := p + 1 - s.period // 0, 1, 2 for period-1, period, period+1
	if i > 2 {
		k.stats.expired.Add(1)
		return nil
	}
	state, err := s.aead[i].Open(nil, ticket[hdrLen-nonceLen:hdrLen], ticket[hdrLen:], ticket[:hdrLen])
	if err != nil {
		k.stats.auth.Add(1)
		return nil
	}
	ss, err := tls.ParseSessionState(state)
	if err != nil {
		k.stats.malformed.Add(1)
		return nil
	}
	k.stats.accepted.Add(1)
	return ss
}

// NodeOf reads the issuing node from the clear tag of a ticket shoal
// issued (a TLS 1.3 PSK identity or a TLS 1.2 session ticket). It checks
// only the tag's form, not its authenticity: a forged tag can steer a
// connection to a node, which then makes a full handshake.
func NodeOf(ticket []byte) (string, bool) {
	if len(ticket) < 5 || string(ticket[:3]) != Magic || ticket[3] != Version {
		return "", false
	}
	n := int(ticket[4])
	if n < 1 || n > MaxNodeLen || len(ticket) < 5+n+4+nonceLen+overhead {
		return "", false
	}
	node := string(ticket[5 : 5+n])
	if !validNode(node) {
		return "", false
	}
	return node, true
}

func validNode(s string) bool {
	if len(s) < 1 || len(s) > MaxNodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Stats counts tickets.
type Stats struct {
	Issued    uint64 `json:"issued"`
	Accepted  uint64 `json:"accepted"`  // resumed
	Foreign   uint64 `json:"foreign"`   // not a shoal ticket (another server's, garbage)
	Expired   uint64 `json:"expired"`   // a period whose key is no longer (or not yet) held
	Auth      uint64 `json:"auth"`      // failed authentication: another cluster key, or tampered
	Malformed uint64 `json:"malformed"` // authentic but crypto/tls cannot parse the state (another Go version)
	Rotations uint64 `json:"rotations"` // key set changes seen since start
}

type counters struct {
	issued, accepted, foreign, expired, auth, malformed, rotations atomic.Uint64
}

// Stats returns the counters.
func (k *Keys) Stats() Stats {
	c := &k.stats
	return Stats{Issued: c.issued.Load(), Accepted: c.accepted.Load(), Foreign: c.foreign.Load(), Expired: c.expired.Load(),
		Auth: c.auth.Load(), Malformed: c.malformed.Load(), Rotations: c.rotations.Load()}
}
