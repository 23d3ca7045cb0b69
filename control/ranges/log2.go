package ranges

import (
	"math/bits"
	"sync"
)

// log2Q32 is log2(y) for an integer y ≥ 1 in fixed point with 32 fraction
// bits, truncated. Integer arithmetic only (the bit-by-bit squaring method),
// so every platform computes the same value: the table builder must not
// depend on how a CPU rounds a logarithm.
func log2Q32(y uint64) uint64 {
	n := bits.Len64(y) - 1
	m := y << (62 - n) // y / 2^n in [1, 2), 62 fraction bits
	var frac uint64
	for range 32 {
		hi, lo := bits.Mul64(m, m) // m² with 124 fraction bits
		m = hi<<2 | lo>>62         // back to 62 fraction bits: m² in [1, 4)
		frac <<= 1
		if m >= 1<<63 { // m² ≥ 2
			m >>= 1
			frac |= 1
		}
	}
	return uint64(n)<<32 | frac
}

// unitTime(k) is the unit arrival time of a member's rank-k bucket:
// −log2(1 − (k + ½)/65536) in 32-bit fixed point, held as a float64 (exact:
// the values are below 2^37). It is the (k + ½)/65536 quantile of an
// exponential distribution (in units of ln 2), so a member with weight w
// reaching its rank-k bucket at time unitTime(k)/w runs the weighted
// exponential race of rendezvous hashing, its arrival times spread exactly
// over the quantiles. The table is stored by chunk: unitTime(k) is at
// index (k mod 64)·1024 + k div 64, so a chunk's times are contiguous.
var (
	expTimesOnce sync.Once
	expTimes     []float64
)

func unitTimes() []float64 {
	expTimesOnce.Do(func() {
		t := make([]float64, Buckets)
		top := log2Q32(2 * Buckets) // log2(2^17)
		for k := range t {
			t[(k&chunkMask)<<chunkBits|k>>rankShift] = float64(top - log2Q32(uint64(2*Buckets-2*k-1)))
		}
		expTimes = t
	})
	return expTimes
}
