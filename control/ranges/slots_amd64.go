//go:build !purego

package ranges

import "golang.org/x/sys/cpu"

// useAVX2 selects slotsAVX2; the tests turn it off to compare.
var useAVX2 = cpu.X86.HasAVX2

// slotsAVX2 is slotsGo 16 slots at a time (slots_amd64.s). It writes n
// rounded up to a multiple of 16 entries, which fit: chunkSize is one.
//
//go:noescape
func slotsAVX2(sl *[chunkSize]uint16, n int, in, out, m0, m1, m2 uint32)

func chunkSlots(sl *[chunkSize]uint16, n int, in, out, m0, m1, m2 uint32) {
	if useAVX2 {
		slotsAVX2(sl, n, in, out, m0, m1, m2)
		return
	}
	slotsGo(sl, n, in, out, m0, m1, m2)
}

// rowAVX2 is rowGo for the whole row (c0 = 0), 16 chunks at a time
// (slots_amd64.s).
//
//go:noescape
func rowAVX2(row *[chunks]uint16, in, out *[chunks]uint16, j, m0, m1, m2 uint32)

func rankRow(row *[chunks]uint16, in, out *[chunks]uint16, c0 int, j, m0, m1, m2 uint32) {
	if useAVX2 {
		rowAVX2(row, in, out, j, m0, m1, m2)
		return
	}
	rowGo(row, in, out, c0, j, m0, m1, m2)
}
