// Package front is the reading module's front server: it accepts the
// connections that land on this node's VIP:80 and VIP:443, reads the
// request head or the TLS ClientHello without consuming it, asks where the
// connection belongs, and serves it here, moves it to another node, or
// relays it there.
//
// Contract:
//
//   - Listen opens a listener for Serve whose accepted connections inherit
//     TCP keepalive (KeepAlive, Go's defaults) from the listening socket
//     instead of four setsockopt calls each.
//   - Serve(ln, tls) runs one accept loop per listener and one goroutine
//     per connection (up to 16 goroutines done with a connection wait for
//     the next one instead of exiting: a new goroutine's creation and
//     stack growth cost a fresh connection more than the wait). The
//     goroutine peeks (Config.Peeker: PeekHTTP, or
//     PeekClientHello when tls) and never consumes a byte before the
//     connection is given away, so whoever serves it reads the request
//     from the socket as the client sent it.
//   - A head that is refused is answered on HTTP with the status of its
//     verdict (400 malformed, 408 not complete in time, 431 longer than
//     16 KiB) in a minimal "Connection: close" response carrying
//     X-Shoal-Node; on TLS it is not answered. Either way the connection is
//     closed without a reset: the front shuts its write half, discards what
//     the client still sends for at most Config.Drain (and at most
//     DrainBytes), then closes, because closing a socket whose receive
//     queue holds unread bytes sends RST, and a client that gets RST may
//     lose the response it has not read yet. A peer that closes or resets
//     before its head is complete is counted and not answered.
//   - A complete head becomes a Request (cleaned path, Host without port or
//     the SNI, lowercased; cookies; the node a TLS session names, from
//     Config.SessionNode; the client's address) and Config.Decide says who
//     serves it. Local (or Decide nil, or Decision.Node empty or Self):
//     Config.Local.ServeHTTP / ServeTLS(c, "") takes the connection; a
//     Local that is an InlineLocal takes a plain HTTP one with TakeHTTP,
//     and the connection's goroutine, once the front has let go of the
//     connection, runs what TakeHTTP returned (serving it there: one
//     goroutine per connection from accept to close).
//     Remote: Config.Move moves it; Move nil means handoff is disabled and
//     the connection is relayed. A move that fails with the connection
//     intact is relayed: dial Config.RelayAddr(node) within RelayDial,
//     write a PROXY protocol v1 line, then relay.Relay both ways. When
//     there is no relay address or the dial fails, the connection is
//     served locally (fallback_local). A move that fails with the
//     connection lost is counted and the connection closed: there is
//     nothing left to serve.
//   - No connection is dropped uncounted: Stats counts accepts per
//     listener, refusals by peek verdict and reason, decisions (local,
//     remote by wire.Reason, no_member), moves and their failures (intact
//     or lost), relays (relay.Counters plus dial failures), local
//     fallbacks, and the connections the front holds now. Every counter is
//     an atomic; Stats returns a snapshot.
//   - Shutdown(ctx) closes the listeners, then waits for every connection
//     the front still holds (peeking, deciding, moving, relaying, or in a
//     Local call that has not returned). When ctx ends first it cancels
//     moves and relays and closes the connections it holds, waits briefly
//     for their goroutines to return, and returns ctx's error. After
//     Shutdown no goroutine of the Server remains (a goroutine that went
//     on serving for an InlineLocal is the Local's, which waits for it),
//     and Serve returns ErrServerClosed.
//
// The package is pure Go: it knows the data plane, the transfer, routing
// and the local server only through Config's function values and the
// Local interface, so it is tested on loopback with fakes for them.
package front
