// Package transfer moves established TCP connections between nodes: the
// origin freezes and dumps a connection (handoff/tcprepair) and sends its
// state in an authenticated HANDOFF frame (handoff/wire) over the channel
// between node addresses; the destination restores it on the VIP, makes
// its data plane deliver the flow, releases the socket and answers
// ACCEPT; the origin then makes its data plane let the flow go and closes
// its frozen socket silently. The client sees one connection and no
// reset. Every call needs CAP_NET_ADMIN (TCP_REPAIR), and Serve restores
// sockets in the calling process's network namespace, which must hold the
// VIP.
//
// The order, and why (docs/handoff.md, "The order of a handoff"):
//
//	origin (Move)                              destination (Serve)
//	Freeze, Dump, Seal HANDOFF  ────────────►  Open; Restore (silent, repair mode)
//	                                           DataPlane.Adopt(flow)
//	                                           Release (window probe, unsent tail)
//	Open ACCEPT  ◄──────────────────────────  Seal ACCEPT; go adopt(conn, origin)
//	DataPlane.Release(flow)
//	Frozen.Close (repair mode: sends nothing)
//
// Why in this order:
//
//   - Adopt comes before Release: a released socket probes the client at
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
// Failures (each counted in Stats.Failures by its Cause* label):
//
//   - Before the HANDOFF is written whole (freeze, dump, seal, dial, send):
//     the origin thaws; Move returns intact=true and the caller relays or
//     serves locally. A connection in CLOSE_WAIT or with more than
//     wire.MaxQueue queued is refused by Dump this way.
//   - REFUSE: the destination guarantees its restored socket was aborted in
//     repair mode (never released) and any Adopt undone (DataPlane.Forget,
//     since an Adopt that timed out may still take effect). The origin
//     thaws; intact=true, the error is a *RefusedError.
//   - No answer within Config.Timeout after the HANDOFF was written, or a
//     channel broken or answering nonsense after it: the origin cannot know
//     whether the destination released, and thawing could put two live
//     sockets on one connection. It closes the frozen socket silently
//     without withdrawing the flow; intact=false; that one connection is
//     lost (the client's next segment meets this kernel's reset, or a dead
//     destination).
//   - DataPlane.Release failing after an ACCEPT: the move happened (Move
//     returns nil), the failure is counted ("withdraw"), and the frozen
//     socket stays open, swallowing the flow, while the withdrawal is
//     retried.
//   - On the destination, a Release that fails after the socket left repair
//     mode leaves nothing to save: no answer, and the channel connection
//     closes so the origin closes its frozen socket at once.
//
// The channel: one TCP connection carries one handoff at a time (a HANDOFF,
// then its ACCEPT or REFUSE). The origin keeps a pool of idle connections
// per peer (at most 32, retired after 60 s idle or when the peer closed
// them), dials on demand, and so runs as many handoffs to a peer at once as
// it has connections. A pooled connection that breaks before the frame is
// written whole is retried once on a fresh one; once written whole a frame
// is never sent again (the destination may have acted on it). The
// destination answers nothing to a refused frame (unauthentic, stale,
// replayed, misaddressed, malformed): it counts it by wire.ReasonOf in
// Stats.Refusals and closes the connection.
//
// Flow.ISN is always 0: a dumped state does not carry this side's initial
// sequence number, and the data plane needs it only for SYN_RCVD flows.
package transfer
