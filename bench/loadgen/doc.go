// Package loadgen is the open-loop HTTP load generator the cluster tests use
// to see, connection by connection, what a node crash, a graceful drain, a
// capacity change or a failing health check does to clients.
//
// Contract:
//   - Run schedules new connections open loop: the i-th starts at
//     t0 + i/Rate for every i with i/Rate < Duration, whether or not earlier
//     ones have finished. A start that finds MaxInFlight connections still
//     open is not attempted and is recorded with Err "skipped". A start the
//     scheduler reaches late is made at once, never dropped; Result.Late
//     records by how much.
//   - Each new connection dials Target through Config.Dial (net.Dialer when
//     nil; pass lab.DialContext bound to "client" for the lab), writes one
//     "GET Path HTTP/1.1" with Connection: close, reads the response and its
//     body, then waits for the server's FIN before closing, so TIME_WAIT is
//     left on the server and a long run at a high rate does not use up the
//     client's ephemeral ports. Connect, request and response share one
//     deadline of Timeout (5 s by default) from the start.
//   - Persistent keep-alive connections (Config.Persistent of them) are
//     opened at t0 and send one request every PersistentEvery (100 ms by
//     default) until t0 + Duration. After a failed request the connection is
//     closed and the next tick opens a new one. A connection the server
//     closed (or reset) while it was idle, or closed after a response with
//     Connection: close, is reopened before the next request without an
//     error: that is what any HTTP client does. Result.Opened says why a
//     request went on a newly opened connection. A close that crosses a
//     request in flight is that request's failure ("eof" or "reset"); the
//     request is not retried.
//   - Every attempt yields one Result; none is retried. Err is "" on
//     success (a 200 whose body is exactly Content-Length bytes, or a
//     complete chunked body, with nothing after it) or one class below;
//     Detail then holds the underlying error text.
//
// The classes of Result.Err:
//
//	reset        ECONNRESET, EPIPE or ECONNABORTED before the body was complete
//	refused      ECONNREFUSED: an RST answered the SYN
//	timeout      the deadline passed, or ETIMEDOUT from the kernel
//	unreachable  EHOSTUNREACH or ENETUNREACH (e.g. no ARP answer)
//	eof          the server closed before a complete response head
//	bad-status   a complete response other than 200 (Status, Node are set)
//	bad-body     a body shorter or longer than Content-Length, or neither
//	             Content-Length nor chunked encoding
//	canceled     Run's ctx ended while the attempt was open
//	skipped      not attempted: MaxInFlight connections were open
//	error        anything else
//
// More of the contract:
//   - Run returns once every connection it started has ended: at most
//     Duration + Timeout after it began, and promptly once ctx ends (open
//     connections are then cut and recorded as "canceled"). It fails only on
//     a bad Config, or with ctx.Err() and the partial report when ctx ended.
//
// Report counters (Started, OK, Failed, Resets, Skipped, ByNode, ByErr,
// SynRetransmitted) cover new connections only: ByNode counts successes,
// SynRetransmitted established connections whose Connect exceeded 900 ms; the Persistent* counters
// cover persistent requests. FirstFailure and LastFailure span both kinds
// but never count "skipped". Result.Start is when the attempt really began;
// Between cuts a window by it and recomputes everything. A run's window is
// [t0, t0+Duration), cut short when ctx ends and stretched to hold a start
// the scheduler made late. Shares gives each node's share of the successful
// new connections in equal time slices of the window.
package loadgen
