package objcache

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// settled is a cache that keeps files at once (their times are those of
// the test's own writes).
func settled(t *testing.T, root string) *Cache {
	t.Helper()
	return New(root, Options{MaxFile: 4096, MaxTotal: 8192, Settle: time.Nanosecond})
}

func write(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, c *Cache, p string, want []byte) *Entry {
	t.Helper()
	e, ok := c.Get(p)
	if !ok || !bytes.Equal(e.Data, want) {
		t.Fatalf("Get(%q) = %v, ok %v; want %d bytes %q", p, e, ok, len(want), want[:min(len(want), 16)])
	}
	return e
}

func TestHitAfterLoad(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "obj", "a.txt"), []byte("hello"))
	c := settled(t, root)
	e := get(t, c, "/obj/a.txt", []byte("hello"))
	get(t, c, "/obj//./x/../a.txt", []byte("hello"))
	if n := c.Counters(); n.Loads != 1 || n.Hits != 1 || n.Entries != 1 || n.Bytes != 5 {
		t.Fatalf("counters %+v; want 1 load, 1 hit, 1 entry of 5 bytes", n)
	}
	if e.Name != "a.txt" {
		t.Fatalf("entry name %q, want a.txt", e.Name)
	}
	fi, _ := os.Stat(filepath.Join(root, "obj", "a.txt"))
	if !e.ModTime.Equal(fi.ModTime()) {
		t.Fatalf("mod time %v, file's %v", e.ModTime, fi.ModTime())
	}
}

// TestInvalidation: a rewrite in place, a replacement by rename, a mode
// change and a removal are all seen on the next Get.
func TestInvalidation(t *testing.T) {
	root := t.TempDir()
	name := filepath.Join(root, "f")
	write(t, name, []byte("version-1"))
	c := settled(t, root)
	old := get(t, c, "/f", []byte("version-1"))

	// Same size, in place, at once: the change time moves.
	write(t, name, []byte("version-2"))
	get(t, c, "/f", []byte("version-2"))
	if !bytes.Equal(old.Data, []byte("version-1")) {
		t.Fatalf("an entry handed out changed: %q", old.Data)
	}
	// Same size, same modification time set back: the change time still moves.
	fi, _ := os.Stat(name)
	write(t, name, []byte("version-3"))
	if err := os.Chtimes(name, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	get(t, c, "/f", []byte("version-3"))
	// Replaced by rename (a new inode), as a publisher does.
	write(t, name+".tmp", []byte("version-4"))
	if err := os.Rename(name+".tmp", name); err != nil {
		t.Fatal(err)
	}
	get(t, c, "/f", []byte("version-4"))
	// Unreadable now: a miss, so the server answers as without a cache.
	if os.Getuid() != 0 {
		os.Chmod(name, 0)
		if _, ok := c.Get("/f"); ok {
			t.Fatal("an unreadable file was served from the cache")
		}
		os.Chmod(name, 0o644)
	}
	// Removed: a miss, and the entry leaves.
	os.Remove(name)
	if _, ok := c.Get("/f"); ok {
		t.Fatal("a removed file was served")
	}
	if n := c.Counters(); n.Entries != 0 || n.Bytes != 0 {
		t.Fatalf("after removal the cache holds %+v", n)
	}
}

// TestSettle: a file changed within Settle of its read is served but read
// again next time; once settled it is kept.
func TestSettle(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "f"), []byte("x"))
	c := New(root, Options{Settle: time.Hour})
	get(t, c, "/f", []byte("x"))
	get(t, c, "/f", []byte("x"))
	if n := c.Counters(); n.Loads != 2 || n.Hits != 0 || n.Entries != 0 {
		t.Fatalf("fresh file: counters %+v; want 2 loads, nothing kept", n)
	}
	c = New(root, Options{Settle: 50 * time.Millisecond})
	time.Sleep(100 * time.Millisecond)
	get(t, c, "/f", []byte("x"))
	get(t, c, "/f", []byte("x"))
	if n := c.Counters(); n.Loads != 1 || n.Hits != 1 {
		t.Fatalf("settled file: counters %+v; want 1 load and 1 hit", n)
	}
}

