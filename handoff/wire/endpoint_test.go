package wire

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock shared by endpoints.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func endpoints(t *testing.T) (n1, n2 *Endpoint, c *clock) {
	c = &clock{t: time.Unix(1795779000, 0)}
	k := testKey(t)
	return NewEndpoint(k, "n1", time.Second, c.now), NewEndpoint(k, "n2", time.Second, c.now), c
}

func TestEndpointExchange(t *testing.T) {
	n1, n2, c := endpoints(t)
	c.add(time.Millisecond)
	f, err := n1.Seal("n2", 7, goldenHandoff())
	if err != nil {
		t.Fatal(err)
	}
	m, err := n2.Open(f)
	if err != nil {
		t.Fatal(err)
	}
	if m.Sender != "n1" || m.HandoffID != 7 || m.Body.(*Handoff).Group != "cgi" {
		t.Fatalf("opened %+v", m)
	}
	ack, err := n2.Seal(m.Sender, m.HandoffID, &Accept{RestoreMicros: 200})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := n1.Open(ack); err != nil || m.HandoffID != 7 || m.Body.(*Accept).RestoreMicros != 200 {
		t.Fatalf("ACCEPT: %+v, %v", m, err)
	}
}

func TestEndpointRefusesReplay(t *testing.T) {
	n1, n2, c := endpoints(t)
	c.add(time.Millisecond)
	f, _ := n1.Seal("n2", 1, goldenHandoff())
	if _, err := n2.Open(f); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Open(f); !errors.Is(err, ErrReplay) {
		t.Fatalf("the same frame twice: %v, want replay", err)
	}
}

