package store

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"
)

// Ingest stores what r yields as an object: it streams into a temp file
// in tmp/ while hashing, fsyncs it, and renames it to objects/<sha256hex>
// (0644), then fsyncs objects/. An object already present and intact is
// not rewritten (the temp file is dropped). The object is kept from
// Collect for Options.Grace so the caller can Publish it.
func (s *Store) Ingest(r io.Reader) (sha [32]byte, size int64, err error) {
	tmp, err := os.CreateTemp(s.dir("tmp"), "ingest-*")
	if err != nil {
		return sha, 0, fmt.Errorf("store: ingest: %w", err)
	}
	name := tmp.Name()
	defer os.Remove(name) // ENOENT once renamed
	h := sha256.New()
	size, err = io.Copy(io.MultiWriter(tmp, h), r)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return sha, 0, fmt.Errorf("store: ingest: %w", err)
	}
	h.Sum(sha[:0])
	if err := s.commit(name, sha, size); err != nil {
		return sha, 0, err
	}
	return sha, size, nil
}

// commit moves a complete, verified temp file into objects/, unless an
// intact copy is there already.
func (s *Store) commit(tmpName string, sha [32]byte, size int64) error {
	dst := s.objectPath(sha)
	// An intact copy is kept (hashing, if needed, happens outside mu);
	// it must still be the same file once mu is held, or it is replaced.
	var have stamp
	if f, err := os.Open(dst); err == nil {
		if s.verifyFile(f, sha) == nil {
			if fi, err := f.Stat(); err == nil {
				have, _ = stampOf(fi)
			}
		}
		f.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if have != (stamp{}) {
		if fi, err := os.Stat(dst); err == nil {
			if now, _ := stampOf(fi); now.dev == have.dev && now.ino == have.ino {
				s.recent[sha] = time.Now()
				return nil
			}
		}
	}
	if fi, err := os.Stat(dst); err == nil {
		s.objects--
		s.bytes -= fi.Size()
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return fmt.Errorf("store: ingest: %w", err)
	}
	if err := syncDir(s.dir("objects")); err != nil {
		return fmt.Errorf("store: ingest: %w", err)
	}
	s.objects++
	s.bytes += size
	s.recent[sha] = time.Now()
	s.c.ingested.Add(1)
	s.c.ingestedBytes.Add(uint64(size))
	return nil
}

// Partial is a fetch in progress: tmp/<sha256hex>.part, pinned so Collect
// leaves it (and the object) alone while it is open. The fetcher writes
// it, verifies it, and commits or discards it. A partial left by a
// crashed or failed fetch stays on disk for the next fetch to resume;
// Collect removes one no fetch has touched for Options.PartialMaxAge.
type Partial struct {
	s    *Store
	sha  [32]byte
	f    *os.File
	done bool
}

// OpenPartial opens (creating or resuming) the partial file of sha for
// reading and writing. A second OpenPartial of the same sha before the
// first is closed fails with ErrBusy.
func (s *Store) OpenPartial(sha [32]byte) (*Partial, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pinned[sha] {
		return nil, fmt.Errorf("store: %w: %x", ErrBusy, sha)
	}
	f, err := os.OpenFile(s.partialPath(sha), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.pinned[sha] = true
	return &Partial{s: s, sha: sha, f: f}, nil
}

// File is the partial file, for reading back the part kept and writing
// the rest.
func (p *Partial) File() *os.File { return p.f }

// Commit makes the partial file the object of its SHA-256 by renaming it
// (no copy). The caller has verified its size and SHA-256: Commit trusts
// it and only checks that size matches the file.
func (p *Partial) Commit(size int64) error {
	if p.done {
		return fmt.Errorf("store: partial %x already closed", p.sha)
	}
	p.done = true
	defer p.unpin()
	fi, err := p.f.Stat()
	if err == nil && fi.Size() != size {
		err = fmt.Errorf("partial holds %d bytes, not %d", fi.Size(), size)
	}
	if err == nil {
		err = p.f.Sync()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p.s.partialPath(p.sha))
		return fmt.Errorf("store: commit %x: %w", p.sha, err)
	}
	if err := p.s.commit(p.s.partialPath(p.sha), p.sha, size); err != nil {
		return err
	}
	os.Remove(p.s.partialPath(p.sha)) // left when an intact copy was present
	return nil
}

// Discard removes the partial file.
func (p *Partial) Discard() error {
	if p.done {
		return nil
	}
	p.done = true
	defer p.unpin()
	p.f.Close()
	if err := os.Remove(p.s.partialPath(p.sha)); err != nil && !isNotExist(err) {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Close keeps the partial file on disk for a later resume.
func (p *Partial) Close() error {
	if p.done {
		return nil
	}
	p.done = true
	defer p.unpin()
	return p.f.Close()
}

func (p *Partial) unpin() {
	p.s.mu.Lock()
	delete(p.s.pinned, p.sha)
	p.s.mu.Unlock()
}
