// Package store is a node's storage area for published content versions:
// content-addressed objects, a manifest of which version each content
// path serves, atomic publication, an intact check before every client
// read, and collection of what nothing refers to. It is pure Go (no cgo,
// no data plane) and knows nothing of gossip or rollouts.
//
// Layout under the root directory:
//
//	objects/<sha256hex>  one file per object, named by the SHA-256 of its
//	                     bytes, mode 0644, written once, never modified
//	manifest.json        path -> current and previous version
//	                     {version, sha256, size}; format-versioned
//	tmp/                 ingests and manifest writes in progress, and
//	                     partial fetches (<sha256hex>.part)
//	lock                 flock: one process per store
//
// Contract:
//
//   - Open(root, Options) creates the layout, locks it, reads the manifest
//     (a damaged or unknown-format manifest is an error naming the file,
//     never an empty store) and cleans tmp/: every leftover of a crash is
//     removed except partial fetch files named <sha256hex>.part, which
//     are kept so the fetch resumes; Collect removes a partial no fetch
//     has touched for Options.PartialMaxAge (1 h).
//   - Ingest(r) streams r into tmp/ while hashing, fsyncs, renames it to
//     objects/<sha256hex> and fsyncs objects/. An intact copy already
//     present is not rewritten. Partial (OpenPartial, Commit, Discard,
//     Close) is the fetcher's way in: the partial file is renamed into
//     objects/ (no copy) once the fetcher has verified it.
//   - Publish(path, version, sha, size) makes that version the path's
//     current one and the old current its previous one. The manifest is
//     rewritten atomically (temp file, fsync, rename, directory fsync)
//     and only then is the new state swapped in (one atomic pointer), so
//     a reader sees the old entry or the new one, never a mix, and a
//     crash leaves one or the other on disk. Objects are immutable, so a
//     file opened for the old version stays the old version's bytes.
//     The object must be present with that size; a version below the
//     current one is refused; version 0 is refused.
//   - Paths are absolute, cleaned URL paths of at most 1024 bytes without
//     ".." or control characters (ValidatePath; the error names the
//     problem).
//   - Serve(path) opens the current version for a client after the
//     intact check; Has(sha) runs the same check. The check hashes the
//     whole object unless it was verified at the same stamp (device,
//     inode, size, mtime, ctime). ctime is the reliable part: the kernel
//     sets it on every write, truncate, chmod and utimes, and no system
//     call sets it to a chosen value, so an in-place edit that keeps the
//     size and restores mtime with os.Chtimes still changes it and is
//     re-hashed. Because ctime comes from a coarse clock (a jiffy; a
//     second on filesystems with 1 s timestamps), a verification is
//     cached only when the ctime was at least Options.RacyWindow (1 s)
//     old when hashing began (git's "racily clean" rule); until then
//     every check hashes again. Not detected without a hash: bytes
//     changed beneath the filesystem (the block device written directly,
//     media errors); Has/Serve after a restart (the cache is in memory)
//     hash every object once. A corrupt object (wrong SHA-256, or a file
//     that kept changing while hashed) is never returned: it is removed
//     from objects/ so a fetch can replace it, counted
//     (corrupt_detected), and Serve returns ErrCorrupt; a missing one is
//     ErrMissing. The path stays published; the caller marks it
//     unavailable and fetches again.
//   - Object(sha) opens an object raw for a peer, without the check: the
//     puller verifies what it receives.
//   - Unpublish(path) drops the path from the manifest.
//   - Collect removes the objects no path's current or previous version
//     names, except those a fetch holds (an open Partial) and those an
//     Ingest returned less than Options.Grace (10 min) ago, so an Ingest
//     then Publish never races it. A reader holding an object open keeps
//     reading it after it is collected or unpublished (unix semantics).
//   - Stats: ingested, ingested_bytes, published, unpublished,
//     corrupt_detected, collected, collected_bytes, verified (full
//     hashes), partials_removed, and the objects and bytes held.
//
// All methods are safe for concurrent use. Readers (Current, Serve,
// Paths) never take the writers' lock.
package store
