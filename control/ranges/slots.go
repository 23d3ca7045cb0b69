package ranges

// slotsGo writes to sl[j], for j below n, the slot of chunk c that a
// member's rank 64·j + c lies at: order.slot with the chunk's masks in, out
// and the multipliers m0, m1, m2 hoisted, in 32-bit arithmetic (the low 10
// bits, all that is kept, are the same). slotsAVX2 computes the same 16 at
// a time where the CPU has AVX2.
func slotsGo(sl *[chunkSize]uint16, n int, in, out, m0, m1, m2 uint32) {
	slots := sl[:n]
	for j := range slots {
		slots[j] = uint16(mixWith(uint32(j)^in, m0, m1, m2) ^ out)
	}
}

// rowGo writes to row[c], for c from c0 to 63, the bucket of a member's
// rank 64·j + c: order.bucket for one row of ranks, with the member's chunk
// masks in, out and multipliers m0, m1, m2. rowAVX2 computes the whole row
// 16 chunks at a time where the CPU has AVX2.
func rowGo(row *[chunks]uint16, in, out *[chunks]uint16, c0 int, j, m0, m1, m2 uint32) {
	for c := c0; c < chunks; c++ {
		x := mixWith(j^uint32(in[c]), m0, m1, m2)
		row[c] = uint16(c)<<chunkBits | uint16(x^uint32(out[c]))&slotMask
	}
}