// TestEndpointOutOfOrder: frames of concurrent handoffs may arrive in any
// order within the replay window, each exactly once; older ones are refused.
func TestEndpointOutOfOrder(t *testing.T) {
	n1, n2, c := endpoints(t)
	c.add(time.Millisecond)
	var frames [][]byte
	for i := 0; i < replayWindow+10; i++ {
		f, err := n1.Seal("n2", uint64(i), &Accept{})
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	last := len(frames) - 1
	if _, err := n2.Open(frames[last]); err != nil {
		t.Fatal(err)
	}
	// last-1 down to last-(replayWindow-1) are within the window.
	for i := last - 1; i > last-replayWindow; i-- {
		if _, err := n2.Open(frames[i]); err != nil {
			t.Fatalf("frame %d of %d, within the window: %v", i, last, err)
		}
		if _, err := n2.Open(frames[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("frame %d again: %v, want replay", i, err)
		}
	}
	if _, err := n2.Open(frames[last-replayWindow]); !errors.Is(err, ErrReplay) {
		t.Fatalf("a frame %d numbers old: %v, want replay (too old)", replayWindow, err)
	}
}

func TestEndpointStamps(t *testing.T) {
	n1, n2, c := endpoints(t)
	c.add(time.Millisecond)
	old, _ := n1.Seal("n2", 1, &Accept{})
	c.add(1100 * time.Millisecond)
	if _, err := n2.Open(old); !errors.Is(err, ErrStale) {
		t.Fatalf("a frame 1.1 s old with a 1 s window: %v, want stale", err)
	}
	// A frame from the future (a sender's clock ahead) beyond the window.
	ahead := NewEndpoint(testKey(t), "n3", time.Second, func() time.Time { return c.now().Add(2 * time.Second) })
	f, _ := ahead.Seal("n2", 1, &Accept{})
	if _, err := n2.Open(f); !errors.Is(err, ErrStale) {
		t.Fatalf("a frame 2 s ahead: %v, want stale", err)
	}
}

// TestEndpointRestartedReceiver: a receiver that restarts forgets what it
// saw, so it refuses everything stamped before its start; a frame recorded
// earlier cannot be replayed into it.
func TestEndpointRestartedReceiver(t *testing.T) {
	n1, n2, c := endpoints(t)
	c.add(time.Millisecond)
	f, _ := n1.Seal("n2", 1, goldenHandoff())
	if _, err := n2.Open(f); err != nil {
		t.Fatal(err)
	}
	c.add(time.Millisecond)
	restarted := NewEndpoint(testKey(t), "n2", time.Second, c.now)
	if _, err := restarted.Open(f); !errors.Is(err, ErrStale) {
		t.Fatalf("replay into a restarted receiver: %v, want stale", err)
	}
	c.add(time.Millisecond)
	fresh, _ := n1.Seal("n2", 2, goldenHandoff())
	if _, err := restarted.Open(fresh); err != nil {
		t.Fatalf("a fresh frame after the restart: %v", err)
	}
}

// TestEndpointRestartedSender: a sender that restarts seeds its sequence
// numbers from the clock, so the receiver's window accepts it at once.
func TestEndpointRestartedSender(t *testing.T) {
	n1, n2, c := endpoints(t)
	c.add(time.Millisecond)
	for i := 0; i < 5; i++ {
		f, _ := n1.Seal("n2", uint64(i), &Accept{})
		if _, err := n2.Open(f); err != nil {
			t.Fatal(err)
		}
	}
	c.add(time.Millisecond)
	again := NewEndpoint(testKey(t), "n1", time.Second, c.now)
	f, _ := again.Seal("n2", 9, &Accept{})
	if _, err := n2.Open(f); err != nil {
		t.Fatalf("first frame of a restarted sender: %v", err)
	}
}

func TestEndpointAddressee(t *testing.T) {
	n1, _, c := endpoints(t)
	n3 := NewEndpoint(testKey(t), "n3", time.Second, c.now)
	c.add(time.Millisecond)
	f, _ := n1.Seal("n2", 1, goldenHandoff())
	if _, err := n3.Open(f); !errors.Is(err, ErrAddressee) {
		t.Fatalf("a frame for n2 opened by n3: %v, want addressee", err)
	}
}

// TestEndpointForgedDoesNotPoison: a forged frame (wrong key) carrying a
// huge sequence number must not advance the replay window, or it would
// lock the real sender out.
func TestEndpointForgedDoesNotPoison(t *testing.T) {
	n1, n2, c := endpoints(t)
	c.add(time.Millisecond)
	other, _ := DeriveKey([]byte("not this cluster's key, at all!!"))
	forged, _ := Seal(other, Header{Seq: ^uint64(0), Stamp: c.now().UnixNano(), Sender: "n1", Receiver: "n2"}, goldenHandoff())
	if _, err := n2.Open(forged); !errors.Is(err, ErrAuth) {
		t.Fatalf("forged: %v, want auth", err)
	}
	f, _ := n1.Seal("n2", 1, goldenHandoff())
	if _, err := n2.Open(f); err != nil {
		t.Fatalf("the real sender after a forgery: %v", err)
	}
}

func TestEndpointSeqStrictlyGrows(t *testing.T) {
	n1, _, _ := endpoints(t) // the clock stands still: numbers must still grow
	var last uint64
	for i := 0; i < 100; i++ {
		f, _ := n1.Seal("n2", 0, &Accept{})
		m, err := open(testKey(t), f)
		if err != nil {
			t.Fatal(err)
		}
		if m.Seq <= last {
			t.Fatalf("sequence %d after %d", m.Seq, last)
		}
		last = m.Seq
	}
}

// TestEndpointReorderedConcurrentFrames: frames of concurrent handoffs,
// sealed microseconds apart and sent over separate connections, may
// arrive in any order; the receiver accepts each once. (Sequence numbers
// that followed the clock in nanoseconds put frames sealed 2 µs apart
// beyond the 1024-number window: the transfer package's 50 concurrent
// handoffs lost connections to it.)
func TestEndpointReorderedConcurrentFrames(t *testing.T) {
	n1, n2, c := endpoints(t)
	var frames [][]byte
	for i := 0; i < replayWindow; i++ {
		c.add(5 * time.Microsecond)
		f, _ := n1.Seal("n2", uint64(i), &Accept{})
		frames = append(frames, f)
	}
	for i := len(frames) - 1; i >= 0; i-- {
		if _, err := n2.Open(frames[i]); err != nil {
			t.Fatalf("frame %d of %d, opened in reverse order: %v", i, len(frames), err)
		}
	}
	if _, err := n2.Open(frames[0]); !errors.Is(err, ErrReplay) {
		t.Fatalf("a reordered frame opened twice: %v, want replay", err)
	}
}

func TestEndpointPrunesSilentSenders(t *testing.T) {
	_, n2, c := endpoints(t)
	c.add(time.Millisecond)
	for _, id := range []string{"a", "b", "c"} {
		e := NewEndpoint(testKey(t), id, time.Second, c.now)
		f, _ := e.Seal("n2", 0, &Accept{})
		if _, err := n2.Open(f); err != nil {
			t.Fatal(err)
		}
	}
	c.add(2 * time.Second)
	e := NewEndpoint(testKey(t), "d", time.Second, c.now)
	f, _ := e.Seal("n2", 0, &Accept{})
	if _, err := n2.Open(f); err != nil {
		t.Fatal(err)
	}
	if len(n2.peers) != 1 {
		t.Fatalf("%d senders remembered, want only the one heard within the window", len(n2.peers))
	}
}
