package transfer

import (
	"golang.org/x/sys/unix"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
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
	// answer, and each data-plane call and write on the destination.
	// 0 means DefaultTimeout.
	Timeout time.Duration
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

// Mover moves connections to other nodes (Move) and takes them over from
// other nodes (Serve). It is safe for concurrent use.
type Mover struct {
	c     Config
	ep    *wire.Endpoint
	pool  pool
	stats *stats
	ids   atomic.Uint64
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
	m := &Mover{c: c, ep: wire.NewEndpoint(c.Key, c.Self, 0, c.Now), stats: newStats()}
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

// Move moves c to node dest (see the package contract). On success c's
// socket is gone. On error, intact says whether c is usable again (the
// handoff failed before the HANDOFF frame left, or dest refused: c was
// thawed) or lost (no answer after the frame left: c was closed
// silently).
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

	start := m.c.Now()
	frozen, err := tcprepair.Freeze(c)
	if err != nil {
		return fail(CauseFreeze, true, err)
	}
	// thaw gives the connection back after a failure before the HANDOFF
	// left or after a REFUSE.
	thaw := func(cause string, err error) (bool, error) {
		if terr := frozen.Thaw(); terr != nil {
			frozen.Close() // still in repair mode: silent
			return fail(cause, false, fmt.Errorf("%w; and thaw: %v", err, terr))
		}
		return fail(cause, true, err)
	}
	st, err := frozen.Dump()
	if err != nil {
		return thaw(CauseDump, err)
	}
	id := m.ids.Add(1)
	flow := Flow{Client: frozen.Remote(), VIP: frozen.Local(), ClientNext: st.RecvSeq + uint32(len(st.RecvQueue))}
	frame, err := m.ep.Seal(dest, id, &wire.Handoff{Client: flow.Client, VIP: flow.VIP, Reason: reason, State: st})
	if err != nil {
		return thaw(CauseSeal, err)
	}
	answer, sent, err := m.exchange(ctx, peer, dest, id, frame)
	if err != nil {
		if !sent {
			return thaw(err.(*Error).Cause, err.(*Error).Err)
		}
		// The destination may have taken the connection: thawing could
		// leave two live sockets on it. Close silently and lose it.
		frozen.Close()
		return fail(err.(*Error).Cause, false, err.(*Error).Err)
	}
	switch b := answer.Body.(type) {
	case *wire.Refuse:
		intact, _ := thaw("refused:"+b.Cause.String(), errors.New(b.Detail))
		return intact, &RefusedError{Node: dest, Cause: b.Cause, Detail: b.Detail}
	case *wire.Accept:
		m.stats.moved(reason, m.c.Now().Sub(start))
		// The destination owns and serves the connection. Stop receiving
		// it here before the frozen socket goes: once it is gone this
		// kernel would answer the client with a reset.
		rctx, rcancel := context.WithTimeout(context.Background(), m.c.Timeout)
		err := m.c.DataPlane.Release(rctx, flow)
		rcancel()
		if err != nil {
			m.stats.failed(CauseWithdraw)
			m.c.Log.Warn("handoff: withdrawing the moved flow failed; keeping the frozen socket while retrying", "to", dest, "client", flow.Client, "err", err)
			go m.releaseLater(flow, frozen)
			return false, nil
		}
		frozen.Close()
		return false, nil
	}
	panic("unreachable: exchange returns ACCEPT or REFUSE")
}

// releaseLater retries a failed withdrawal. The frozen socket swallows the
// client's segments meanwhile; it is closed after a withdrawal, or after
// the last attempt (then the client may see a reset from this node).
func (m *Mover) releaseLater(f Flow, frozen *tcprepair.Frozen) {
	defer frozen.Close()
	for i := 0; i < 5; i++ {
		time.Sleep(m.c.Timeout)
		ctx, cancel := context.WithTimeout(context.Background(), m.c.Timeout)
		err := m.c.DataPlane.Release(ctx, f)
		cancel()
		if err == nil {
			return
		}
		m.c.Log.Warn("handoff: withdrawing the moved flow failed again", "client", f.Client, "attempt", i+2, "err", err)
	}
}

// exchange sends frame to peer over a pooled connection and returns the
// authentic ACCEPT or REFUSE for handoff id. sent says whether the frame
// may have reached the destination whole (then nothing is retried).
func (m *Mover) exchange(ctx context.Context, peer netip.AddrPort, dest string, id uint64, frame []byte) (wire.Message, bool, error) {
	fail := func(cause string, err error) *Error { return &Error{Cause: cause, Node: dest, Err: err} }
	var pc *chanConn
	for attempt := 0; ; attempt++ {
		var reused bool
		var err error
		pc, reused, err = m.pool.get(ctx, peer)
		if err != nil {
			return wire.Message{}, false, fail(CauseDial, err)
		}
		pc.watch(ctx)
		n, err := pc.c.Write(frame)
		if err == nil {
			break
		}
		pc.close()
		// Not written whole: the destination cannot have opened it (a
		// frame acts only once its MAC, at its end, arrives). A broken
		// idle connection is worth one fresh attempt.
		if !reused || attempt > 0 || ctx.Err() != nil {
			return wire.Message{}, false, fail(CauseSend, fmt.Errorf("wrote %d of %d bytes: %w", n, len(frame), err))
		}
	}
	lost := func(err error) (wire.Message, bool, error) {
		// A frame acts only once its MAC, at its end, has arrived. If the
		// destination's kernel has not acknowledged the frame's last
		// bytes by now (a dead or unreachable node), the destination
		// cannot have acted on it: abort the channel connection (a reset
		// ends our retransmissions, so the frame can never complete
		// later) and give the connection back.
		if n := unacked(pc.c); n > 0 {
			pc.c.SetLinger(0)
			pc.close()
			return wire.Message{}, false, fail(CauseUnreachable, fmt.Errorf("%d bytes of the HANDOFF never acknowledged by %v: %w", n, peer, err))
		}
		pc.close()
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return wire.Message{}, true, fail(CauseTimeout, fmt.Errorf("no answer within %v: %w", m.c.Timeout, err))
		}
		return wire.Message{}, true, fail(CauseLost, err)
	}
	raw, err := wire.ReadFrame(pc.r)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
			return lost(err)
		}
		m.stats.refused(err)
		return lost(fmt.Errorf("reading the answer: %w", err))
	}
	msg, err := m.ep.Open(raw)
	if err != nil {
		m.stats.refused(err)
		return lost(fmt.Errorf("the answer: %w", err))
	}
	switch {
	case msg.Sender != dest:
		return lost(fmt.Errorf("answer from %q", msg.Sender))
	case msg.HandoffID != id:
		return lost(fmt.Errorf("answer for handoff %d, this one is %d", msg.HandoffID, id))
	case msg.Type != wire.TypeAccept && msg.Type != wire.TypeRefuse:
		return lost(fmt.Errorf("a %v in answer", msg.Type))
	}
	if !pc.unwatch() {
		return lost(ctx.Err()) // the deadline fired as the answer arrived
	}
	m.pool.put(pc)
	return msg, true, nil
}

// unacked is how many bytes written to c its peer has not acknowledged
// (SIOCOUTQ); 0 on error.
func unacked(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			n = v
		}
	})
	return n
}
