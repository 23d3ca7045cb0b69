package dataplane

import "testing"

// TestSpinNext: the worker polls through the start of a quiet spell only
// while that pays. A spell that a spin ended before the first sleep keeps
// spinning on; a spell that outlasted the spin turns it off (sparse
// traffic would pay 50 µs of polling per packet); without spinning, a
// spell that ended within the first sleeps of no more than the window (16
// + 32 µs) turns it back on, a longer one leaves it off.
func TestSpinNext(t *testing.T) {
	const window = 50
	for _, c := range []struct {
		spin  bool
		slept uint64
		want  bool
	}{
		{true, 0, true},
		{true, 16, false},
		{true, 16 + 32 + 64 + 128 + 256 + 500, false},
		{false, 16, true},
		{false, 16 + 32, true},
		{false, 16 + 32 + 64, false},
		{false, 5000, false},
	} {
		if got := spinNext(c.spin, c.slept, window); got != c.want {
			t.Errorf("spinning %v, a spell with %d µs of sleep: next spins %v, want %v", c.spin, c.slept, got, c.want)
		}
	}
}
