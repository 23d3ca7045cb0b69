// Package local serves HTTP and HTTPS on the node a connection has reached:
// accepted here, handed off to here by another node (TCP_REPAIR), or
// relayed to here by another node. It replaces the node's first web server
// (static files only) and is pure Go: no cgo, no data plane.
//
// Contract:
//
//   - One net/http server is fed by an in-memory listener. ServeHTTP(c,
//     origin) and ServeTLS(c, origin) take ownership of c and return at
//     once. TakeHTTP(c, origin) is ServeHTTP for a caller that lends its
//     goroutine (front.InlineLocal): it returns the fast loop for the
//     caller to run, which Shutdown waits for as for its own. Bytes
//     already in c's receive queue (a request head the front server only
//     peeked, or that a restored socket carries) are read as
//     the first request. ServeTLS completes the TLS handshake within
//     HandshakeTimeout first; a failed handshake is counted (TLSFailures)
//     and logged at debug level only.
//   - The fast path (fast.go, fastparse.go): a ServeHTTP connection is read
//     first by a lean loop when the small-file cache is on. It answers a
//     request only when net/http would have answered it from the cache:
//     a head parseFast takes (GET or HEAD, HTTP/1.1 with one Host or
//     HTTP/1.0 with at most one, a plain absolute path the file server
//     neither redirects nor decodes, headers of tokens and visible ASCII,
//     every line CRLF, no body, Range, If-*, Expect, Pragma, Keep-Alive or
//     Upgrade, at most one Connection whose value is the token close or
//     keep-alive, within 4 KiB), whose group (Group) has no upstream here
//     and is served here (else Forward might apply), whose path Published
//     says is not published content, and whose file the cache holds. Its
//     response is the bytes net/http writes for serveCached's 200 but
//     Date (one head per cache entry, or per entry and connection when
//     it names an origin or a relay; buffers pooled; pipelined
//     responses written together), with net/http's Connection header
//     (close to HTTP/1.1 with Connection: close, keep-alive to HTTP/1.0
//     with Connection: keep-alive); it counts what handle counts
//     (Requests, Static, StaticCached) and StaticFast. After a request
//     that ends the connection (HTTP/1.1 with Connection: close, HTTP/1.0
//     without keep-alive) it closes the connection as net/http does: a
//     plain close after the response, whatever followed the request. At
//     the first request it does not answer, or an incomplete head, the
//     connection goes to net/http with the bytes read and not answered
//     read first, and stays there. The callbacks see a Request with what
//     net/http's carries for them (method, URL.Path, RequestURI, Proto,
//     Close, Host, Header without Host, RemoteAddr, the context's server,
//     local address and connection meta); a request the fast path passes on after
//     asking them is asked again by net/http (Group, and Published: every
//     GET or HEAD the loop parsed and did not answer, a cache miss as well
//     as a published path). Timeouts are net/http's: ReadHeaderTimeout for
//     the first request, IdleTimeout between requests, and, as net/http,
//     a connection that sends fewer than 4 bytes after a response and then
//     stops is closed silently; an incomplete head goes to net/http, whose
//     ReadHeaderTimeout starts then. Shutdown closes the loop's idle
//     connections and those that have sent nothing for 5 s, and waits for
//     the busy ones, as net/http does for its own. An idle connection
//     keeps at most 8 KiB of response buffer and no cached file's bytes.
//   - Every response carries X-Shoal-Node: <the node that served it>; on a
//     connection handed off by node O every response also carries
//     X-Shoal-Handoff: O, and on a connection relayed by node R,
//     X-Shoal-Relay: R. A forwarded request (below) is answered by the far
//     node, so its X-Shoal-Node names the far node and its X-Shoal-Relay
//     this one.
//   - A request is served by the first that applies: (1) its group
//     (Config.Group) has a local upstream (Config.Upstreams): reverse-proxied
//     over a keep-alive pool (TCP or unix socket), body streamed (Expect:
//     100-continue honoured), X-Forwarded-For/Host/Proto set; the session
//     cookie's "<node>~" prefix is stripped from the request's Cookie
//     header and every Set-Cookie of the session cookie from the upstream
//     gets the "<self>~" prefix; an upstream that fails answers 502
//     (UpstreamErrors). (2) Its group is one this node does not serve
//     (Config.Serves false) on a connection that was not relayed, and
//     Config.Forward names another node: the request is reverse-proxied to
//     that node's relay listener over a connection that starts with a PROXY
//     v1 line naming the client, one such connection per client connection
//     and far node, kept alive while the client's is; a failure answers 502
//     (ForwardErrors). A relayed connection is never forwarded, so a
//     request crosses at most one forward. (3) Static files from Content
//     (http.FileServer: Range, conditional requests, sendfile kept), or 404
//     when there is no Content.
//   - This is shoal's keep-alive choice: a connection is moved once, on its
//     first request; a later request on it whose group this node does not
//     serve is forwarded per request, not handed off again.
//   - ServeRelay(ln) serves the node-address relay listener: the source
//     address must be a cluster member (Config.OriginOf), else the
//     connection is closed (RelayUnknown); then a PROXY v1 line (TCP4 or
//     TCP6, at most 107 bytes; UNKNOWN keeps the socket's own addresses)
//     within ProxyLineTimeout, else closed
//     (RelayProxyErrors); then the first byte within HandshakeTimeout: 0x16
//     is TLS (terminated here), anything else HTTP. Handlers see the client
//     of the PROXY line as Request.RemoteAddr and its VIP as the local
//     address.
//   - Counters are atomic and readable while serving. Shutdown closes the
//     relay listeners, aborts handshakes and PROXY reads in progress, closes
//     idle connections and waits for requests in flight until its context
//     ends.
package local
