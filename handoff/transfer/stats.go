package transfer

import (
	"maps"
	"sync"
	"time"

	"github.com/shoal-lb/shoal/handoff/wire"
)

// Failure causes, the labels of Stats.Failures. A REFUSE is counted as
// "refused:" followed by its wire.Cause ("refused:adopt").
const (
	CauseFreeze = "freeze" // origin: tcprepair.Freeze failed; the connection is untouched
	CauseDump   = "dump"   // origin: Dump refused (not ESTABLISHED, queues too large); thawed
	CauseSeal   = "seal"   // origin: the state does not fit the wire format; thawed
	CausePeer   = "peer"   // origin: no node address for the destination; nothing was frozen
	CauseDial   = "dial"   // origin: no channel connection to the destination; nothing was frozen (or, redialling a broken pooled one, thawed)
	CauseSend   = "send"   // origin: the HANDOFF, or not a byte of COMMIT, could be written; thawed
	// CauseNoReady: no READY within ReadyShare of Timeout, or the channel
	// broke or answered nonsense before it. No COMMIT was written, so the
	// destination cannot release: thawed.
	CauseNoReady  = "no_ready"
	CauseTimeout  = "timeout"   // origin: no ACCEPT within Timeout after COMMIT was written; closed
	CauseLost     = "lost"      // origin: the channel broke or answered nonsense after COMMIT was written; closed
	CauseWithdraw = "withdraw"  // origin: DataPlane.Release failed after an ACCEPT (the move still happened)
	CauseRestore  = "restore"   // destination: tcprepair.Restore failed; refused
	CauseAdopt    = "adopt"     // destination: DataPlane.Adopt failed; refused
	CauseRelease  = "release"   // destination: Restored.Release failed
	CauseAnswer   = "answer"    // destination: the READY, ACCEPT or REFUSE could not be sent
	CauseNoCommit = "no_commit" // destination: no COMMIT within the budget, or the channel broke before it; aborted
	CauseBudget   = "busy"      // destination: half of Timeout from the HANDOFF's receipt passed before READY or Release; aborted, refused "busy"
	CauseDraining = "draining"  // destination: the node is stopping; refused "draining"
)

// LatencyBounds are the upper bounds of the latency histogram's buckets
// (freeze → ACCEPT received at the origin); one more bucket holds the
// rest. Fine around the 500 µs goal, coarse far from it.
var LatencyBounds = []time.Duration{
	50 * time.Microsecond, 75 * time.Microsecond, 100 * time.Microsecond,
	125 * time.Microsecond, 150 * time.Microsecond, 175 * time.Microsecond,
	200 * time.Microsecond, 250 * time.Microsecond, 300 * time.Microsecond,
	350 * time.Microsecond, 400 * time.Microsecond, 450 * time.Microsecond,
	500 * time.Microsecond, 600 * time.Microsecond, 750 * time.Microsecond,
	time.Millisecond, 1500 * time.Microsecond, 2 * time.Millisecond,
	3 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	200 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

// Histogram counts durations in the buckets of LatencyBounds.
type Histogram struct {
	// Bounds are the buckets' upper bounds (inclusive); Counts has one
	// more entry, for durations above the last bound.
	Bounds []time.Duration `json:"bounds_ns"`
	Counts []uint64        `json:"counts"`
	Count  uint64          `json:"count"`
	Sum    time.Duration   `json:"sum_ns"`
	Max    time.Duration   `json:"max_ns"`
}

func newHistogram() Histogram {
	return Histogram{Bounds: LatencyBounds, Counts: make([]uint64, len(LatencyBounds)+1)}
}

func (h *Histogram) observe(d time.Duration) {
	i := 0
	for i < len(h.Bounds) && d > h.Bounds[i] {
		i++
	}
	h.Counts[i]++
	h.Count++
	h.Sum += d
	h.Max = max(h.Max, d)
}

// Quantile returns an upper bound of the q-quantile (0 < q ≤ 1): the
// upper bound of the bucket holding the ⌈q·Count⌉-th smallest duration,
// or Max when that is the overflow bucket or lies below that bound. 0
// without observations.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := uint64(q*float64(h.Count) + 0.999999)
	rank = min(max(rank, 1), h.Count)
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			if i == len(h.Bounds) {
				return h.Max
			}
			return min(h.Bounds[i], h.Max)
		}
	}
	return h.Max
}

// Stats are a Mover's counters, a consistent copy.
type Stats struct {
	// Moves counts connections this node moved away (ACCEPT received), by
	// wire.Reason ("group", "session", "version").
	Moves map[string]uint64 `json:"moves"`
	// Adopted counts connections this node took over, by wire.Reason.
	Adopted map[string]uint64 `json:"adopted"`
	// Failures counts failed handoffs on either side by cause (the Cause*
	// labels, "refused:<wire.Cause>").
	Failures map[string]uint64 `json:"failures"`
	// Refusals counts channel frames and connections refused, by
	// wire.ReasonOf ("auth", "replay", "stale", "version", "io" for a
	// stream broken inside a frame, ...; "unexpected" for an authentic
	// frame of the wrong type, sender or handoff; "deadline" for a frame
	// started and not finished in time; "not_member" and "too_many" for
	// connections closed on accept): on the destination, frames and
	// connections; on the origin, answers (an EOF, reset or timeout
	// waiting for one is a failure, not a refusal).
	Refusals map[string]uint64 `json:"refusals"`
	// Latency is freeze → ACCEPT received, at the origin.
	Latency Histogram `json:"latency"`
}

type stats struct {
	mu sync.Mutex
	s  Stats
}

func newStats() *stats {
	return &stats{s: Stats{Moves: map[string]uint64{}, Adopted: map[string]uint64{}, Failures: map[string]uint64{},
		Refusals: map[string]uint64{}, Latency: newHistogram()}}
}

func (st *stats) moved(r wire.Reason, d time.Duration) {
	st.mu.Lock()
	st.s.Moves[r.String()]++
	st.s.Latency.observe(d)
	st.mu.Unlock()
}

func (st *stats) adopted(r wire.Reason) {
	st.mu.Lock()
	st.s.Adopted[r.String()]++
	st.mu.Unlock()
}

func (st *stats) failed(cause string) {
	st.mu.Lock()
	st.s.Failures[cause]++
	st.mu.Unlock()
}

func (st *stats) refused(err error) { st.refusedAs(wire.ReasonOf(err)) }

func (st *stats) refusedAs(label string) {
	st.mu.Lock()
	st.s.Refusals[label]++
	st.mu.Unlock()
}

func (st *stats) snapshot() Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	s := st.s
	s.Moves, s.Adopted = maps.Clone(s.Moves), maps.Clone(s.Adopted)
	s.Failures, s.Refusals = maps.Clone(s.Failures), maps.Clone(s.Refusals)
	s.Latency.Counts = append([]uint64(nil), s.Latency.Counts...)
	return s
}