// TestMisses: what the cache must leave to the file server.
func TestMisses(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "big"), make([]byte, 4097))
	write(t, filepath.Join(root, "dir", "x"), []byte("x"))
	outside := filepath.Join(t.TempDir(), "secret")
	write(t, outside, []byte("secret"))
	c := settled(t, root)
	for _, p := range []string{"/", "", "/big", "/dir", "/dir/", "/missing", "/../" + filepath.Base(filepath.Dir(outside)) + "/secret"} {
		if e, ok := c.Get(p); ok {
			t.Errorf("Get(%q) hit (%d bytes); want a miss", p, len(e.Data))
		}
	}
	if n := c.Counters(); n.Misses != 7 || n.Entries != 0 {
		t.Fatalf("counters %+v; want 7 misses, no entries", n)
	}
}

// TestBound: the entries never exceed MaxTotal.
func TestBound(t *testing.T) {
	root := t.TempDir()
	c := settled(t, root)
	for i := range 10 {
		name := string(rune('a' + i))
		write(t, filepath.Join(root, name), bytes.Repeat([]byte{byte(i)}, 3000))
		get(t, c, "/"+name, bytes.Repeat([]byte{byte(i)}, 3000))
		if n := c.Counters(); n.Bytes > 8192 || n.Bytes != int64(n.Entries)*3000 {
			t.Fatalf("after %d files: %+v; want at most 8192 bytes", i+1, n)
		}
	}
}

// TestOutgrownEntryDropped: a cached file that grows past MaxFile, or is
// replaced by a directory, is a miss, and its entry gives its bytes back.
func TestOutgrownEntryDropped(t *testing.T) {
	root := t.TempDir()
	name := filepath.Join(root, "f")
	write(t, name, []byte("small"))
	c := settled(t, root)
	get(t, c, "/f", []byte("small"))
	write(t, name, bytes.Repeat([]byte("x"), 4097))
	if _, ok := c.Get("/f"); ok {
		t.Fatal("a file past MaxFile was served from the cache")
	}
	if n := c.Counters(); n.Entries != 0 || n.Bytes != 0 {
		t.Fatalf("counters %+v: the outgrown entry stayed", n)
	}
	write(t, filepath.Join(root, "d", "g"), []byte("tiny"))
	get(t, c, "/d/g", []byte("tiny"))
	if err := os.Remove(filepath.Join(root, "d", "g")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "d", "g"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("/d/g"); ok {
		t.Fatal("a directory was served from the cache")
	}
	if n := c.Counters(); n.Entries != 0 || n.Bytes != 0 {
		t.Fatalf("counters %+v: the entry of a path now a directory stayed", n)
	}
}

// TestLookupCountsNoMiss: Lookup counts hits and loads as Get does, and no
// miss; Get counts the miss.
func TestLookupCountsNoMiss(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := New(dir, Options{Settle: time.Nanosecond})
	time.Sleep(time.Millisecond)
	if _, ok := c.Lookup("/a"); !ok {
		t.Fatal("Lookup /a: miss")
	}
	if _, ok := c.Lookup("/a"); !ok {
		t.Fatal("Lookup /a again: miss")
	}
	if _, ok := c.Lookup("/nope"); ok {
		t.Fatal("Lookup /nope: hit")
	}
	if n := c.Counters(); n.Loads != 1 || n.Hits != 1 || n.Misses != 0 {
		t.Fatalf("after Lookups: %+v, want 1 load, 1 hit, no miss", n)
	}
	c.Get("/nope")
	if n := c.Counters(); n.Misses != 1 {
		t.Fatalf("after Get of a missing file: %+v, want 1 miss", n)
	}
}
