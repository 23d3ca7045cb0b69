package store

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

// manifestFormat is the manifest's format version; Open refuses another.
const manifestFormat = 1

type manifestFile struct {
	Format int                      `json:"format"`
	Paths  map[string]manifestEntry `json:"paths"`
}

type manifestEntry struct {
	Current  manifestVersion  `json:"current"`
	Previous *manifestVersion `json:"previous,omitempty"`
}

type manifestVersion struct {
	Version uint64 `json:"version"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
}

func toFile(e Entry) manifestVersion {
	return manifestVersion{Version: e.Version, SHA256: hex.EncodeToString(e.SHA256[:]), Size: e.Size}
}

func fromFile(p string, v manifestVersion) (Entry, error) {
	sha, err := ParseSHA256(v.SHA256)
	if err != nil {
		return Entry{}, fmt.Errorf("path %q: %w", p, err)
	}
	if v.Version == 0 || v.Size < 0 {
		return Entry{}, fmt.Errorf("path %q: version %d size %d", p, v.Version, v.Size)
	}
	return Entry{Path: p, Version: v.Version, SHA256: sha, Size: v.Size}, nil
}

// readManifest reads the manifest; a missing one is an empty store, a
// damaged one an error naming the file (never silently an empty store).
func readManifest(name string) (map[string]kept, error) {
	m := map[string]kept{}
	b, err := os.ReadFile(name)
	if isNotExist(err) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var f manifestFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("store: manifest %s is damaged: %w", name, err)
	}
	if f.Format != manifestFormat {
		return nil, fmt.Errorf("store: manifest %s has format %d, this build reads %d", name, f.Format, manifestFormat)
	}
	for p, me := range f.Paths {
		if err := ValidatePath(p); err != nil {
			return nil, fmt.Errorf("store: manifest %s: %w", name, err)
		}
		cur, err := fromFile(p, me.Current)
		if err != nil {
			return nil, fmt.Errorf("store: manifest %s: %w", name, err)
		}
		k := kept{cur: cur}
		if me.Previous != nil {
			if k.prev, err = fromFile(p, *me.Previous); err != nil {
				return nil, fmt.Errorf("store: manifest %s: %w", name, err)
			}
		}
		m[p] = k
	}
	return m, nil
}

// writeManifest replaces the manifest atomically: a temp file in tmp/,
// fsync, rename over manifest.json, fsync of the root directory.
func (s *Store) writeManifest(m map[string]kept) error {
	f := manifestFile{Format: manifestFormat, Paths: make(map[string]manifestEntry, len(m))}
	for p, k := range m {
		me := manifestEntry{Current: toFile(k.cur)}
		if k.prev.Version != 0 {
			pv := toFile(k.prev)
			me.Previous = &pv
		}
		f.Paths[p] = me
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("store: manifest: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir("tmp"), "manifest-*")
	if err != nil {
		return fmt.Errorf("store: manifest: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: ENOENT, ignored
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("store: manifest: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("store: manifest: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("store: manifest: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store: manifest: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.dir(manifestName)); err != nil {
		return fmt.Errorf("store: manifest: %w", err)
	}
	if err := syncDir(s.root); err != nil {
		return fmt.Errorf("store: manifest: %w", err)
	}
	return nil
}
