package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/deploy"
	"github.com/shoal-lb/shoal/lab"
)

// capBits maps the capabilities the unit may name to their bit numbers
// (linux/capability.h).
var capBits = map[string]uint{"CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
	"CAP_IPC_LOCK": 14, "CAP_SYS_ADMIN": 21, "CAP_SYS_NICE": 23, "CAP_BPF": 39}

// TestUnitCapabilities runs real nodes with exactly the bounding set of
// deploy/systemd/shoal@.service and no_new_privs (setpriv, as systemd
// would): they start, agree and serve, so the unit gives a node all it
// needs. /proc shows that the nodes really ran without the rest.
func TestUnitCapabilities(t *testing.T) {
	needLab(t)
	caps, err := deploy.UnitCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	var spec []string
	var want uint64
	for _, c := range caps {
		bit, ok := capBits[c]
		if !ok {
			t.Fatalf("the unit names %s, which this test does not know", c)
		}
		want |= 1 << bit
		spec = append(spec, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	wrapper := filepath.Join(t.TempDir(), "shoal-unit")
	script := fmt.Sprintf("#!/bin/sh\nexec setpriv --bounding-set -all,%s --inh-caps -all --no-new-privs %s \"$@\"\n", strings.Join(spec, ","), shoalBin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l := up(t, lab.Options{Nodes: 2, Binary: wrapper})
	for k, id := range l.NodeIDs() {
		pid, err := os.ReadFile(lab.PIDPath(id))
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{}
		for _, line := range strings.Split(string(st), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "CapBnd" || k == "CapEff" || k == "NoNewPrivs") {
				got[k], _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			}
		}
		if got["CapBnd"] != want || got["CapEff"] != want || got["NoNewPrivs"] != 1 {
			t.Errorf("%s runs with CapBnd %x CapEff %x NoNewPrivs %d, want %x %x 1", id, got["CapBnd"], got["CapEff"], got["NoNewPrivs"], want, want)
		}
		out := run(t, "client", "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code} %header{x-shoal-node}", "http://"+lab.NodeIP(k+1)+"/obj/1k")
		if out != "200 "+id {
			t.Errorf("GET /obj/1k from %s: %q", id, out)
		}
	}
}
