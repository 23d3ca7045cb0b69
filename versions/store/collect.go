package store

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Collect removes the objects nothing keeps: an object is kept while a
// path's current or previous version names it, while a fetch holds its
// partial file open, and for Options.Grace after an Ingest returned it.
// It also removes partial fetch files no fetch holds that were not
// written for Options.PartialMaxAge. A file a reader holds open stays
// readable after its removal (unix semantics). It returns how many
// objects it removed.
func (s *Store) Collect() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	keep := map[[32]byte]bool{}
	for _, k := range *s.snap.Load() {
		keep[k.cur.SHA256] = true
		if k.prev.Version != 0 {
			keep[k.prev.SHA256] = true
		}
	}
	for sha, t := range s.recent {
		if now.Sub(t) < s.opt.Grace {
			keep[sha] = true
		} else {
			delete(s.recent, sha)
		}
	}
	for sha := range s.pinned {
		keep[sha] = true
	}
	ents, err := os.ReadDir(s.dir("objects"))
	if err != nil {
		return 0, fmt.Errorf("store: collect: %w", err)
	}
	removed := 0
	for _, de := range ents {
		sha, ok := parseHex(de.Name())
		if !ok || keep[sha] {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		if err := os.Remove(s.objectPath(sha)); err != nil {
			if isNotExist(err) {
				continue
			}
			return removed, fmt.Errorf("store: collect: %w", err)
		}
		removed++
		s.objects--
		s.bytes -= fi.Size()
		s.c.collected.Add(1)
		s.c.collectedBytes.Add(uint64(fi.Size()))
		s.vmu.Lock()
		delete(s.checked, sha)
		s.vmu.Unlock()
	}
	if removed > 0 {
		if err := syncDir(s.dir("objects")); err != nil {
			return removed, fmt.Errorf("store: collect: %w", err)
		}
	}
	tmps, err := os.ReadDir(s.dir("tmp"))
	if err != nil {
		return removed, fmt.Errorf("store: collect: %w", err)
	}
	for _, de := range tmps {
		h, ok := strings.CutSuffix(de.Name(), ".part")
		if !ok {
			continue
		}
		sha, ok := parseHex(h)
		if !ok || s.pinned[sha] {
			continue
		}
		if fi, err := de.Info(); err == nil && now.Sub(fi.ModTime()) >= s.opt.PartialMaxAge {
			if os.Remove(s.partialPath(sha)) == nil {
				s.c.partial.Add(1)
			}
		}
	}
	return removed, nil
}
