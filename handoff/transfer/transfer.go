package transfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-lb/shoal/handoff/tcprepair"
	"github.com/shoal-lb/shoal/handoff/wire"
)

// Flow is what the data plane needs to take over or let go of a
// connection.
type Flow struct {
	Client, VIP netip.AddrPort
	// ClientNext is the client's next sequence number, the socket's
	// rcv_nxt (the dumped receive queue's first sequence number plus its
	// length).
	ClientNext uint32
	// ISN is this side's initial sequence number, 0 when unknown. A
	// dumped state does not carry it (the kernel keeps no copy of it once
	// established), so the transfer always passes 0: the data plane
	// needs it only for SYN_RCVD flows.
	ISN uint32
}

// DataPlane is the node's data plane, as the handoff sees it (the node
// adapts dataplane.Runtime to it).
type DataPlane interface {
	// Adopt makes this node receive the flow as established
	// (Runtime.Install with State Established).
	Adopt(ctx context.Context, f Flow) error
	// Release makes this node stop receiving the flow and drop the
	// kernel's packets of it (Runtime.Withdraw), on the origin.
	Release(ctx context.Context, f Flow) error
	// Forget undoes an Adopt that may have taken effect
	// (Runtime.Remove), on the destination after an abort.
	Forget(ctx context.Context, f Flow) error
}

// Peers gives a member's node address, where its channel listens.
type Peers interface {
	Addr(node string) (netip.Addr, bool)
}

