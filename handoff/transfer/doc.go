// Package transfer moves established TCP connections between nodes: the
// origin freezes and dumps a connection (handoff/tcprepair) and sends its
// state in an authenticated HANDOFF frame (handoff/wire) over the channel
// between node addresses; the destination restores it on the VIP, silent,
// makes its data plane deliver the flow and answers READY; the origin
// commits (COMMIT); the destination releases the socket and answers
// ACCEPT; the origin then makes its data plane let the flow go and closes
// its frozen socket silently. The client sees one connection and no
// reset. Every call needs CAP_NET_ADMIN (TCP_REPAIR), and Serve restores
// sockets in the calling process's network namespace, which must hold the
// VIP.
//
// The order, and why (docs/handoff.md, "The order of a handoff"):
//
//	origin (Move)                              destination (Serve)
//	get a channel connection (dial)
//	Freeze, Dump, Seal HANDOFF  ────────────►  Open; Restore (repair mode, drop-all filter)
//	                                           DataPlane.Adopt(flow)
//	Open READY  ◄───────────────────────────  Seal READY
//	Seal COMMIT  ───────────────────────────►  Open COMMIT
//	                                           Release (filter off, window probe, unsent tail)
//	Open ACCEPT  ◄──────────────────────────  Seal ACCEPT; go adopt(conn, origin)
//	DataPlane.Release(flow)
//	Frozen.Close (repair mode: sends nothing)
//
// Why in this order:
//
//   - The channel connection comes before the freeze: the client is never
//     frozen while the origin dials.
//   - Two phases, because silence proves nothing: an origin that hears no
//     answer cannot tell a dead destination from a lost answer (ACKs and
//     frames can be lost one way only). Until the origin writes a byte of
//     COMMIT the destination cannot have released, so the origin may
//     thaw; from then on it never thaws. Until it reads COMMIT the
//     destination holds the socket in repair mode behind a drop-all filter
//     (in repair mode alone it would still acknowledge the client's data),
//     having sent and acknowledged nothing, so it can abort without a
//     trace.
//   - Adopt comes before READY: a released socket probes the client at
//     once, and the client's answer must reach this node, not the origin.
//   - ACCEPT comes after Release: until the socket left repair mode the
//     destination can still abort it silently and answer REFUSE, and the
//     origin thaws. An ACCEPT is a promise that the destination serves the
//     connection.
//   - Between the ACCEPT and the origin's withdrawal both nodes receive the
//     flow; harmless, as the origin's frozen socket swallows everything. The
//     origin closes that socket only after DataPlane.Release: once it is
//     gone, its kernel would answer the client's next segment with a reset.
//
// Timeouts: the origin waits for READY until ReadyShare (3/4) of
// Config.Timeout after the freeze, and for ACCEPT until Timeout. The
// destination gives itself Timeout/2 from the HANDOFF's receipt: checked
// before READY, as the deadline for COMMIT, and before Release; past it,
// it forgets, aborts and refuses "busy". So a destination that answers
// READY in time leaves the origin a quarter of Timeout of slack, and a
// COMMIT that arrives too late meets a REFUSE, not a release.
//
// Failures (each counted in Stats.Failures by its Cause* label):
//
//   - Before any byte of COMMIT is written (dial, freeze, dump, seal, send,
//     no READY in time, a broken channel or nonsense instead of READY, a
//     REFUSE): the origin thaws (or, for dial and freeze, never froze);
//     Move returns intact=true and the caller relays or serves locally. A
//     REFUSE's error is a *RefusedError. The channel connection is reset,
//     so no COMMIT can follow on it. A connection in CLOSE_WAIT or with
//     more than wire.MaxQueue queued is refused by Dump this way.
//   - REFUSE, to either phase: the destination guarantees any Adopt was
//     undone (DataPlane.Forget, since an Adopt that timed out may still
//     take effect) and then its restored socket aborted in repair mode
//     (never released): in that order, or its kernel, receiving the flow
//     with no socket, would reset the connection the origin thaws. When
//     Forget fails it answers nothing and closes the channel instead.
//   - COMMIT written and no ACCEPT or REFUSE within Timeout, or a channel
//     broken or answering nonsense after it: the origin cannot know
//     whether the destination released, and thawing could put two live
//     sockets on one connection. It closes the frozen socket silently
//     without withdrawing the flow; intact=false; that one connection is
//     lost.
//   - An authentic, matching ACCEPT or REFUSE is acted on even if it is
//     read just as the deadline fires (only its channel connection is not
//     reused).
//   - DataPlane.Release failing after an ACCEPT: the move happened (Move
//     returns nil), the failure is counted ("withdraw"), and the frozen
//     socket stays open, swallowing the flow, while the withdrawal is
//     retried.
//   - On the destination, no COMMIT within the budget: forget, abort, then
//     REFUSE "busy" if the channel is up; a channel that breaks before
//     COMMIT: forget, abort, close. A Release that fails after the socket
//     left repair mode leaves nothing to save: no answer, and the channel
//     connection closes so the origin closes its frozen socket at once.
//
// The channel: one TCP connection carries one handoff at a time. The
// origin keeps a pool of idle connections per peer (at most 32, retired
// after 60 s idle or when the peer closed them), dials on demand, and so
// runs as many handoffs to a peer at once as it has connections. A pooled
// connection that breaks while the HANDOFF is written is replaced once by
// a fresh one. The destination:
//
//   - closes at once a connection from an address Config.IsMember refuses
//     ("not_member"), or beyond MaxConnsPerPeer from one address or
//     MaxConns in all ("too_many");
//   - reads a frame's first byte within Config.IdleTimeout (default 90 s,
//     above the origin's 60 s), the rest of its header within Timeout, its
//     body within Timeout of the header ("deadline"), and allocates a
//     frame's buffer as its bytes arrive, never the length it claims
//     before its MAC is checked;
//   - answers nothing to a refused frame (unauthentic, stale, replayed,
//     misaddressed, malformed, an old version): it counts it by
//     wire.ReasonOf in Stats.Refusals, logs it at debug level, and closes
//     the connection;
//   - drains when its listener closes (or after Drain): new HANDOFFs are
//     refused "draining", those in flight finish and answer, then the
//     connections close and Serve returns. Shutdown then waits for the
//     goroutines handing adopted connections over and retrying
//     withdrawals.
//
// Flow.ISN is always 0: a dumped state does not carry this side's initial
// sequence number, and the data plane needs it only for SYN_RCVD flows.
package transfer
