// Package fetch moves stored objects between nodes over HTTP: the object
// server every node runs on content.port, and the puller that brings an
// object into the local store from peers that hold it. It is pure Go and
// knows peers only as addresses: the caller chooses and orders them (from
// the update table's holders) and says who is a member.
//
// Object server contract (Handler):
//
//   - GET or HEAD /v1/objects/<sha256hex> answers the object's raw bytes
//     through http.ServeContent, so Range (206, Content-Range) and
//     If-Range work; ETag is "<sha256hex>", Content-Type
//     application/octet-stream. No intact check: the puller verifies, and
//     a peer with a corrupt copy is a bad peer to it.
//   - A source address that isMember refuses (nil isMember refuses all)
//     is 403; a name that is not 64 lowercase hex digits is 400; another
//     method is 405; an object not held is 404. Each answer is counted
//     (ServerStats), and so are the body bytes written.
//
// Puller contract (Fetcher.Fetch(ctx, sha, size, peers)):
//
//   - An object the store already holds intact is not fetched (already).
//   - The object streams into the store's partial file
//     (tmp/<sha256hex>.part, store.Partial) while it is hashed. Peers are
//     tried in the order given. A transfer that breaks (truncated), goes
//     quiet for Stall (stall: no byte of headers or body for 10 s by
//     default), or a peer that cannot be reached (dial) or answers
//     anything but 200/206 for the asked range (http_status) moves on to
//     the next peer, which is asked for the rest with "Range:
//     bytes=<have>-": bytes received are kept. A peer that ignores the
//     Range (200) is read from the start.
//   - At size bytes the SHA-256 is compared; a mismatch (checksum; also
//     a peer announcing or sending more than size bytes) truncates the
//     partial file to zero and the next peer starts from the beginning,
//     so corrupt bytes are never resumed from and never ingested. When
//     resumed bytes from one peer and the rest from another do not hash
//     right, the peer that finished is the one counted.
//   - The list is walked up to Passes times (2), another pass only when
//     the last one received bytes. When every peer failed, the error
//     names each peer's last failure and its cause; nothing is ingested;
//     the partial file stays for a later Fetch to resume (store.Collect
//     removes it after an hour untouched).
//   - A disk error here (io) ends the Fetch at once: another peer would
//     not help. The caller's context ending ends it too, with ctx's error
//     and the partial kept.
//   - A verified object is committed by renaming the partial file into
//     objects/ (no copy). The caller then publishes it in the store.
//   - Stats counts fetches, objects fetched, bytes received, Range
//     resumes, failures per peer attempt by cause (dial, http_status,
//     stall, truncated, checksum, io, cancelled), and Rate, the bytes
//     per second over the last 8 fetched objects (bytes received over
//     the time from Fetch to commit).
//
// Concurrent Fetches of different objects are fine; a second Fetch of an
// object being fetched fails with store.ErrBusy (the caller dedupes).
package fetch