// Config configures a Mover.
type Config struct {
	// Self is this node's ID, the sender of its frames.
	Self string
	// Key authenticates the channel (wire.DeriveKey of the cluster key).
	Key wire.Key
	// Port is the channel's TCP port on every node address.
	Port int
	// Timeout bounds one handoff on the origin, from the freeze to the
	// ACCEPT (the READY must come within ReadyShare of it); the
	// destination gives itself half of it from the HANDOFF's receipt to
	// the release (see the package contract). It also bounds reading one
	// frame on the channel once its first byte arrived. 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// IsMember says whether a channel connection's source address is a
	// cluster member's node address; others are closed at once and
	// counted (Stats.Refusals "not_member"). nil accepts every source.
	IsMember func(netip.Addr) bool
	// IdleTimeout closes a channel connection on which no frame starts for
	// that long (0: DefaultIdleTimeout). Origins retire idle connections
	// after 60 s, so it is longer.
	IdleTimeout time.Duration
	// DataPlane adopts and releases flows.
	DataPlane DataPlane
	// Peers resolves destinations.
	Peers Peers
	// Log receives one line per failure (nil: slog.Default()).
	Log *slog.Logger
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// DefaultTimeout is Config.Timeout's default (config's handoff.timeout_ms).
const DefaultTimeout = time.Second

// DefaultIdleTimeout is Config.IdleTimeout's default.
const DefaultIdleTimeout = 90 * time.Second

// Channel connection caps on the destination: more from one peer, or in
// all, are closed at once and counted (Stats.Refusals "too_many"). An
// origin opens one connection per concurrent handoff to a peer and keeps
// up to 32 idle.
const (
	MaxConnsPerPeer = 64
	MaxConns        = 256
)

// Mover moves connections to other nodes (Move) and takes them over from
// other nodes (Serve). It is safe for concurrent use.
type Mover struct {
	c     Config
	ep    *wire.Endpoint
	pool  pool
	stats *stats
	ids   atomic.Uint64

	draining atomic.Bool   // new HANDOFFs are refused "draining"
	takes    tracker       // handoffs in flight on the destination
	bg       tracker       // adopt and releaseLater goroutines
	done     chan struct{} // closed by Shutdown
	doneOnce sync.Once
}

// New returns a Mover for c.
func New(c Config) *Mover {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	m := &Mover{c: c, ep: wire.NewEndpoint(c.Key, c.Self, 0, c.Now), stats: newStats(), done: make(chan struct{})}
	m.pool.init()
	m.ids.Store(uint64(c.Now().UnixNano())) // handoff IDs never repeat across restarts either
	return m
}

// Stats returns a copy of the counters.
func (m *Mover) Stats() Stats { return m.stats.snapshot() }

// Close closes the idle channel connections. Moves after Close dial anew.
func (m *Mover) Close() error {
	m.pool.closeAll()
	return nil
}

// Drain makes the destination refuse new HANDOFFs with REFUSE "draining"
// while the handoffs in flight finish. Serve drains by itself when its
// listener closes; Drain starts it earlier, on connections already open.
func (m *Mover) Drain() { m.draining.Store(true) }

// Shutdown closes the idle channel connections, cuts short the retries of
// withdrawals (each makes one last attempt) and waits, until ctx ends, for
// the goroutines the Mover started: those handing adopted connections to
// Serve's adopt function and those retrying a withdrawal. Call it after
// Serve returned and after the server behind adopt stopped.
func (m *Mover) Shutdown(ctx context.Context) error {
	m.Drain()
	m.pool.closeAll()
	m.doneOnce.Do(func() { close(m.done) })
	if !m.bg.wait(ctx.Done()) {
		return ctx.Err()
	}
	return nil
}

// RefusedError is Move's error when the destination answered REFUSE.
type RefusedError struct {
	Node   string
	Cause  wire.Cause
	Detail string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("transfer: %s refused the handoff: %v: %s", e.Node, e.Cause, e.Detail)
}

// Error is Move's error for every other failure; Cause is the label
// counted in Stats.Failures.
type Error struct {
	Cause string
	Node  string
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("transfer: handoff to %s: %s: %v", e.Node, e.Cause, e.Err)
}
func (e *Error) Unwrap() error { return e.Err }

// ReadyShare is the part of Config.Timeout within which the origin must
// receive READY; the rest is left for COMMIT and ACCEPT. The destination
// sends READY within half of Timeout from the HANDOFF's receipt or not at
// all, so 3/4 leaves a quarter for the channel's delays.
const ReadyShare = 0.75

// Move moves c to node dest (see the package contract). On success c's
// socket is gone. On error, intact says whether c is usable again (the
// handoff failed before any byte of COMMIT was written: no channel
// connection, no READY within the time, a REFUSE, a broken channel; c was
// thawed) or lost (COMMIT was written and no ACCEPT or REFUSE came: c was
// closed silently).
func (m *Mover) Move(ctx context.Context, c *net.TCPConn, dest string, reason wire.Reason) (intact bool, err error) {
	fail := func(cause string, intact bool, err error) (bool, error) {
		m.stats.failed(cause)
		m.c.Log.Warn("handoff failed", "to", dest, "cause", cause, "intact", intact, "err", err)
		return intact, &Error{Cause: cause, Node: dest, Err: err}
	}
	if dest == m.c.Self {
		return fail(CausePeer, true, errors.New("destination is this node"))
	}
	addr, ok := m.c.Peers.Addr(dest)
	if !ok {
		return fail(CausePeer, true, errors.New("no node address known"))
	}
	peer := netip.AddrPortFrom(addr, uint16(m.c.Port))
	ctx, cancel := context.WithTimeout(ctx, m.c.Timeout)
	defer cancel()

	// The channel connection before the freeze: the client is never
	// frozen while this node dials.
	clk := newStepClock(m.c.Now, m.c.Now())
	pc, reused, err := m.pool.get(ctx, peer)
	if err != nil {
		return fail(CauseDial, true, err)
	}
	clk.mark(StepChannel)
	start := clk.last
	frozen, err := tcprepair.Freeze(c)
	if err != nil {
		m.pool.put(pc)
		return fail(CauseFreeze, true, err)
	}
	clk.mark(StepFreeze)
	// thaw gives the connection back: allowed whenever no byte of COMMIT
	// left this node, or after a REFUSE.
	thaw := func(cause string, err error) (bool, error) {
		if terr := frozen.Thaw(); terr != nil {
			frozen.Close() // still in repair mode: silent
			return fail(cause, false, fmt.Errorf("%w; and thaw: %v", err, terr))
		}
		return fail(cause, true, err)
	}
	st, err := frozen.Dump()
	if err != nil {
		m.pool.put(pc)
		return thaw(CauseDump, err)
	}
	clk.mark(StepDump)
	id := m.ids.Add(1)
	flow := Flow{Client: frozen.Remote(), VIP: frozen.Local(), ClientNext: st.RecvSeq + uint32(len(st.RecvQueue))}
	frame, err := m.ep.Seal(dest, id, &wire.Handoff{Client: flow.Client, VIP: flow.VIP, Reason: reason, State: st})
	if err != nil {
		m.pool.put(pc)
		return thaw(CauseSeal, err)
	}
	clk.mark(StepSeal)
	readyBy := start.Add(time.Duration(float64(m.c.Timeout) * ReadyShare))
	answer, committed, err := m.exchange(ctx, readyBy, pc, reused, peer, dest, id, frame, clk)
	if err != nil {
		e := err.(*Error)
		if !committed {
			return thaw(e.Cause, e.Err)
		}
		// COMMIT left: the destination may have released the connection,
		// and thawing could leave two live sockets on it. Close silently
		// and lose it.
		frozen.Close()
		return fail(e.Cause, false, e.Err)
	}
	switch b := answer.Body.(type) {
	case *wire.Refuse:
		intact, _ := thaw("refused:"+b.Cause.String(), errors.New(b.Detail))
		return intact, &RefusedError{Node: dest, Cause: b.Cause, Detail: b.Detail}
	case *wire.Accept:
		m.stats.moved(reason, clk.last.Sub(start)) // the end of StepCommit
		// The destination owns and serves the connection. Stop receiving
		// it here before the frozen socket goes: once it is gone this
		// kernel would answer the client with a reset.
		rctx, rcancel := context.WithTimeout(context.Background(), m.c.Timeout)
		err := m.c.DataPlane.Release(rctx, flow)
		rcancel()
		if err != nil {
			m.stats.failed(CauseWithdraw)
			m.c.Log.Warn("handoff: withdrawing the moved flow failed; keeping the frozen socket while retrying", "to", dest, "client", flow.Client, "err", err)
			m.bg.add()
			go m.releaseLater(flow, frozen)
			return false, nil
		}
		clk.mark(StepWithdraw)
		frozen.Close()
		clk.mark(StepClose)
		m.stats.steps(clk.t)
		return false, nil
	}
	panic("unreachable: exchange returns ACCEPT or REFUSE")
}

// releaseLater retries a failed withdrawal. The frozen socket swallows the
// client's segments meanwhile; it is closed after a withdrawal, or after
// the last attempt (then the client may see a reset from this node).
// Shutdown makes the next attempt the last.
func (m *Mover) releaseLater(f Flow, frozen *tcprepair.Frozen) {
	defer m.bg.done()
	defer frozen.Close()
	for i := 0; i < 5; i++ {
		last := i == 4
		select {
		case <-time.After(m.c.Timeout):
		case <-m.done:
			last = true
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.c.Timeout)
		err := m.c.DataPlane.Release(ctx, f)
		cancel()
		if err == nil {
			return
		}
		m.c.Log.Warn("handoff: withdrawing the moved flow failed again", "client", f.Client, "attempt", i+2, "err", err)
		if last {
			return
		}
	}
}

// exchange runs the two phases on pc: HANDOFF → READY (by readyBy), then
// COMMIT → ACCEPT (by ctx's deadline), and returns the authentic ACCEPT,
// or a REFUSE answering either phase. committed says whether any byte of
// COMMIT was written: from then on the destination may release the
// connection, so it must not be thawed. It times its steps on clk
// (StepWrite, StepReady, StepRemote, StepCommit).
func (m *Mover) exchange(ctx context.Context, readyBy time.Time, pc *chanConn, reused bool, peer netip.AddrPort, dest string, id uint64, frame []byte, clk *stepClock) (_ wire.Message, committed bool, _ error) {
	fail := func(cause string, err error) *Error { return &Error{Cause: cause, Node: dest, Err: err} }
	rctx, rcancel := context.WithDeadline(ctx, readyBy)
	defer rcancel()
	for attempt := 0; ; attempt++ {
		pc.watch(rctx)
		n, err := pc.c.Write(frame)
		if err == nil {
			break
		}
		pc.close()
		// A broken idle connection is worth one fresh attempt. A HANDOFF
		// that reached the destination whole on the broken one is aborted
		// there: no COMMIT can ever come on it.
		if !reused || attempt > 0 || rctx.Err() != nil {
			return wire.Message{}, false, fail(CauseSend, fmt.Errorf("wrote %d of %d bytes: %w", n, len(frame), err))
		}
		if pc, err = m.pool.dial(rctx, peer); err != nil {
			return wire.Message{}, false, fail(CauseDial, err)
		}
	}
	clk.mark(StepWrite)
	// Phase one: READY or REFUSE. Anything else, or nothing in time, and
	// the connection is given back: no COMMIT was written, so the
	// destination cannot release (it aborts when the channel closes or
	// its own budget ends). The channel connection is reset, so that no
	// COMMIT can follow on it.
	msg, err := m.answer(pc, dest, id, wire.TypeReady, wire.TypeRefuse)
	waited := clk.mark(StepReady)
	inTime := pc.stop() && rctx.Err() == nil
	if err == nil && msg.Type == wire.TypeRefuse {
		// A REFUSE is acted on whenever it arrives: the destination
		// undid everything before sending it.
		if inTime {
			pc.c.SetDeadline(time.Time{})
			m.pool.put(pc)
		} else {
			pc.close()
		}
		return msg, false, nil
	}
	if err != nil || !inTime {
		// A READY read just as the deadline fired counts as none: no
		// time is left for the commit.
		wait := time.Duration(float64(m.c.Timeout) * ReadyShare)
		if err == nil {
			err = fmt.Errorf("READY after the %v allowed for it", wait)
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("no READY within %v: %w", wait, err)
		}
		pc.c.SetLinger(0)
		pc.close()
		return wire.Message{}, false, fail(CauseNoReady, err)
	}
	// The channel's part of the wait: the READY's own figure is the
	// destination's time from the HANDOFF's receipt.
	own := time.Duration(msg.Body.(*wire.Ready).RestoreMicros) * time.Microsecond
	clk.add(StepRemote, max(waited-own, 0))
	// Phase two: COMMIT, then ACCEPT or REFUSE.
	commit, err := m.ep.Seal(dest, id, &wire.Commit{})
	if err != nil {
		pc.c.SetLinger(0)
		pc.close()
		return wire.Message{}, false, fail(CauseSeal, err)
	}
	pc.watch(ctx)
	if n, err := pc.c.Write(commit); err != nil {
		pc.c.SetLinger(0)
		pc.close()
		if n == 0 {
			// Not a byte of COMMIT left: still safe to thaw.
			return wire.Message{}, false, fail(CauseSend, fmt.Errorf("COMMIT: %w", err))
		}
		return wire.Message{}, true, fail(CauseLost, fmt.Errorf("wrote %d of %d bytes of COMMIT: %w", n, len(commit), err))
	}
	msg, err = m.answer(pc, dest, id, wire.TypeAccept, wire.TypeRefuse)
	clk.mark(StepCommit)
	if err != nil {
		pc.close()
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return wire.Message{}, true, fail(CauseTimeout, fmt.Errorf("no ACCEPT within %v of the freeze: %w", m.c.Timeout, err))
		}
		return wire.Message{}, true, fail(CauseLost, err)
	}
	// An authentic answer is acted on even if the deadline fired as it
	// arrived; only the connection, whose deadline may have fired, is not
	// reused.
	if pc.unwatch() {
		m.pool.put(pc)
	} else {
		pc.close()
	}
	return msg, true, nil
}

