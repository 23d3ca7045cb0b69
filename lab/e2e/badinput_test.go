package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNodeBadInput: a bad config, a VIP outside the interface's subnet, a
// missing DPDK device and missing hugepages each end `shoal node` with one
// clear line naming the problem and exit status 2, leaving nothing behind:
// no tap, no DPDK runtime files, no admin socket, no process.
func TestNodeBadInput(t *testing.T) {
	needLab(t)
	// Not "shoal-": lab.Down removes every namespace of the lab's prefix.
	const ns = "shoaltest-badinput"
	exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	// A veth the data plane can really open, for the cases that get past
	// the device.
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1").CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	exec.Command("ip", "-n", ns, "link", "set", "eth0", "up").Run()
	exec.Command("ip", "-n", ns, "link", "set", "eth1", "up").Run()
	dir := t.TempDir()
	sock := filepath.Join(dir, "bad.sock")
	base := `node_id: bad1
cluster:
  vip: 198.18.0.100
  members: [{id: bad1, weight: 1}]
interface:
  device: net_af_packet0,iface=eth0
  address: 198.18.0.101/24
admin:
  socket: ` + sock + `
http:
  listen: 127.0.0.1:0
`
	cases := []struct{ name, old, new, want string }{
		{"unknown field", "  vip: 198.18.0.100", "  vip: 198.18.0.100\n  colour: blue", "field colour"},
		{"bad value", "weight: 1", "weight: -1", "cluster.members[0].weight"},
		{"VIP outside the interface", "198.18.0.101/24", "198.19.7.1/24", "does not contain the VIP"},
		{"missing device", "iface=eth0", "iface=nosuch0", `interface.device: open port "net_af_packet0,iface=nosuch0"`},
		{"no hugepages", "admin:", "dpdk:\n  hugepages: \"on\"\n  memory_mb: 1000000\nadmin:", "dpdk.hugepages"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "node.yaml")
			if err := os.WriteFile(cfg, []byte(strings.Replace(base, c.old, c.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, shoalBin, "node", "--config", cfg)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := -1
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			msg := strings.TrimSpace(stderr.String())
			if code != 2 || strings.Count(msg, "\n") != 0 || !strings.Contains(msg, c.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 2 and one line containing %q", code, msg, c.want)
			}
			if out, _ := exec.Command("ip", "-n", ns, "link", "show", "shoal0").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
				t.Errorf("tap left behind: %s", out)
			}
			if _, err := os.Stat("/var/run/dpdk/shoal-bad1"); err == nil {
				t.Error("DPDK runtime directory /var/run/dpdk/shoal-bad1 left behind")
			}
			if _, err := os.Stat(sock); err == nil {
				t.Error("admin socket left behind")
			}
		})
	}
}
