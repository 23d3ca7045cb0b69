package route

import (
	"strings"
	"testing"
)

// FuzzSessionNode: a value SessionNode accepts is exactly its node's
// prefix and its app value put back together, the node is a node ID, and
// any value prefixed with a node ID splits back into that node and value.
func FuzzSessionNode(f *testing.F) {
	for _, s := range []string{"n1~abc", "~", "n1~~", "abc", "", "node_2-b~a~b", "n\x00~x", "abcdefghijabcdefghijabcdefghijabc~x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		node, app, ok := SessionNode(value)
		if ok {
			if PrefixSessionValue(node, app) != value {
				t.Fatalf("%q split into %q and %q", value, node, app)
			}
			if len(node) < 1 || len(node) > 32 || strings.ContainsAny(node, "~.; =") {
				t.Fatalf("%q: node %q is not a node ID", value, node)
			}
		} else if node != "" || app != "" {
			t.Fatalf("%q refused but returned %q, %q", value, node, app)
		}
		for _, id := range []string{"n1", "node_2-b", "abcdefghijabcdefghijabcdefghijab"} {
			n, a, ok := SessionNode(PrefixSessionValue(id, value))
			if !ok || n != id || a != value {
				t.Fatalf("prefix %q on %q read back as %q, %q, %v", id, value, n, a, ok)
			}
		}
	})
}
