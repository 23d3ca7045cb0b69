package lab

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

const contentDirName = "content"

// ContentDir is the directory every lab node serves (http.content).
const ContentDir = StateDir + "/" + contentDirName

// Object is one file of the lab content. Name is its path below ContentDir
// and, with a leading slash, its URL path.
type Object struct {
	Name string
	Size int64
}

// Objects are the generated files every node serves, smallest first: sizes
// are binary (1k = 1024 bytes, 1m = 1 MiB, 100m = 100 MiB).
var Objects = []Object{
	{"obj/1k", 1 << 10},
	{"obj/1m", 1 << 20},
	{"obj/100m", 100 << 20},
}

// IndexHTML is served for "/" (file index.html). It is fixed text, so its
// hash never changes with the machine.
const IndexHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>shoal lab</title></head>
<body>
<h1>shoal lab</h1>
<p>Every node of the lab serves these same files; the X-Shoal-Node header says which node answered.</p>
<ul>
<li><a href="/obj/1k">obj/1k</a> (1024 bytes)</li>
<li><a href="/obj/1m">obj/1m</a> (1048576 bytes)</li>
<li><a href="/obj/100m">obj/100m</a> (104857600 bytes)</li>
</ul>
</body></html>
`

// ContentBytes returns size bytes of the deterministic stream named name.
// The stream is ChaCha8 (math/rand/v2, a fixed specified algorithm) keyed by
// SHA-256 of a version tag and the name, so every machine and Go version
// produces the same bytes, the streams of different names are unrelated (a
// body served under the wrong name is caught) and generation runs at GB/s.
// A shorter size yields a prefix of a longer one.
func ContentBytes(name string, size int64) io.Reader {
	seed := sha256.Sum256([]byte("shoal-lab-content-v1\x00" + name))
	return io.LimitReader(rand.NewChaCha8(seed), size)
}

var (
	sumMu    sync.Mutex
	sumCache = map[string]string{}
)

// ContentSHA256 returns the hex SHA-256 a node must serve for name, which is
// "index.html" or the Name of one of Objects; ok is false for any other name.
// Sums are computed from the generator on first use and cached (the 100 MiB
// object takes a fraction of a second).
func ContentSHA256(name string) (sum string, ok bool) {
	r, ok := contentReader(name)
	if !ok {
		return "", false
	}
	sumMu.Lock()
	defer sumMu.Unlock()
	if s, ok := sumCache[name]; ok {
		return s, true
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, r, make([]byte, 1<<20)); err != nil {
		panic(err) // the generator cannot fail
	}
	s := hex.EncodeToString(h.Sum(nil))
	sumCache[name] = s
	return s, true
}

// ContentSize returns the size of a lab file, as ContentSHA256 names it.
func ContentSize(name string) (int64, bool) {
	if name == "index.html" {
		return int64(len(IndexHTML)), true
	}
	for _, o := range Objects {
		if o.Name == name {
			return o.Size, true
		}
	}
	return 0, false
}

func contentReader(name string) (io.Reader, bool) {
	if name == "index.html" {
		return strings.NewReader(IndexHTML), true
	}
	for _, o := range Objects {
		if o.Name == name {
			return ContentBytes(o.Name, o.Size), true
		}
	}
	return nil, false
}

// WriteContent writes index.html and Objects into dir. A generated object
// already present with the right size is kept (Up runs often, and the bytes
// cannot differ unless someone edited the file in place); each file is
// written under a temporary name and renamed, so a crash never leaves a
// truncated file with the final name.
func WriteContent(dir string) error {
	if err := writeIfChanged(filepath.Join(dir, "index.html"), []byte(IndexHTML)); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for _, o := range Objects {
		path := filepath.Join(dir, o.Name)
		if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Size() == o.Size {
			continue
		}
		if err := writeAtomic(path, func(w io.Writer) error {
			_, err := io.CopyBuffer(w, ContentBytes(o.Name, o.Size), buf)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return writeAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func writeAtomic(path string, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("lab: content: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("lab: content: %w", err)
	}
	tmp := f.Name()
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("lab: content %s: %w", path, err)
	}
	return nil
}
