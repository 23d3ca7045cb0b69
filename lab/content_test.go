package lab

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// goldenSHA256 pins the generator: if these change, every byte-for-byte check
// written against earlier output (and any cached content) silently disagrees.
var goldenSHA256 = map[string]string{
	"index.html": "4134ee917f3362a9fbae7538f8fdb16fcfe5334fee94cc67b1c0723e03dbcc85",
	"obj/1k":     "11c93f2f81ce3a6ffb10f1cb91495af5d3158a8e30d680a4630370e2215ced3d",
	"obj/1m":     "390d9ba283f6c393b53c0954a890912f1187be2660c4c37a3520baf0a209507a",
	"obj/100m":   "33c5c4ae95f15f8134eb6c32465a175b9beb1ce55dc60e4245fc15511a1f4aa0",
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContentBytesDeterministic(t *testing.T) {
	a := readAll(t, ContentBytes("obj/1m", 1<<20))
	b := readAll(t, ContentBytes("obj/1m", 1<<20))
	if len(a) != 1<<20 || !bytes.Equal(a, b) {
		t.Fatalf("two streams of obj/1m differ or have the wrong length (%d)", len(a))
	}
	short := readAll(t, ContentBytes("obj/1m", 1000))
	if !bytes.Equal(short, a[:1000]) {
		t.Fatal("a shorter stream is not a prefix of a longer one")
	}
	other := readAll(t, ContentBytes("obj/1k", 1000))
	if bytes.Equal(other, short) {
		t.Fatal("different names give the same bytes")
	}
	if n := len(readAll(t, ContentBytes("x", 0))); n != 0 {
		t.Fatalf("size 0 gave %d bytes", n)
	}
}

func TestContentSHA256Golden(t *testing.T) {
	for name, want := range goldenSHA256 {
		got, ok := ContentSHA256(name)
		if !ok || got != want {
			t.Errorf("ContentSHA256(%q) = %q, %v; want %q", name, got, ok, want)
		}
		if size, ok := ContentSize(name); !ok || size <= 0 {
			t.Errorf("ContentSize(%q) = %d, %v", name, size, ok)
		}
	}
	if _, ok := ContentSHA256("obj/2k"); ok {
		t.Error("ContentSHA256 knows a file the lab does not serve")
	}
	if len(Objects)+1 != len(goldenSHA256) {
		t.Errorf("Objects changed (%d); pin the new sums here", len(Objects))
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestWriteContent(t *testing.T) {
	dir := t.TempDir()
	start := time.Now()
	if err := WriteContent(dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote content in %v", time.Since(start))
	for name, want := range goldenSHA256 {
		if got := fileSHA256(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s on disk has SHA-256 %s, want %s", name, got, want)
		}
	}

	// A present file of the right size is kept; one of the wrong size is
	// replaced.
	keep := filepath.Join(dir, "obj/1m")
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(keep, old, old); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "obj/1k")
	if err := os.WriteFile(bad, []byte("truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteContent(dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keep); err != nil || !st.ModTime().Equal(old) {
		t.Errorf("obj/1m was rewritten although its size was right")
	}
	if got := fileSHA256(t, bad); got != goldenSHA256["obj/1k"] {
		t.Errorf("obj/1k of the wrong size was not rewritten")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "obj", ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}
}
