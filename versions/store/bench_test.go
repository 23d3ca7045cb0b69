package store

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// BenchmarkServeVerified is the cost of Serve for an object whose stamp
// is cached: load the snapshot, open, fstat, compare.
func BenchmarkServeVerified(b *testing.B) {
	s, err := Open(b.TempDir(), Options{RacyWindow: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sha, n, err := s.Ingest(bytes.NewReader(blob(1, 1<<20)))
	if err != nil {
		b.Fatal(err)
	}
	s.Publish("/p", 1, sha, n)
	time.Sleep(5 * time.Millisecond)
	f, _, _, _ := s.Serve("/p")
	f.Close()
	v := s.Stats().Verified
	for b.Loop() {
		f, _, _, err := s.Serve("/p")
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	if s.Stats().Verified != v {
		b.Fatal("the cached object was hashed again")
	}
}

// BenchmarkVerifyHash is the cost of an intact check that hashes (a fresh
// or changed 16 MiB object). MB/s is the figure.
func BenchmarkVerifyHash(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sha, _, err := s.Ingest(io.LimitReader(bytes.NewReader(blob(2, 16<<20)), 16<<20))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(16 << 20)
	for b.Loop() {
		s.vmu.Lock()
		delete(s.checked, sha)
		s.vmu.Unlock()
		if !s.Has(sha) {
			b.Fatal("not intact")
		}
	}
}
