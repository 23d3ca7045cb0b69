package dataplane

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcRaw is CRC32C with the given raw register value and no final
// inversion: exactly DPDK's rte_hash_crc(data, len, init). Go's crc32
// inverts on entry and exit, hence the two complements.
func crcRaw(init uint32, p []byte) uint32 {
	return ^crc32.Update(^init, castagnoli, p)
}

// ConnValue is the frozen connection value of an IPv4 4-tuple (see
// docs/protocol.md): CRC32C over src IP, dst IP, src port, dst port in
// network byte order, seeded with the cluster seed. The bucket is its low 16
// bits.
func ConnValue(seed uint32, src, dst netip.Addr, sport, dport uint16) uint32 {
	var b [36]byte
	if src.Is4() && dst.Is4() {
		s, d := src.As4(), dst.As4()
		copy(b[0:4], s[:])
		copy(b[4:8], d[:])
		binary.BigEndian.PutUint16(b[8:], sport)
		binary.BigEndian.PutUint16(b[10:], dport)
		return crcRaw(seed, b[:12])
	}
	s, d := src.As16(), dst.As16()
	copy(b[0:16], s[:])
	copy(b[16:32], d[:])
	binary.BigEndian.PutUint16(b[32:], sport)
	binary.BigEndian.PutUint16(b[34:], dport)
	return crcRaw(seed, b[:36])
}

// Bucket is the connection value's bucket, 0..65535.
func Bucket(value uint32) uint16 { return uint16(value) }
