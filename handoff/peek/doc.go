// Package peek is the reading module's parser: it reads the first bytes a
// client sends — an HTTP/1.x request head or a TLS ClientHello — without
// consuming them, so that the connection can still be served locally, or
// frozen and moved to another node with the request still in its receive
// queue.
//
// Contract:
//
//   - ParseHTTP and ParseClientHello are pure functions of the bytes seen so
//     far. Each returns nil and the parsed head when the bytes hold a
//     complete one, or an *Error whose Verdict is NeedMore (valid so far,
//     wait), Bad (malformed: HTTP answers 400, TLS closes) or TooLarge (the
//     head is longer than MaxHead = 16 KiB: HTTP answers 431). They never
//     read past the head: bytes after it (a request body, a pipelined
//     request, TLS early data) are left alone and reported by Len.
//   - Bad input is decided as early as possible: garbage is refused on its
//     first complete line (HTTP) or record header (TLS), not after a
//     timeout. Error.Reason is a short snake_case label from a fixed set,
//     for counters; Error.Detail names the field and the problem for logs.
//   - A Peeker waits on a real *net.TCPConn, with recv(MSG_PEEK) through
//     syscall.RawConn, until the receive queue holds a complete head; it
//     never consumes a byte, so afterwards the queue holds everything the
//     client sent. It waits on the socket's readiness (no polling loop) and
//     gives up with Verdict Timeout (HTTP answers 408) when the first bytes
//     do not arrive within FirstBytes or the whole head within Head, and
//     with Verdict Closed when the peer closes or resets before the head is
//     complete. A head already queued when it is called is decided by one
//     non-blocking peek that leaves the read deadline alone; when it had to
//     wait, it restores the connection's read deadline to none.
//
// The HTTP parser follows RFC 9112 strictly where a lenient reading would let
// the front server and the server behind it disagree about where a request
// ends (request smuggling): whitespace before a colon, obsolete line folding,
// Transfer-Encoding together with Content-Length, conflicting
// Content-Lengths, a final transfer coding other than chunked, and a missing
// or repeated Host in HTTP/1.1 are all Bad. It accepts a bare LF as a line
// end and skips empty lines before the request line, as the RFC allows.
// Cookies are parsed leniently, as browsers write them: a malformed pair is
// skipped, never fatal.
//
// The ClientHello parser reassembles a ClientHello split over several
// handshake records, rejects SSLv2-style hellos, duplicate extensions and
// malformed lengths, and extracts SNI, session ID, the session_ticket
// extension (RFC 5077), the TLS 1.3 pre_shared_key identities (where a
// TLS 1.3 client carries its resumption ticket), supported_versions and ALPN.
package peek
