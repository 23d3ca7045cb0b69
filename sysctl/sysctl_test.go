package sysctl

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSysctlInForce: where /proc/sys is read-only, the tap's settings count
// as done when the kernel already applies them: the larger of all and the
// device for arp_ignore and arp_announce, the device's own value otherwise.
func TestInForce(t *testing.T) {
	root := t.TempDir() + "/"
	set := func(rel, v string) {
		if err := os.MkdirAll(filepath.Dir(root+rel), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(root+rel, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	set("ipv4/conf/shoal0/arp_ignore", "0")
	set("ipv4/conf/all/arp_ignore", "1")
	set("ipv4/conf/shoal0/arp_announce", "0")
	set("ipv4/conf/all/arp_announce", "0")
	set("ipv6/conf/shoal0/disable_ipv6", "1")
	for rel, want := range map[string]bool{
		"ipv4/conf/shoal0/arp_ignore":   true,  // all=1 wins
		"ipv4/conf/shoal0/arp_announce": false, // 0 and 0: not 2
		"ipv6/conf/shoal0/disable_ipv6": true,
		"ipv4/conf/nope/arp_ignore":     true, // all=1 still applies
	} {
		w := map[string]string{"arp_ignore": "1", "arp_announce": "2", "disable_ipv6": "1"}[filepath.Base(rel)]
		if got := InForce(root, rel, w); got != want {
			t.Errorf("%s = %s: in force %v, want %v", rel, w, got, want)
		}
	}
}
