package store

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// stamp is what the intact check remembers of a verified object file.
type stamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns
}

type vkey struct {
	sha [32]byte
	st  stamp
}

// verifying is one hash in progress; concurrent checks of the same file
// at the same stamp wait for it instead of hashing again.
type verifying struct {
	done chan struct{}
	err  error
}

// errChanged: the file's stamp moved while it was being hashed.
var errChanged = errors.New("changed while being verified")

// verifyFile checks that f, the object file of sha, is intact. A file
// whose stamp equals the one cached at its last successful check is not
// read again; otherwise it is hashed whole (once, however many callers
// ask at the same time). A corrupt file is removed from the store.
func (s *Store) verifyFile(f *os.File, sha [32]byte) error {
	for range 3 {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		st, stable := stampOf(fi)
		s.vmu.Lock()
		if c, hit := s.checked[sha]; stable && hit && c == st {
			s.vmu.Unlock()
			return nil
		}
		key := vkey{sha, st}
		if v := s.inflig[key]; stable && v != nil {
			s.vmu.Unlock()
			<-v.done
			if v.err == errChanged {
				continue
			}
			return v.err
		}
		v := &verifying{done: make(chan struct{})}
		if stable {
			s.inflig[key] = v
		}
		s.vmu.Unlock()

		start := time.Now()
		err = s.hashFile(f, sha, st, stable)
		s.vmu.Lock()
		if stable {
			delete(s.inflig, key)
		}
		racy := start.Sub(time.Unix(0, st.ctime)) < s.opt.RacyWindow
		if err == nil && stable && !racy {
			s.checked[sha] = st
		} else {
			delete(s.checked, sha)
		}
		s.vmu.Unlock()
		v.err = err
		close(v.done)
		if err == errChanged {
			continue
		}
		if errors.Is(err, ErrCorrupt) {
			s.removeCorrupt(sha, st)
		}
		return err
	}
	s.removeCorrupt(sha, stamp{})
	return fmt.Errorf("%w: %x kept changing while being verified", ErrCorrupt, sha)
}

// hashFile reads the whole file and compares its SHA-256 with sha.
func (s *Store) hashFile(f *os.File, sha [32]byte, st stamp, stable bool) error {
	s.c.verified.Add(1)
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return err
	}
	var got [32]byte
	h.Sum(got[:0])
	if stable {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if now, _ := stampOf(fi); now != st {
			return errChanged
		}
	}
	if got != sha {
		return fmt.Errorf("%w: %x hashes to %x", ErrCorrupt, sha, got)
	}
	return nil
}

// removeCorrupt removes the object file of sha when it is still the file
// found corrupt (same device and inode; any file when st is zero), so a
// fetch can put a good copy in its place, and counts it.
func (s *Store) removeCorrupt(sha [32]byte, st stamp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c.corrupt.Add(1)
	name := s.objectPath(sha)
	fi, err := os.Stat(name)
	if err != nil {
		return
	}
	if now, ok := stampOf(fi); ok && st != (stamp{}) && (now.dev != st.dev || now.ino != st.ino) {
		return // already replaced
	}
	if os.Remove(name) == nil {
		s.objects--
		s.bytes -= fi.Size()
		_ = syncDir(s.dir("objects"))
	}
}

// Has says whether the object is in the store and intact (the same check
// as Serve: hashed unless verified at its current stamp). A corrupt one
// is removed and Has says false.
func (s *Store) Has(sha [32]byte) bool {
	f, err := os.Open(s.objectPath(sha))
	if err != nil {
		return false
	}
	defer f.Close()
	return s.verifyFile(f, sha) == nil
}

// Serve opens the current version of a published path for a client,
// after the intact check. ok is false when the path is not published.
// With ok true, err (ErrMissing or ErrCorrupt, wrapped) means the object
// cannot be served: a corrupt object has been removed and counted, and
// the caller should mark the path unavailable and fetch it again. The
// file returned is the one verified; the caller closes it. It stays
// readable whatever Publish or Collect do next.
func (s *Store) Serve(p string) (*os.File, Entry, bool, error) {
	for {
		snap := s.snap.Load()
		k, ok := (*snap)[p]
		if !ok {
			return nil, Entry{}, false, nil
		}
		e := k.cur
		f, err := os.Open(s.objectPath(e.SHA256))
		if isNotExist(err) && s.snap.Load() != snap {
			continue // published and collected since we looked: look again
		}
		if isNotExist(err) {
			return nil, e, true, fmt.Errorf("store: %s v%d: %w: %s", p, e.Version, ErrMissing, e.Hex())
		}
		if err != nil {
			return nil, e, true, fmt.Errorf("store: %s v%d: %w", p, e.Version, err)
		}
		if err := s.verifyFile(f, e.SHA256); err != nil {
			f.Close()
			return nil, e, true, fmt.Errorf("store: %s v%d: %w", p, e.Version, err)
		}
		return f, e, true, nil
	}
}

// Object opens an object raw, for a peer, without the intact check (the
// puller verifies what it receives). A missing object is ErrMissing.
func (s *Store) Object(sha [32]byte) (*os.File, int64, error) {
	f, err := os.Open(s.objectPath(sha))
	if isNotExist(err) {
		return nil, 0, fmt.Errorf("store: %w: %x", ErrMissing, sha)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("store: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("store: %w", err)
	}
	return f, fi.Size(), nil
}
