package store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors a caller tells apart with errors.Is.
var (
	// ErrCorrupt: the object's bytes do not hash to its name (or changed
	// while being verified). It has been removed from the store.
	ErrCorrupt = errors.New("object corrupt")
	// ErrMissing: the object a published version names is not in the store.
	ErrMissing = errors.New("object missing")
	// ErrBusy: a fetch of this object is already in progress.
	ErrBusy = errors.New("object already being fetched")
)

// Entry is one version of a content path.
type Entry struct {
	Path    string
	Version uint64
	SHA256  [32]byte
	Size    int64
}

// Hex is the entry's SHA-256 in lowercase hex, the object's file name.
func (e Entry) Hex() string { return hex.EncodeToString(e.SHA256[:]) }

// Options tune a store; the zero value holds the defaults.
type Options struct {
	// RacyWindow: a verification is cached only when the object's ctime
	// is at least this far in the past, because the kernel stamps ctime
	// from a coarse clock (a few ms; a second on some filesystems), so an
	// edit within the same tick as the verification would leave the
	// stamp unchanged. Default 1 s.
	RacyWindow time.Duration
	// Grace keeps an object that was ingested (or found present by an
	// Ingest) out of Collect for this long, so an Ingest followed by a
	// Publish never races a Collect. Default 10 minutes.
	Grace time.Duration
	// PartialMaxAge: Collect removes a partial fetch file that no fetch
	// holds and that was not written for this long. Default 1 hour.
	PartialMaxAge time.Duration
}

func (o *Options) defaults() {
	if o.RacyWindow == 0 {
		o.RacyWindow = time.Second
	}
	if o.Grace == 0 {
		o.Grace = 10 * time.Minute
	}
	if o.PartialMaxAge == 0 {
		o.PartialMaxAge = time.Hour
	}
}

// kept is what the manifest holds for one path: the current version and
// the one before it (zero Version when there is none).
type kept struct {
	cur, prev Entry
}

// Store is a node's storage area. Its methods are safe for concurrent use.
type Store struct {
	root string
	opt  Options
	lock *os.File // flock held while open

	// snap is the published state, an immutable map swapped whole by
	// Publish and Unpublish (readers never lock).
	snap atomic.Pointer[map[string]kept]

	// mu serializes the writers: manifest changes, the commit step of an
	// ingest, Collect, and removal of a corrupt object, so that Collect
	// never removes an object another writer has just decided to keep.
	mu      sync.Mutex
	recent  map[[32]byte]time.Time // ingested at, for Grace
	pinned  map[[32]byte]bool      // partial fetch open
	objects int64                  // gauge, under mu
	bytes   int64                  // gauge, under mu

	vmu     sync.Mutex
	checked map[[32]byte]stamp  // verified intact at this stamp
	inflig  map[vkey]*verifying // hashes in progress

	c counters
}

type counters struct {
	ingested, ingestedBytes, published, unpublished       atomic.Uint64
	corrupt, collected, collectedBytes, verified, partial atomic.Uint64
}

// Stats is a snapshot of a store's counters and gauges.
type Stats struct {
	Ingested        uint64 `json:"ingested"`         // objects written (Ingest, fetch commits)
	IngestedBytes   uint64 `json:"ingested_bytes"`   // their bytes
	Published       uint64 `json:"published"`        // Publish calls that changed a path
	Unpublished     uint64 `json:"unpublished"`      // paths removed
	CorruptDetected uint64 `json:"corrupt_detected"` // objects found corrupt and removed
	Collected       uint64 `json:"collected"`        // objects removed by Collect
	CollectedBytes  uint64 `json:"collected_bytes"`  // their bytes
	Verified        uint64 `json:"verified"`         // full hashes of an object (intact checks that read it)
	PartialsRemoved uint64 `json:"partials_removed"` // stale partial fetch files removed
	Objects         int64  `json:"objects"`          // objects held now
	Bytes           int64  `json:"bytes"`            // their bytes
}

const manifestName = "manifest.json"

// Open opens (creating it if needed) the storage area at root, takes an
// exclusive lock on it, reads the manifest and cleans tmp/: an ingest or
// manifest temp file is a crash's leftover and removed; a partial fetch
// file (tmp/<sha256hex>.part) is kept so the fetch resumes where it
// stopped.
func Open(root string, opt Options) (*Store, error) {
	opt.defaults()
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("store: root %q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	for _, d := range []string{root, filepath.Join(root, "objects"), filepath.Join(root, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	lf, err := os.OpenFile(filepath.Join(root, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("store: %s is in use by another process: %w", root, err)
	}
	s := &Store{
		root:    root,
		opt:     opt,
		lock:    lf,
		recent:  map[[32]byte]time.Time{},
		pinned:  map[[32]byte]bool{},
		checked: map[[32]byte]stamp{},
		inflig:  map[vkey]*verifying{},
	}
	m, err := readManifest(filepath.Join(root, manifestName))
	if err != nil {
		lf.Close()
		return nil, err
	}
	s.snap.Store(&m)
	if err := s.cleanTmp(); err != nil {
		lf.Close()
		return nil, err
	}
	ents, err := os.ReadDir(s.dir("objects"))
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("store: %w", err)
	}
	for _, de := range ents {
		if _, ok := parseHex(de.Name()); !ok {
			continue
		}
		if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() {
			s.objects++
			s.bytes += fi.Size()
		}
	}
	return s, nil
}

