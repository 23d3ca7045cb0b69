package transfer

import (
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	h := newHistogram()
	if h.Quantile(0.5) != 0 {
		t.Fatal("quantile of nothing")
	}
	// 98 fast, 2 slow: p50 in the 100 µs bucket, p99 in the 2 ms bucket.
	for i := 0; i < 98; i++ {
		h.observe(80 * time.Microsecond)
	}
	h.observe(1800 * time.Microsecond)
	h.observe(3 * time.Second)
	if got := h.Quantile(0.5); got != 100*time.Microsecond {
		t.Errorf("p50 %v, want 100µs (the bucket's bound)", got)
	}
	if got := h.Quantile(0.99); got != 2*time.Millisecond {
		t.Errorf("p99 %v, want 2ms", got)
	}
	if got := h.Quantile(1); got != 3*time.Second {
		t.Errorf("p100 %v, want the maximum 3s (overflow bucket)", got)
	}
	if h.Count != 100 || h.Counts[len(h.Counts)-1] != 1 {
		t.Errorf("count %d, overflow %d", h.Count, h.Counts[len(h.Counts)-1])
	}
	one := newHistogram()
	one.observe(60 * time.Microsecond)
	if got := one.Quantile(0.99); got != 60*time.Microsecond {
		t.Errorf("p99 of one 60µs observation %v, want 60µs (the maximum, below the bucket's bound)", got)
	}
}
