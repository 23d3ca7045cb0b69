package wire

import (
	"sync"
	"time"
)

// DefaultWindow is how far a frame's stamp may be from the receiver's
// clock. Nodes of a cluster are NTP-synchronised on one LAN; a handoff
// takes well under a millisecond, so the window only has to cover clock
// error.
const DefaultWindow = 10 * time.Second

// replayWindow is how many sequence numbers below the highest seen a
// receiver still accepts (each once): frames of concurrent handoffs may
// arrive out of order over separate connections.
const replayWindow = 1024

// Endpoint seals frames from one node and opens frames addressed to it. It
// is safe for concurrent use.
type Endpoint struct {
	key    Key
	self   string
	window time.Duration
	now    func() time.Time
	start  int64 // receiver start, Unix ns: older stamps are refused

	mu      sync.Mutex
	lastSeq uint64
	peers   map[string]*seqWindow
}

// NewEndpoint returns the endpoint of node self. now is the clock (nil
// means time.Now); window bounds stamps (0 means DefaultWindow).
func NewEndpoint(key Key, self string, window time.Duration, now func() time.Time) *Endpoint {
	if now == nil {
		now = time.Now
	}
	if window <= 0 {
		window = DefaultWindow
	}
	start := now().UnixNano()
	return &Endpoint{key: key, self: self, window: window, now: now, start: start, lastSeq: uint64(start), peers: map[string]*seqWindow{}}
}

// Seal seals body for node to. Sequence numbers start at the clock in
// nanoseconds when the endpoint is made and grow by exactly one per frame,
// so they never repeat, even across a restart of this node (a restarted
// node starts above every number it sent before, having sent fewer frames
// than nanoseconds passed). They do not follow the clock afterwards: the
// receiver's window of replayWindow numbers is what tolerates the
// reordering of concurrent handoffs, and numbers a clock apart would put
// two frames sealed a few microseconds apart outside it.
func (e *Endpoint) Seal(to string, handoffID uint64, body Body) ([]byte, error) {
	now := e.now().UnixNano()
	e.mu.Lock()
	e.lastSeq++
	seq := e.lastSeq
	e.mu.Unlock()
	return Seal(e.key, Header{Seq: seq, Stamp: now, Sender: e.self, Receiver: to, HandoffID: handoffID}, body)
}

// Open verifies, decodes and accepts a frame: authentic, addressed to this
// node, stamped within the window and after this endpoint started, and not
// seen before. Only frames that pass every other check are recorded for
// replay detection.
func (e *Endpoint) Open(frame []byte) (Message, error) {
	m, err := open(e.key, frame)
	if err != nil {
		return Message{}, err
	}
	if m.Receiver != e.self {
		return Message{}, fail(ErrAddressee, "frame from %q for %q, this node is %q", m.Sender, m.Receiver, e.self)
	}
	now := e.now().UnixNano()
	if d := time.Duration(now - m.Stamp); d > e.window || d < -e.window {
		return Message{}, fail(ErrStale, "frame from %q stamped %v from this node's clock; the window is ±%v", m.Sender, d, e.window)
	}
	if m.Stamp < e.start {
		return Message{}, fail(ErrStale, "frame from %q stamped %v before this node started", m.Sender, time.Duration(e.start-m.Stamp))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.peers[m.Sender]
	if w == nil {
		e.prune(now)
		w = &seqWindow{}
		e.peers[m.Sender] = w
	}
	if err := w.accept(m.Seq); err != nil {
		return Message{}, fail(ErrReplay, "frame from %q: sequence %d %s", m.Sender, m.Seq, err)
	}
	w.lastStamp = m.Stamp
	return m, nil
}

// prune forgets senders silent for longer than the window: anything they
// sent before is stale by now anyway. It keeps the map as small as the set
// of nodes that recently sent something authentic.
func (e *Endpoint) prune(now int64) {
	for id, w := range e.peers {
		if time.Duration(now-w.lastStamp) > e.window {
			delete(e.peers, id)
		}
	}
}

// seqWindow is the anti-replay window of one sender (as IPsec's, RFC 4303
// §3.4.3): the highest sequence number seen and a bitmap of the
// replayWindow numbers below it.
type seqWindow struct {
	top       uint64
	seen      [replayWindow / 64]uint64 // bit i: top-i was seen
	lastStamp int64
}

type seqErr string

func (s seqErr) Error() string { return string(s) }

func (w *seqWindow) accept(seq uint64) error {
	if seq > w.top {
		w.shift(seq - w.top)
		w.top = seq
		w.seen[0] |= 1
		return nil
	}
	back := w.top - seq
	if back >= replayWindow {
		return seqErr("is older than the replay window")
	}
	word, bit := back/64, back%64
	if w.seen[word]&(1<<bit) != 0 {
		return seqErr("was seen before")
	}
	w.seen[word] |= 1 << bit
	return nil
}

// shift moves the bitmap n positions towards older numbers.
func (w *seqWindow) shift(n uint64) {
	if n >= replayWindow {
		w.seen = [replayWindow / 64]uint64{}
		return
	}
	words, k := int(n/64), uint(n%64)
	for i := len(w.seen) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w.seen[j] << k
			if k > 0 && j-1 >= 0 {
				v |= w.seen[j-1] >> (64 - k)
			}
		}
		w.seen[i] = v
	}
}
