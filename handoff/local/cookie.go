package local

import (
	"net/http"
	"strings"

	"github.com/shoal-lb/shoal/handoff/route"
)

// The session cookie codec is handoff/route's ("<node>~<app value>"), so
// the value this package writes is the one the decision reads.

// validNode says whether s is a node ID (config's rule: 1 to 32 of
// [A-Za-z0-9_-]).
func validNode(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// stripSessionPrefix removes the "<node>~" prefix from every cookie named
// name in h's Cookie headers, so the upstream sees the value it set. Other
// cookies are left byte for byte.
func stripSessionPrefix(h http.Header, name string) {
	if name == "" {
		return
	}
	lines := h.Values("Cookie")
	changed := false
	out := make([]string, len(lines))
	for i, line := range lines {
		parts := strings.Split(line, ";")
		for j, p := range parts {
			k, v, ok := strings.Cut(p, "=")
			if !ok || strings.TrimSpace(k) != name {
				continue
			}
			quoted := len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"'
			inner := v
			if quoted {
				inner = v[1 : len(v)-1]
			}
			if _, app, ok := route.SessionNode(inner); ok {
				if quoted {
					app = `"` + app + `"`
				}
				parts[j] = k + "=" + app
				changed = true
			}
		}
		out[i] = strings.Join(parts, ";")
	}
	if changed {
		h["Cookie"] = out
	}
}

// prefixSetCookie prefixes the value of every Set-Cookie of name in h with
// "<self>~", so later requests carrying it name this node. An empty value
// (a deletion) stays empty.
func prefixSetCookie(h http.Header, name, self string) {
	if name == "" {
		return
	}
	lines := h["Set-Cookie"]
	for i, line := range lines {
		k, rest, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != name {
			continue
		}
		v, attrs, _ := strings.Cut(rest, ";")
		quoted := len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"'
		inner := v
		if quoted {
			inner = v[1 : len(v)-1]
		}
		if inner == "" {
			continue
		}
		inner = route.PrefixSessionValue(self, inner)
		if quoted {
			inner = `"` + inner + `"`
		}
		line = k + "=" + inner
		if attrs != "" || strings.Contains(rest, ";") {
			line += ";" + attrs
		}
		lines[i] = line
	}
}
