package prefilter

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/cilium/ebpf/asm"
)

// The frame as the program sees it: from the Ethernet header on. It loads
// the first frameLen bytes (Ethernet, an IPv4 header without options, the
// TCP header up to its flags) into a stack buffer at fp+frameAt, so byte i
// of the frame is at fp+frameAt+i. The verifier wants stack loads aligned
// to their size: at -50 the IPv4 addresses (frame offsets 26 and 30) fall
// on 4-byte boundaries, and the destination MAC is read as 2 + 4 bytes.
const (
	frameLen = 48
	frameAt  = -50
	keySlot  = -56 // a u32 map key on the stack, below the frame
	ethHLen  = 14

	// Offsets in struct __sk_buff (uapi/linux/bpf.h): the first two
	// fields, frozen ABI.
	skbLen     = 0
	skbPktType = 4
	// skbVLANPresent: the kernel moves an 802.1Q tag into the skb's
	// metadata before a packet socket sees the frame, so the frame bytes
	// show plain IPv4; the worker reads the frame with its tag put back by
	// the PMD and counts it as malformed. The filter passes every tagged
	// frame, so that count stays the worker's (a test run never tags, so
	// TestPassesOthers cannot show this case).
	skbVLANPresent = 20
	// PACKET_OUTGOING: a frame this host sends, seen by its packet
	// sockets (uapi/linux/if_packet.h).
	packetOutgoing = 4

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10

	// Counter indices in the per-CPU drop map, as the worker's first
	// pass tallies its drops.
	countSegments = 0 // anything but a SYN: foreign_dropped, fast_dropped
	countSYNs     = 1 // SYNs (no ACK) to a served port: syn_not_ours
	countPortSYNs = 2 // SYNs to a port the cluster does not serve: syn_port_dropped
	nCounts       = 3

	// passAll is what a socket filter returns to keep a frame whole
	// (the snap length; the kernel takes the smaller of it and the
	// frame's length).
	passAll = -1
)

// progParams is what the program is built from: the classifier's
// configuration, baked in as immediates, and the maps it reads.
type progParams struct {
	seed                uint32
	vip                 [4]byte
	clusterMAC, nodeMAC [6]byte
	// dropOutgoing also drops the frames this host sends through the
	// device (the replypath filter's job, which this one replaces: a
	// socket holds one filter).
	dropOutgoing bool
	wantedFD     int // array, one 8 KiB value: a bit per bucket
	crcFD        int // array, one 1 KiB value: the CRC32C byte table
	countsFD     int // per-CPU array of nCounts u64
	portsFD      int // array, one 8 KiB value: a bit per served VIP port
	// returnHash, for the tests only: return the connection value of a
	// well-formed TCP segment to the VIP instead of deciding it.
	returnHash bool
}

// ne16 and ne32 are the values a native-endian load of the given bytes
// gives: the program compares header fields as loaded, in network order,
// as classify.c does.
func ne16(b0, b1 byte) int32 { return int32(binary.NativeEndian.Uint16([]byte{b0, b1})) }
func ne32(b []byte) int32    { return int32(binary.NativeEndian.Uint32(b)) }

// at is the stack offset of byte i of the frame.
func at(i int) int16 { return int16(frameAt + i) }

// crcTable is the byte-wise table of the reflected CRC32C polynomial, the
// one DPDK's rte_hash_crc and Go's crc32.Castagnoli compute.
func crcTable() [256]uint32 {
	return *crc32.MakeTable(crc32.Castagnoli)
}

