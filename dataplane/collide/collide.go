// Package collide computes IPv4 4-tuples that share one connection value
// under every seed, as an attacker can: the connection value is CRC32C of
// the 12-byte key (docs/protocol.md), and CRC is affine over GF(2), so for
// keys a and b of equal length CRC(seed, a) ^ CRC(seed, b) = CRC(0, a ^ b)
// whatever the seed. Every difference d with CRC(0, d) = 0 therefore maps
// a tuple to one with the same value, and those differences form a linear
// subspace: the null space of a 32-row matrix over the bits the attacker
// may vary. With k free bits it has at least 2^(k-32) elements.
//
// The tests and benchmarks of the flow table use it to show that a flood of
// such tuples no longer piles into one probe run (the slot index is a keyed
// hash) and costs legitimate traffic little.
package collide

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// Tuple is a client-side IPv4 4-tuple: the client's address and port, the
// VIP and its port.
type Tuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// Key is the tuple's 12-byte connection-value input, in network order.
func (t Tuple) Key() [12]byte {
	var k [12]byte
	s, d := t.Src.As4(), t.Dst.As4()
	copy(k[0:4], s[:])
	copy(k[4:8], d[:])
	binary.BigEndian.PutUint16(k[8:], t.SrcPort)
	binary.BigEndian.PutUint16(k[10:], t.DstPort)
	return k
}

func fromKey(k [12]byte) Tuple {
	return Tuple{
		Src:     netip.AddrFrom4([4]byte(k[0:4])),
		Dst:     netip.AddrFrom4([4]byte(k[4:8])),
		SrcPort: binary.BigEndian.Uint16(k[8:]),
		DstPort: binary.BigEndian.Uint16(k[10:]),
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// linear is CRC32C with a zero register and no final inversion: the linear
// part of the connection value.
func linear(k [12]byte) uint32 { return ^crc32.Update(^uint32(0), castagnoli, k[:]) }

// Free builds a mask of the key bits an attacker may vary: the low srcBits
// bits of the client address, the low sportBits bits of the client port and
// the low dportBits bits of the VIP port.
func Free(srcBits, sportBits, dportBits int) [12]byte {
	var m [12]byte
	set := func(off, width, n int) { // low n bits of the big-endian field at off
		for i := 0; i < n && i < width*8; i++ {
			byteIdx := off + width - 1 - i/8
			m[byteIdx] |= 1 << (i % 8)
		}
	}
	set(0, 4, srcBits)
	set(8, 2, sportBits)
	set(10, 2, dportBits)
	return m
}

// Basis returns a basis of the differences, inside the free bits, that keep
// the connection value: every XOR of a subset of it is such a difference.
func Basis(free [12]byte) [][12]byte {
	type row struct {
		v    uint32   // CRC(0, combination)
		comb [12]byte // the combination of free bits
	}
	var pivots []row // each with a distinct leading bit of v
	var null [][12]byte
	for bit := 0; bit < 96; bit++ {
		if free[bit/8]>>(bit%8)&1 == 0 {
			continue
		}
		var e [12]byte
		e[bit/8] = 1 << (bit % 8)
		r := row{v: linear(e), comb: e}
		for _, p := range pivots {
			lead := uint32(1) << (31 - leading(p.v))
			if r.v&lead != 0 {
				r.v ^= p.v
				for i := range r.comb {
					r.comb[i] ^= p.comb[i]
				}
			}
		}
		if r.v == 0 {
			null = append(null, r.comb)
			continue
		}
		// Keep pivots fully reduced against the new one's leading bit.
		lead := uint32(1) << (31 - leading(r.v))
		for j := range pivots {
			if pivots[j].v&lead != 0 {
				pivots[j].v ^= r.v
				for i := range pivots[j].comb {
					pivots[j].comb[i] ^= r.comb[i]
				}
			}
		}
		pivots = append(pivots, r)
	}
	return null
}

func leading(v uint32) int {
	n := 0
	for v&0x80000000 == 0 {
		v <<= 1
		n++
	}
	return n
}

// Tuples returns up to n distinct tuples, base first, that differ from base
// only in the free bits and share its connection value under every seed;
// keep, if not nil, rejects tuples the caller cannot use (a zero port, an
// address outside a range). It fails when the free bits give fewer than n.
func Tuples(base Tuple, free [12]byte, n int, keep func(Tuple) bool) ([]Tuple, error) {
	basis := Basis(free)
	if len(basis) > 30 {
		basis = basis[:30]
	}
	k := base.Key()
	var out []Tuple
	for j := uint64(0); j < 1<<len(basis) && len(out) < n; j++ {
		var d [12]byte
		for b := range basis {
			if j>>b&1 == 1 {
				for i := range d {
					d[i] ^= basis[b][i]
				}
			}
		}
		var c [12]byte
		for i := range c {
			c[i] = k[i] ^ d[i]
		}
		t := fromKey(c)
		if keep == nil || keep(t) {
			out = append(out, t)
		}
	}
	if len(out) < n {
		return out, fmt.Errorf("collide: only %d colliding tuples in %d free bits (null space of dimension %d)", len(out), countBits(free), len(basis))
	}
	return out, nil
}

func countBits(m [12]byte) int {
	n := 0
	for _, b := range m {
		for ; b != 0; b &= b - 1 {
			n++
		}
	}
	return n
}
