// Package tcprepair moves an established TCP connection between sockets,
// and so between nodes, with Linux's TCP_REPAIR: it freezes and dumps a
// connection into a wire.TCPState on the origin and restores it on the
// destination, where it continues with the same sequence numbers, queues,
// options, window and timestamp clock. The peer sees one connection.
//
// Contract (every call needs CAP_NET_ADMIN):
//
//   - Freeze first attaches a socket filter that drops every segment
//     arriving for the connection, then puts the socket in repair mode,
//     then closes its send window (TCP_REPAIR_WINDOW with snd_wnd 0).
//     From then on the origin kernel neither processes nor acknowledges
//     anything the peer sends, so Dump is an exact cut: every byte the
//     origin ever acknowledged is in the dumped receive queue. Segments the
//     peer sends meanwhile are lost to the origin and retransmitted by the
//     peer to the destination. The origin's timers still run in repair
//     mode: it may retransmit old data (harmless duplicates), but with the
//     window closed no loss probe or deferred write sends a never-sent
//     byte, which the peer would acknowledge past the destination's
//     snd_nxt. It sends no FIN and no RST. Dump reports the window as it
//     was before Freeze closed it; Thaw restores it.
//   - Dump reads, in repair mode: both queues with their sequence numbers,
//     how much of the send queue was never sent (SIOCOUTQNSD), MSS clamp,
//     window scale, SACK and timestamp options (TCP_INFO, TCP_MAXSEG),
//     the timestamp clock (TCP_TIMESTAMP) and the window
//     (TCP_REPAIR_WINDOW). Only ESTABLISHED connections move.
//   - After a successful handoff the origin calls Close: in repair mode
//     close() sends nothing. But only once this kernel no longer receives
//     the flow (the origin's data plane withdrew it): while the frozen
//     socket exists its filter swallows the peer's segments, and once it is
//     gone the kernel answers them with a reset. After a failed handoff the
//     origin calls Thaw: the filter goes, repair mode ends with a window
//     probe, and the connection goes on at the origin (the peer
//     retransmits what the filter dropped).
//   - Restore, run in the network namespace that must own the socket,
//     creates a socket behind the same drop-all filter as Freeze's (a
//     socket in repair mode otherwise still takes in and acknowledges the
//     peer's data once connected) in repair mode, sets both queues' sequence numbers,
//     binds the original local address (the VIP; FreeBind allows an address
//     not configured here), connects (no SYN in repair mode), restores the
//     options, the receive queue, the sent part of the send queue, then the
//     window (only now: its checks are relative to the restored rcv_nxt)
//     and the timestamp clock. The socket stays in repair mode behind the
//     filter, silent and deaf, until Release: the caller makes the data
//     plane deliver the flow to this node in between, and waits for the
//     origin's commitment.
//   - A queue larger than the new socket's default buffer makes Restore
//     set that buffer (SO_SNDBUFFORCE, SO_RCVBUFFORCE) to twice the queue
//     plus 64 KiB, which fixes its size for the connection's life (no
//     autotuning). A handoff right after the peek has a send queue of zero
//     and a receive queue of one request, and keeps autotuning.
//   - Release removes the filter, leaves repair mode, which sends a window
//     probe so the peer answers at once with its current ACK and window,
//     queues the part of the send queue that was never sent as ordinary
//     data (by a deadline), and returns a *net.TCPConn. Until Release
//     the restored socket has neither sent nor acknowledged anything, so
//     Abort closes it without a trace, and the origin may thaw.
//
// Sequence numbers are unsigned 32-bit: setsockopt(TCP_QUEUE_SEQ) takes a
// C int, into which values above 2^31 are packed by bits, not by value.
package tcprepair
