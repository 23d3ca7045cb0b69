// Package loadgen is the open-loop HTTP load generator the cluster tests use
// to see, connection by connection, what a node crash, a graceful drain, a
// capacity change or a failing health check does to clients.
//
// Contract:
//   - Run schedules new connections open loop: the i-th starts at
//     t0 + i/Rate for every i with i/Rate < Duration, whether or not earlier
//     ones have finished. A start that finds MaxInFlight connections still
//     open is not attempted and is recorded with Err "skipped". A start the
//     scheduler reaches late is made at once (no catch-up is dropped); the
//     delay is recorded in Result.Late.
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
//     request went on a newly opened connection.
//   - Every attempt yields one Result; none is retried. Err is "" on success
//     or exactly one of:
//     reset       ECONNRESET, EPIPE or ECONNABORTED at any stage
//     refused     ECONNREFUSED (an RST answered the SYN)
//     timeout     the deadline passed, or ETIMEDOUT from the kernel
//     unreachable EHOSTUNREACH or ENETUNREACH (e.g. no ARP answer)
//     eof         the server closed the connection before a full response head
//     bad-status  a response other than 200 (Status and Node are still set)
//     bad-body    a body shorter or longer than Content-Length, or a
//     response with neither Content-Length nor chunked encoding
//     canceled    Run's context was canceled while the attempt was open
//     skipped     not attempted, MaxInFlight was reached
//     error       anything else (Detail holds the message)
//     Detail holds the underlying error text of every failure.
//   - A success is a 200 whose body length matches Content-Length (or a
//     complete chunked body) with nothing after it.
//   - Run returns once every connection it started has ended. It fails only
//     on a bad Config, or with ctx.Err() and the partial report when ctx
//     ends first; it never sends anything after ctx ends or after
//     Duration + Timeout.
//
// Report counters (Started, OK, Failed, Resets, Skipped, ByNode, ByErr,
// SynRetransmitted) cover new connections only; the Persistent* counters
// cover persistent requests. FirstFailure and LastFailure span both kinds
// but never count "skipped". Between cuts a window by Start and recomputes
// everything; Shares gives each node's share of successful new connections
// in equal time slices of the report's window.
package loadgen
