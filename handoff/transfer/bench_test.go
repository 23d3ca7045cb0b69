package transfer

import (
	"fmt"
	"testing"
)

// BenchmarkMove measures freeze → ACCEPT received at the origin over the
// real channel between two node processes in namespaces (the layout of
// TestMoveBetweenNodes), one move per fresh client connection, and
// reports the histogram's p50 and p99 beside the 500 µs goal.
// The destination's Adopt here runs ip(8) to add a policy rule (the test
// data plane), a few milliseconds that a worker's command ring does in
// microseconds: the figure is an upper bound of the transfer's own cost.
// Needs root: go test -run XXX -bench Move ./handoff/transfer
func BenchmarkMove(b *testing.B) {
	c := newCluster(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		path := fmt.Sprintf("/bench/%d", i)
		resp, body, _, err := c.get(path)
		if err != nil || resp.StatusCode != 200 || body != "served "+path+" by b" {
			b.Fatalf("%s: %v %v %q", path, err, resp, body)
		}
	}
	b.StopTimer()
	s := c.stop(b)
	if s[0].Latency.Count != uint64(b.N) {
		b.Fatalf("%d moves counted for %d requests; failures %v", s[0].Latency.Count, b.N, s[0].Failures)
	}
	b.ReportMetric(float64(s[0].Latency.Quantile(0.5).Microseconds()), "p50-µs")
	b.ReportMetric(float64(s[0].Latency.Quantile(0.99).Microseconds()), "p99-µs")
	b.ReportMetric(500, "goal-p99-µs")
}
