// Package wire is the handoff message format between node IPs: what an
// origin node sends a destination to move an established TCP connection,
// and the answer.
//
// Contract:
//
//   - Five messages, version 2: HANDOFF (the connection's tuple, why it
//     moves, and its TCP state: sequence numbers, both queues, options,
//     window, timestamp clock), READY (the destination restored and adopted
//     it and holds it silent), COMMIT (the origin will never thaw it: the
//     destination may release it), ACCEPT (the destination owns the socket
//     now) and REFUSE (with a cause; the destination undid everything and
//     the origin keeps the connection). A HANDOFF's origin node is its
//     authenticated sender. Version 1 (HANDOFF, ACCEPT, REFUSE only) is
//     refused with ErrVersion.
//   - Every frame is versioned and authenticated: HMAC-SHA256 over the whole
//     frame with a key derived from the cluster key by HKDF-SHA256 under a
//     label of its own ("shoal handoff v1 hmac-sha256"), so the handoff key
//     is independent of the gossip encryption that uses the same cluster
//     key. A frame names its sender and its receiver; a frame for another
//     node is refused, so one cannot be replayed to a third node.
//   - Replay protection: each frame carries the sender's clock and a
//     per-sender sequence number that never repeats (seeded from the clock,
//     so a restarted sender continues above its old numbers). A receiver
//     accepts a frame only when its stamp is within Window of the
//     receiver's clock and not older than the receiver's own start, and its
//     sequence number was not seen before (a sliding window of the last
//     1024 numbers per sender). A receiver that restarts therefore cannot
//     be fed a frame recorded before it started.
//   - Decoding is strict and canonical: sizes are bounded (each queue at
//     most MaxQueue bytes; ReadFrame allocates as bytes arrive, not what
//     the length field claims), every field is range-checked, trailing bytes
//     and non-zero reserved bits are refused, and re-encoding a decoded
//     message gives the same bytes (fuzzed). Every refusal is an *Error
//     with a Reason from a fixed set, for the caller's counters, and a
//     Detail naming the field. Authenticity is checked before anything
//     past the fixed header is parsed, and replay state is only touched by
//     authentic frames.
//
// The byte layout is documented on Seal and in docs/protocol.md ("Handoff
// wire format") and pinned by testdata/*.golden.
package wire