// answer reads the next frame on pc and checks that it is authentic, from
// dest, about handoff id and of one of the types want.
func (m *Mover) answer(pc *chanConn, dest string, id uint64, want ...wire.Type) (wire.Message, error) {
	raw, err := wire.ReadFrame(pc.r)
	if err != nil {
		var we *wire.Error
		if errors.As(err, &we) {
			m.stats.refused(err) // a bad header; EOF, reset and timeouts are failures, not refusals
		}
		return wire.Message{}, fmt.Errorf("reading the answer: %w", err)
	}
	msg, err := m.ep.Open(raw)
	if err != nil {
		m.stats.refused(err)
		return wire.Message{}, fmt.Errorf("the answer: %w", err)
	}
	switch {
	case msg.Sender != dest:
		m.stats.refusedAs("unexpected")
		return wire.Message{}, fmt.Errorf("answer from %q", msg.Sender)
	case msg.HandoffID != id:
		m.stats.refusedAs("unexpected")
		return wire.Message{}, fmt.Errorf("answer for handoff %d, this one is %d", msg.HandoffID, id)
	}
	for _, t := range want {
		if msg.Type == t {
			return msg, nil
		}
	}
	m.stats.refusedAs("unexpected")
	return wire.Message{}, fmt.Errorf("a %v in answer", msg.Type)
}
