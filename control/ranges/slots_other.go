//go:build !amd64 || purego

package ranges

// useAVX2 is false where there is no assembly version.
var useAVX2 = false

func slotsAVX2(sl *[chunkSize]uint16, n int, in, out, m0, m1, m2 uint32) {
	panic("ranges: slotsAVX2 without AVX2")
}

func chunkSlots(sl *[chunkSize]uint16, n int, in, out, m0, m1, m2 uint32) {
	slotsGo(sl, n, in, out, m0, m1, m2)
}

func rowAVX2(row *[chunks]uint16, in, out *[chunks]uint16, j, m0, m1, m2 uint32) {
	panic("ranges: rowAVX2 without AVX2")
}

func rankRow(row *[chunks]uint16, in, out *[chunks]uint16, c0 int, j, m0, m1, m2 uint32) {
	rowGo(row, in, out, c0, j, m0, m1, m2)
}
