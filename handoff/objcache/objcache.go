package objcache

import (
	"io"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Entry is a cached file. It never changes once returned, but for Memo.
type Entry struct {
	Data    []byte
	ModTime time.Time
	Name    string // base name, as os.FileInfo.Name of the opened file
	// Memo holds bytes the cache's user derives from the entry
	// (handoff/local: its response head), made once per file version
	// instead of once per use, and dropped with the entry.
	Memo atomic.Pointer[[]byte]
}

// identity is what a stat must still report for an entry to be used.
type identity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

type entry struct {
	id   identity
	e    *Entry
	keep bool // unchanged for Settle before it was read
}

// Options bound a Cache. Zero fields take the defaults.
type Options struct {
	// MaxFile is the largest file kept (DefaultMaxFile); larger files
	// are misses.
	MaxFile int64
	// MaxTotal bounds the bytes of all entries (DefaultMaxTotal).
	MaxTotal int64
	// Settle is how long a file must have been left unchanged (by its
	// modification and change times) before its bytes are kept
	// (DefaultSettle). A file changed within Settle of its read is served
	// from that read and read again next time: a filesystem's timestamps
	// are coarse (a kernel tick, or seconds), and a second write of the
	// same size within one tick would leave the stat unchanged. It must
	// exceed the filesystem's timestamp granularity by the time a write
	// takes: the default suits filesystems with sub-second timestamps
	// (ext4, xfs, btrfs, tmpfs), not FAT's 2 s.
	Settle time.Duration
}

// Defaults of Options.
const (
	DefaultMaxFile  = 64 << 10
	DefaultMaxTotal = 32 << 20
	DefaultSettle   = 2 * time.Second
)

// Cache is a cache of small files under one root. Create it with New.
type Cache struct {
	root              string
	maxFile, maxTotal int64
	settle            time.Duration

	mu    sync.RWMutex
	m     map[string]*entry // by file name under root
	total int64

	hits, loads, misses atomic.Uint64
}

// Counters is a snapshot of a Cache's counters.
type Counters struct {
	Hits, Loads, Misses uint64
	// Entries and Bytes are what the cache holds now.
	Entries int
	Bytes   int64
}

// New returns a cache of the small files under root.
func New(root string, o Options) *Cache {
	if root == "" {
		root = "."
	}
	if o.MaxFile <= 0 {
		o.MaxFile = DefaultMaxFile
	}
	if o.MaxTotal <= 0 {
		o.MaxTotal = DefaultMaxTotal
	}
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	return &Cache{root: root, maxFile: o.MaxFile, maxTotal: o.MaxTotal, settle: o.Settle, m: map[string]*entry{}}
}

// Get returns the cached file urlPath names, read again when it changed;
// ok is false when the path is not a small regular file it could read
// (see the package contract).
func (c *Cache) Get(urlPath string) (*Entry, bool) {
	e, ok := c.Lookup(urlPath)
	if !ok {
		c.misses.Add(1)
	}
	return e, ok
}

// Lookup is Get without counting a miss: for a caller that, on a miss,
// passes the request on to one that calls Get.
func (c *Cache) Lookup(urlPath string) (*Entry, bool) {
	name, ok := c.name(urlPath)
	if !ok {
		return nil, false
	}
	fi, err := os.Stat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > c.maxFile {
		// Gone, grown past MaxFile or no longer a regular file: its
		// entry, if any, is of no use and gives its bytes back.
		c.drop(name)
		return nil, false
	}
	id, ok := identityOf(fi)
	if !ok {
		c.drop(name)
		return nil, false
	}
	c.mu.RLock()
	en := c.m[name]
	c.mu.RUnlock()
	if en != nil && en.id == id {
		c.hits.Add(1)
		return en.e, true
	}
	en, ok = c.load(name)
	if !ok {
		c.drop(name)
		return nil, false
	}
	c.loads.Add(1)
	if en.keep {
		c.put(name, en)
	}
	return en.e, true
}

// name maps a URL path to a file name as http.Dir.Open does.
func (c *Cache) name(urlPath string) (string, bool) {
	p := path.Clean("/" + urlPath)[1:]
	if p == "" {
		return "", false // the root is a directory
	}
	p, err := filepath.Localize(p)
	if err != nil {
		return "", false
	}
	return filepath.Join(c.root, p), true
}

// load reads name whole and checks that it did not change meanwhile.
func (c *Cache) load(name string) (*entry, bool) {
	f, err := os.Open(name)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil || !before.Mode().IsRegular() || before.Size() > c.maxFile {
		return nil, false
	}
	now := time.Now()
	data := make([]byte, before.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, false
	}
	// One more byte means the file grew under the read.
	var extra [1]byte
	if n, _ := f.Read(extra[:]); n != 0 {
		return nil, false
	}
	after, err := f.Stat()
	if err != nil {
		return nil, false
	}
	id, ok1 := identityOf(before)
	id2, ok2 := identityOf(after)
	if !ok1 || !ok2 || id != id2 {
		return nil, false
	}
	changed := time.Unix(id.ctime.Unix())
	if mt := before.ModTime(); mt.After(changed) {
		changed = mt // set into the future
	}
	keep := now.Sub(changed) >= c.settle
	return &entry{id: id, keep: keep, e: &Entry{Data: data, ModTime: before.ModTime(), Name: before.Name()}}, true
}

func (c *Cache) put(name string, en *entry) {
	size := int64(len(en.e.Data))
	if size > c.maxTotal {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.m[name]; old != nil {
		c.total -= int64(len(old.e.Data))
		delete(c.m, name)
	}
	for k, v := range c.m {
		if c.total+size <= c.maxTotal {
			break
		}
		c.total -= int64(len(v.e.Data))
		delete(c.m, k)
	}
	c.m[name] = en
	c.total += size
}

func (c *Cache) drop(name string) {
	c.mu.RLock()
	_, ok := c.m[name]
	c.mu.RUnlock()
	if !ok {
		return
	}
	c.mu.Lock()
	if old := c.m[name]; old != nil {
		c.total -= int64(len(old.e.Data))
		delete(c.m, name)
	}
	c.mu.Unlock()
}

// Counters reads the counters; safe at any time.
func (c *Cache) Counters() Counters {
	c.mu.RLock()
	n, b := len(c.m), c.total
	c.mu.RUnlock()
	return Counters{Hits: c.hits.Load(), Loads: c.loads.Load(), Misses: c.misses.Load(), Entries: n, Bytes: b}
}

func identityOf(fi os.FileInfo) (identity, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return identity{}, false
	}
	return identity{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}, true
}
