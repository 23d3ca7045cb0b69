// Package objcache keeps the bytes of small static files in memory for the
// node's local server, so that a request for one costs a stat instead of an
// open, a stat, a sniffing read, a seek, a read and a close, with the
// poller's fcntl and epoll_ctl calls around the open (issue 14: eleven
// system calls of the 25 or so a fresh 1 KiB request cost the node's Go
// side).
//
// Contract:
//
//   - New(root, Options) caches files under root whose size is at most
//     Options.MaxFile (64 KiB), all of them together at most MaxTotal
//     bytes (32 MiB).
//   - Get(urlPath) names the file exactly as http.Dir(root).Open does
//     (path.Clean, filepath.Localize, joined to root, symbolic links
//     followed) and stats it on every call. It returns the file's bytes,
//     modification time and base name when it is a regular file of at
//     most MaxFile bytes that
//     could be read whole without changing under the read. Anything else
//     (missing, a directory, too large, unreadable, an unsafe path) is a
//     miss, and the caller serves the path as it would without a cache,
//     so errors and redirects are answered as before.
//   - Invalidation: an entry is used only while the file's device, inode,
//     size, modification time and change time are those it was read with.
//     A file replaced by rename (a new inode), rewritten in place (mtime
//     and ctime), or changed in mode (ctime) is read again on the next
//     Get; a removed file is a miss and leaves the cache. Because
//     timestamps are coarse (a kernel tick, a second on some filesystems),
//     a file is kept only once it has been unchanged for Options.Settle
//     (2 s, which must exceed the filesystem's timestamp granularity) when
//     it is read; until then every Get reads it again, so two
//     writes of the same size within one tick are never confused.
//   - Entries are immutable once returned, but for Entry.Memo, a slot for
//     bytes the user derives from the entry (one user: handoff/local's
//     response head; not counted in maxTotal): callers may keep and read
//     them while the file changes. When maxTotal would be exceeded, entries are
//     dropped (in no particular order) until the new one fits.
//   - Lookup(urlPath) is Get without counting a miss (hits and loads are
//     counted): for a caller that passes a miss on to one that calls Get
//     (handoff/local's fast path), so that a miss is counted once.
//   - Counters: hits, loads (first reads and re-reads after a change) and
//     misses; all atomic.
package objcache
