package ranges

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
)

// Buckets is the size of the connection-value range.
const Buckets = 65536

// NoOwner marks a bucket no member can take (every weight is zero).
const NoOwner = 0xffff

// Member is one node's identity and its (quantized) weight.
type Member struct {
	ID     string
	Weight float64
}

// Table is an immutable range table.
type Table struct {
	// Algorithm is the builder version that made the table (AlgoV1, AlgoV2).
	Algorithm int
	// Members sorted by ID; Owner values index this slice.
	Members []Member
	// Owner of each bucket, or NoOwner.
	Owner [Buckets]uint16
	// Hash is the content hash gossiped so that disagreement shows.
	Hash string
}

// Build computes the version-1 table for a set of members (BuildV with
// AlgoV1). Members with a weight that is zero, negative or not finite own
// nothing.
func Build(seed uint32, members []Member) (*Table, error) {
	return BuildV(AlgoV1, seed, members)
}

// sortedMembers copies members sorted by ID and checks that IDs are unique
// and that there are few enough for a uint16 owner index.
func sortedMembers(members []Member) ([]Member, error) {
	ms := append([]Member(nil), members...)
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
	for i := 1; i < len(ms); i++ {
		if ms[i].ID == ms[i-1].ID {
			return nil, fmt.Errorf("ranges: member %q listed twice", ms[i].ID)
		}
	}
	if len(ms) >= NoOwner {
		return nil, fmt.Errorf("ranges: %d members is more than %d", len(ms), NoOwner-1)
	}
	return ms, nil
}

// buildV1 is weighted rendezvous hashing, bucket by bucket.
func buildV1(seed uint32, t *Table) {
	ms := t.Members
	idSeeds := make([]uint64, len(ms))
	for i, m := range ms {
		idSeeds[i] = memberSeed(seed, m.ID)
	}
	for b := 0; b < Buckets; b++ {
		best, bestScore := NoOwner, math.Inf(-1)
		for i, m := range ms {
			if !(m.Weight > 0) || math.IsInf(m.Weight, 0) {
				continue
			}
			u := unit(splitmix64(idSeeds[i] ^ uint64(b)*0x9e3779b97f4a7c15))
			s := m.Weight / -math.Log(u)
			if s > bestScore {
				best, bestScore = i, s
			}
		}
		t.Owner[b] = uint16(best)
	}
}

// memberSeed is FNV-1a 64 over the seed (4 bytes, big endian) and the ID.
func memberSeed(seed uint32, id string) uint64 {
	h := uint64(0xcbf29ce484222325)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], seed)
	for _, c := range append(b[:], id...) {
		h ^= uint64(c)
		h *= 0x100000001b3
	}
	return h
}

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// unit maps 53 bits of h into the open interval (0,1).
func unit(h uint64) float64 { return (float64(h>>11) + 0.5) / (1 << 53) }

// contentHash is the first 8 bytes of SHA-256 over the sorted member IDs
// and the owner of every bucket (by ID), in hex: the version-1 hash.
// Version 2 and later prefix the algorithm name (contentHashV2).
func (t *Table) contentHash() string { return t.hashWith("") }

// hashWith hashes prefix, the member IDs each followed by a NUL byte, and
// the owners as 2-byte big-endian values.
func (t *Table) hashWith(prefix string) string {
	h := sha256.New()
	h.Write([]byte(prefix))
	for _, m := range t.Members {
		h.Write([]byte(m.ID))
		h.Write([]byte{0})
	}
	var buf [4096]byte // owners in blocks, not a 128 KiB slice a hash
	for b := 0; b < Buckets; b += len(buf) / 2 {
		for k, o := range t.Owner[b : b+len(buf)/2] {
			binary.BigEndian.PutUint16(buf[2*k:], o)
		}
		h.Write(buf[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Index returns the position of a member in Members, or -1.
func (t *Table) Index(id string) int {
	i := sort.Search(len(t.Members), func(i int) bool { return t.Members[i].ID >= id })
	if i < len(t.Members) && t.Members[i].ID == id {
		return i
	}
	return -1
}

// Count returns how many buckets each member owns, by ID.
func (t *Table) Count() map[string]int {
	n := make([]int, len(t.Members))
	for _, o := range t.Owner {
		if o != NoOwner {
			n[o]++
		}
	}
	out := map[string]int{}
	for i, m := range t.Members {
		out[m.ID] = n[i]
	}
	return out
}

// OwnerOf returns the ID owning bucket b, or "" when none does.
func (t *Table) OwnerOf(b uint16) string {
	if o := t.Owner[b]; o != NoOwner {
		return t.Members[o].ID
	}
	return ""
}

// Interval is a run of consecutive buckets with one owner.
type Interval struct {
	From, To int // inclusive
	Owner    string
}

// Intervals lists the table as runs of buckets, for the CLI.
func (t *Table) Intervals() []Interval {
	var out []Interval
	for b := 0; b < Buckets; b++ {
		o := t.OwnerOf(uint16(b))
		if n := len(out); n > 0 && out[n-1].Owner == o {
			out[n-1].To = b
			continue
		}
		out = append(out, Interval{From: b, To: b, Owner: o})
	}
	return out
}