// program returns the socket filter: it drops exactly the frames the
// worker's first pass drops without looking at its flow table
// (classify.c, pre_parse_rx) and passes everything else whole.
//
// The tests of that first pass, in its order: an IPv4 frame (Ethernet
// type 0x0800, no VLAN tag) to the VIP, addressed to the cluster MAC or
// the node's MAC, version 4 without options, total length at least 40 and
// within the frame, not a fragment, TCP, a data offset of at least 5
// within the packet, not SYN with RST or FIN; its bucket (the low 16 bits
// of CRC32C over the 12 tuple bytes seeded with the cluster seed) not
// wanted. Any frame failing a test passes: the worker decides and counts
// it. A frame too short to hold the 48 bytes read also passes (the worker
// counts it malformed or decides it otherwise).
func program(p progParams) asm.Instructions {
	const (
		pass = "pass"
		drop = "drop"
	)
	var in asm.Instructions
	add := func(is ...asm.Instruction) { in = append(in, is...) }

	add(asm.Mov.Reg(asm.R6, asm.R1)) // r6 = skb
	if p.dropOutgoing && !p.returnHash {
		add(asm.LoadMem(asm.R0, asm.R6, skbPktType, asm.Word),
			asm.JEq.Imm(asm.R0, packetOutgoing, "outgoing"))
	}
	add(
		asm.LoadMem(asm.R0, asm.R6, skbVLANPresent, asm.Word),
		asm.JNE.Imm(asm.R0, 0, pass),
		asm.LoadMem(asm.R9, asm.R6, skbLen, asm.Word), // r9 = frame length
		asm.JLT.Imm(asm.R9, frameLen, pass),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, 0),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, frameAt),
		asm.Mov.Imm(asm.R4, frameLen),
		asm.FnSkbLoadBytes.Call(),
		asm.JNE.Imm(asm.R0, 0, pass),

		// Ethernet type IPv4.
		asm.LoadMem(asm.R1, asm.RFP, at(12), asm.Half),
		asm.JNE.Imm(asm.R1, ne16(0x08, 0x00), pass),
		// To the VIP.
		asm.LoadMem(asm.R1, asm.RFP, at(ethHLen+16), asm.Word),
		asm.JNE.Imm32(asm.R1, ne32(p.vip[:]), pass),
		// To the cluster MAC or the node's.
		asm.LoadMem(asm.R1, asm.RFP, at(0), asm.Half),
		asm.LoadMem(asm.R2, asm.RFP, at(2), asm.Word),
		asm.JNE.Imm(asm.R1, ne16(p.clusterMAC[0], p.clusterMAC[1]), "node_mac"),
		asm.JEq.Imm32(asm.R2, ne32(p.clusterMAC[2:]), "mac_ok"),
		asm.JNE.Imm(asm.R1, ne16(p.nodeMAC[0], p.nodeMAC[1]), pass).WithSymbol("node_mac"),
		asm.JNE.Imm32(asm.R2, ne32(p.nodeMAC[2:]), pass),
		// Version 4, no options.
		asm.LoadMem(asm.R1, asm.RFP, at(ethHLen), asm.Byte).WithSymbol("mac_ok"),
		asm.JNE.Imm(asm.R1, 0x45, pass),
		// Total length: at least 40, within the frame. r7 = total length.
		asm.LoadMem(asm.R7, asm.RFP, at(ethHLen+2), asm.Half),
		asm.HostTo(asm.BE, asm.R7, asm.Half),
		asm.JLT.Imm(asm.R7, 40, pass),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Add.Imm(asm.R1, ethHLen),
		asm.JGT.Reg(asm.R1, asm.R9, pass),
		// Not a fragment: no MF, no offset.
		asm.LoadMem(asm.R1, asm.RFP, at(ethHLen+6), asm.Half),
		asm.And.Imm(asm.R1, ne16(0x3f, 0xff)),
		asm.JNE.Imm(asm.R1, 0, pass),
		// TCP.
		asm.LoadMem(asm.R1, asm.RFP, at(ethHLen+9), asm.Byte),
		asm.JNE.Imm(asm.R1, 6, pass),
		// Data offset at least 5 words, the header within the packet.
		asm.LoadMem(asm.R1, asm.RFP, at(ethHLen+20+12), asm.Byte),
		asm.RSh.Imm(asm.R1, 4),
		asm.JLT.Imm(asm.R1, 5, pass),
		asm.LSh.Imm(asm.R1, 2),
		asm.Add.Imm(asm.R1, 20),
		asm.JGT.Reg(asm.R1, asm.R7, pass),
		// Not SYN with RST or FIN. r7 = TCP flags from here on.
		asm.LoadMem(asm.R7, asm.RFP, at(ethHLen+20+13), asm.Byte),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.And.Imm(asm.R1, tcpSYN),
		asm.JEq.Imm(asm.R1, 0, "flags_ok"),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.And.Imm(asm.R1, tcpRST|tcpFIN),
		asm.JNE.Imm(asm.R1, 0, pass),

		// The connection value: r6 = the CRC table, r8 = the CRC.
		asm.StoreImm(asm.RFP, keySlot, 0, asm.Word).WithSymbol("flags_ok"),
		asm.LoadMapPtr(asm.R1, p.crcFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keySlot),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, pass),
		asm.Mov.Reg(asm.R6, asm.R0),
		asm.Mov.Imm32(asm.R8, int32(p.seed)),
	)
	// The key's 12 bytes (source and destination address, source and
	// destination port) are contiguous from IPv4 offset 12, in the order
	// the connection value takes them. One table step per byte, unrolled:
	// crc = table[(crc ^ b) & 0xff] ^ (crc >> 8), with no inversion
	// before or after (rte_hash_crc's raw register, seeded).
	for i := ethHLen + 12; i < ethHLen+24; i++ {
		add(
			asm.LoadMem(asm.R1, asm.RFP, at(i), asm.Byte),
			asm.Xor.Reg(asm.R1, asm.R8),
			asm.And.Imm(asm.R1, 0xff),
			asm.LSh.Imm(asm.R1, 2),
			asm.Add.Reg(asm.R1, asm.R6),
			asm.LoadMem(asm.R1, asm.R1, 0, asm.Word),
			asm.RSh.Imm32(asm.R8, 8),
			asm.Xor.Reg32(asm.R8, asm.R1),
		)
	}
	if p.returnHash {
		add(asm.Mov.Reg(asm.R0, asm.R8), asm.Return(),
			asm.Mov.Imm32(asm.R0, passAll).WithSymbol(pass), asm.Return())
		return in
	}
	add(
		// The bucket's bit in the wanted map: set means pass.
		asm.StoreImm(asm.RFP, keySlot, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, p.wantedFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keySlot),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, pass),
		asm.Mov.Reg(asm.R1, asm.R8),
		asm.And.Imm(asm.R1, 0xffff),
		asm.RSh.Imm(asm.R1, 6),
		asm.LSh.Imm(asm.R1, 3),
		asm.Add.Reg(asm.R0, asm.R1),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R8),
		asm.And.Imm(asm.R1, 63),
		asm.RSh.Reg(asm.R2, asm.R1),
		asm.And.Imm(asm.R2, 1),
		asm.JNE.Imm(asm.R2, 0, pass),

		// Dropped: count it as the worker would have, a SYN (without
		// ACK) by whether its port is served.
		asm.StoreImm(asm.RFP, keySlot, countSegments, asm.Word),
		asm.And.Imm(asm.R7, tcpSYN|tcpACK),
		asm.JNE.Imm(asm.R7, tcpSYN, "count"),
		asm.StoreImm(asm.RFP, keySlot, countPortSYNs, asm.Word),
		asm.LoadMapPtr(asm.R1, p.portsFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keySlot-4), // key 0: the word below is zero
		asm.StoreImm(asm.RFP, keySlot-4, 0, asm.Word),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "count"),
		asm.LoadMem(asm.R1, asm.RFP, at(ethHLen+20+2), asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Imm(asm.R2, 6),
		asm.LSh.Imm(asm.R2, 3),
		asm.Add.Reg(asm.R0, asm.R2),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.DWord),
		asm.And.Imm(asm.R1, 63),
		asm.RSh.Reg(asm.R2, asm.R1),
		asm.And.Imm(asm.R2, 1),
		asm.JEq.Imm(asm.R2, 0, "count"),
		asm.StoreImm(asm.RFP, keySlot, countSYNs, asm.Word),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("count"),
		asm.LoadMapPtr(asm.R1, p.countsFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keySlot),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, drop),
		// Atomic: a run in process context can be interrupted by a
		// softirq's run on the same CPU.
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol(drop),
		asm.Return(),
		asm.Mov.Imm32(asm.R0, passAll).WithSymbol(pass),
		asm.Return(),
	)
	if p.dropOutgoing && !p.returnHash {
		add(asm.Mov.Imm(asm.R0, 0).WithSymbol("outgoing"), asm.Return())
	}
	return in
}