// Close releases the store's lock. Files handed out stay readable.
func (s *Store) Close() error { return s.lock.Close() }

// Root is the storage area's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) dir(parts ...string) string {
	return filepath.Join(append([]string{s.root}, parts...)...)
}

func (s *Store) objectPath(sha [32]byte) string {
	return s.dir("objects", hex.EncodeToString(sha[:]))
}

func (s *Store) partialPath(sha [32]byte) string {
	return s.dir("tmp", hex.EncodeToString(sha[:])+".part")
}

// cleanTmp removes every file in tmp/ except partial fetch files.
func (s *Store) cleanTmp() error {
	ents, err := os.ReadDir(s.dir("tmp"))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, de := range ents {
		name := de.Name()
		if h, ok := strings.CutSuffix(name, ".part"); ok && de.Type().IsRegular() {
			if _, ok := parseHex(h); ok {
				continue
			}
		}
		if err := os.RemoveAll(s.dir("tmp", name)); err != nil {
			return fmt.Errorf("store: cleaning tmp: %w", err)
		}
	}
	return nil
}

func parseHex(name string) ([32]byte, bool) {
	var sha [32]byte
	if len(name) != 64 || strings.ToLower(name) != name {
		return sha, false
	}
	if _, err := hex.Decode(sha[:], []byte(name)); err != nil {
		return sha, false
	}
	return sha, true
}

// ParseSHA256 parses a 64-digit lowercase hex SHA-256; the error names the
// problem.
func ParseSHA256(s string) ([32]byte, error) {
	sha, ok := parseHex(s)
	if !ok {
		return sha, fmt.Errorf("%.80q is not a SHA-256 (64 lowercase hex digits)", s)
	}
	return sha, nil
}

// Current is the path's current version.
func (s *Store) Current(p string) (Entry, bool) {
	k, ok := (*s.snap.Load())[p]
	return k.cur, ok
}

// Previous is the version the path had before its current one, kept until
// the next Publish of the path.
func (s *Store) Previous(p string) (Entry, bool) {
	k, ok := (*s.snap.Load())[p]
	return k.prev, ok && k.prev.Version != 0
}

// Paths lists the published paths, sorted.
func (s *Store) Paths() []string {
	m := *s.snap.Load()
	out := make([]string, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Publish makes (version, sha, size) the path's current version; the
// version it replaces becomes the previous one. The manifest is written
// to disk (temp file, fsync, rename, directory fsync) before the change
// is visible, so a reader sees the old entry or the new one, and a crash
// leaves one or the other. The object must be in the store with that
// size; Publish does not hash it again (Ingest and fetch commits have
// just hashed it; Serve checks it before every client read). A version
// below the current one is refused; the same version with another
// SHA-256 replaces it (the update table's merge decided).
func (s *Store) Publish(p string, version uint64, sha [32]byte, size int64) error {
	if err := ValidatePath(p); err != nil {
		return err
	}
	if version == 0 {
		return fmt.Errorf("store: publish %s: version 0 (versions start at 1)", p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.objectPath(sha))
	if err != nil {
		return fmt.Errorf("store: publish %s v%d: %w: %x", p, version, ErrMissing, sha)
	}
	if fi.Size() != size {
		return fmt.Errorf("store: publish %s v%d: object %x holds %d bytes, not %d", p, version, sha, fi.Size(), size)
	}
	old := *s.snap.Load()
	k, had := old[p]
	if had {
		if version < k.cur.Version {
			return fmt.Errorf("store: publish %s v%d: older than the current v%d", p, version, k.cur.Version)
		}
		if version == k.cur.Version && sha == k.cur.SHA256 {
			return nil
		}
	}
	next := make(map[string]kept, len(old)+1)
	for q, v := range old {
		next[q] = v
	}
	nk := kept{cur: Entry{Path: p, Version: version, SHA256: sha, Size: size}}
	if had {
		nk.prev = k.cur
	}
	next[p] = nk
	if err := s.writeManifest(next); err != nil {
		return err
	}
	s.snap.Store(&next)
	s.c.published.Add(1)
	return nil
}

// Unpublish removes the path from the manifest; its objects go at the
// next Collect unless another path refers to them.
func (s *Store) Unpublish(p string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.snap.Load()
	if _, ok := old[p]; !ok {
		return nil
	}
	next := make(map[string]kept, len(old))
	for q, v := range old {
		if q != p {
			next[q] = v
		}
	}
	if err := s.writeManifest(next); err != nil {
		return err
	}
	s.snap.Store(&next)
	s.c.unpublished.Add(1)
	return nil
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	objs, b := s.objects, s.bytes
	s.mu.Unlock()
	return Stats{
		Ingested:        s.c.ingested.Load(),
		IngestedBytes:   s.c.ingestedBytes.Load(),
		Published:       s.c.published.Load(),
		Unpublished:     s.c.unpublished.Load(),
		CorruptDetected: s.c.corrupt.Load(),
		Collected:       s.c.collected.Load(),
		CollectedBytes:  s.c.collectedBytes.Load(),
		Verified:        s.c.verified.Load(),
		PartialsRemoved: s.c.partial.Load(),
		Objects:         objs,
		Bytes:           b,
	}
}

// syncDir makes a rename or unlink in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
