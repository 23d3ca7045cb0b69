// Package relay is the handoff's fallback: when a connection cannot move
// (the destination refused or failed, or the state is too large), the
// origin keeps it and relays its bytes to the destination over a second
// TCP connection, and counts that it did.
//
// Contract:
//
//   - Relay copies both ways between two TCP connections until both
//     directions have ended. Each direction runs through splice(2) (Go's
//     TCPConn.ReadFrom uses it when the source is a TCP connection), so
//     payload never enters user space; it is copied in chunks of at most
//     Chunk bytes so the byte counters move while a long transfer runs.
//   - A direction ends at EOF: the other side's write half is shut
//     (CloseWrite), so half-closes propagate and a request/response over a
//     half-closed connection works. When both have ended, both connections
//     close.
//   - Any error in either direction (a reset), Idle passing with no byte
//     moving either way (judged from the kernel's per-socket byte
//     counters, so a quiet request side under a streaming response is not
//     idle), or ctx ending aborts the relay: both
//     connections close at once and Relay returns the first error. Bytes
//     already in the client's receive queue (a peeked request) are relayed
//     first, like any others.
//   - Counters, if given, count relays started, finished cleanly and
//     failed, relays active, and bytes each way; they are safe to read
//     while relays run.
package relay
