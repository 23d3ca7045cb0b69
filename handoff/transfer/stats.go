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

// StepBounds are the buckets of the per-step histograms (Stats.Steps):
// finer than LatencyBounds, since most steps take microseconds.
var StepBounds = []time.Duration{
	5 * time.Microsecond, 10 * time.Microsecond, 20 * time.Microsecond,
	30 * time.Microsecond, 50 * time.Microsecond, 75 * time.Microsecond,
	100 * time.Microsecond, 150 * time.Microsecond, 200 * time.Microsecond,
	300 * time.Microsecond, 500 * time.Microsecond, 750 * time.Microsecond,
	time.Millisecond, 1500 * time.Microsecond, 2 * time.Millisecond,
	3 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	time.Second,
}

func newHistogram() Histogram { return newHistogramOf(LatencyBounds) }

func newHistogramOf(bounds []time.Duration) Histogram {
	return Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds)+1)}
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
	// Steps times each step of a successful handoff, in StepBounds, by
	// the Step* labels: where the latency goes.
	Steps map[string]Histogram `json:"steps"`
}

// Step labels, the keys of Stats.Steps, in the order of the two-phase
// exchange. Origin steps of a move that was accepted; from StepFreeze to
// StepCommit they follow each other and add up to Latency:
const (
	// StepChannel is getting a channel connection (a pooled one, or a
	// dial) before the freeze: outside Latency, the client is not frozen.
	StepChannel = "origin_channel"
	StepFreeze  = "origin_freeze" // tcprepair.Freeze: Latency starts before it
	StepDump    = "origin_dump"   // Frozen.Dump
	StepSeal    = "origin_seal"   // sealing the HANDOFF frame
	// StepWrite is writing the HANDOFF (with one dial and a second write
	// when a pooled connection proved broken).
	StepWrite = "origin_write"
	StepReady = "origin_ready" // HANDOFF written → READY read and opened
	// StepCommit is sealing and writing the COMMIT → ACCEPT read and
	// opened: a channel round trip, the destination's release and its
	// ACCEPT. Latency ends with it.
	StepCommit = "origin_commit"
	// StepRemote is StepReady less the destination's own time until its
	// READY (the READY's RestoreMicros, from the HANDOFF's receipt): both
	// directions of the channel, the destination reading the HANDOFF, the
	// origin waking up for the READY. Not a step of its own: a part of
	// StepReady, one of the exchange's two channel round trips.
	StepRemote   = "origin_remote"
	StepWithdraw = "origin_withdraw" // DataPlane.Release, after the ACCEPT
	StepClose    = "origin_close"    // closing the frozen socket
)

// Destination steps of a handoff it accepted; they follow each other from
// the HANDOFF read whole to the ACCEPT written (the READY's RestoreMicros
// is about their sum up to StepAdopt, the ACCEPT's up to StepRelease).
const (
	StepOpen      = "dest_open"    // frame read whole → authenticated and decoded
	StepRestore   = "dest_restore" // tcprepair.Restore
	StepAdopt     = "dest_adopt"   // DataPlane.Adopt
	StepReadySent = "dest_ready"   // sealing and writing the READY
	// StepCommitWait is READY written → COMMIT read and opened: a channel
	// round trip and the origin's reading the READY and sealing the COMMIT.
	StepCommitWait = "dest_commit"
	StepRelease    = "dest_release" // Restored.Release
	StepAcceptSent = "dest_accept"  // sealing and writing the ACCEPT
)

type stats struct {
	mu sync.Mutex
	s  Stats
}

func newStats() *stats {
	return &stats{s: Stats{Moves: map[string]uint64{}, Adopted: map[string]uint64{}, Failures: map[string]uint64{},
		Refusals: map[string]uint64{}, Latency: newHistogram(), Steps: map[string]Histogram{}}}
}

func (st *stats) moved(r wire.Reason, d time.Duration) {
	st.mu.Lock()
	st.s.Moves[r.String()]++
	st.s.Latency.observe(d)
	st.mu.Unlock()
}

// steps records the step durations of one handoff.
func (st *stats) steps(t []stepTime) {
	st.mu.Lock()
	for _, x := range t {
		h, ok := st.s.Steps[x.step]
		if !ok {
			h = newHistogramOf(StepBounds)
		}
		h.observe(x.d)
		st.s.Steps[x.step] = h
	}
	st.mu.Unlock()
}

// stepTime is one step's duration.
type stepTime struct {
	step string
	d    time.Duration
}

// stepClock times consecutive steps.
type stepClock struct {
	now  func() time.Time
	last time.Time
	t    []stepTime
}

func newStepClock(now func() time.Time, start time.Time) *stepClock {
	return &stepClock{now: now, last: start, t: make([]stepTime, 0, 10)}
}

// mark ends step (begun at the previous mark) and returns its duration.
func (c *stepClock) mark(step string) time.Duration {
	n := c.now()
	d := n.Sub(c.last)
	c.last = n
	c.t = append(c.t, stepTime{step, d})
	return d
}

func (c *stepClock) add(step string, d time.Duration) { c.t = append(c.t, stepTime{step, d}) }

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
	s.Steps = make(map[string]Histogram, len(st.s.Steps))
	for k, h := range st.s.Steps {
		h.Counts = append([]uint64(nil), h.Counts...)
		s.Steps[k] = h
	}
	return s
}
