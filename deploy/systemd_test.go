package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestUnitSandbox: the unit keeps a small bounding set, runs the node
// with its config checked first, and sandboxes the rest.
func TestUnitSandbox(t *testing.T) {
	s, err := UnitSettings()
	if err != nil {
		t.Fatal(err)
	}
	caps, _ := UnitCapabilities()
	allowed := map[string]bool{"CAP_NET_ADMIN": true, "CAP_NET_RAW": true, "CAP_NET_BIND_SERVICE": true,
		"CAP_IPC_LOCK": true, "CAP_BPF": true, "CAP_SYS_NICE": true}
	if len(caps) == 0 {
		t.Fatal("no CapabilityBoundingSet: the node would keep every capability")
	}
	for _, c := range caps {
		if !allowed[c] {
			t.Errorf("capability %s is not one the node needs (docs/deployment.md lists them)", c)
		}
	}
	for key, want := range map[string]string{
		"ExecStart": "/usr/local/bin/shoal node --config /etc/shoal/%i.yaml", "ExecStartPre": "/usr/local/bin/shoal config check /etc/shoal/%i.yaml",
		"KillSignal": "SIGTERM", "RestartPreventExitStatus": "2", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"ProtectHome": "yes", "PrivateTmp": "yes", "ProtectKernelModules": "yes", "ProtectKernelTunables": "yes",
		"RestrictNamespaces": "yes", "MemoryDenyWriteExecute": "yes", "DevicePolicy": "closed", "RuntimeDirectory": "shoal",
	} {
		if got := s[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
}

// TestUnitVerifies runs systemd-analyze verify on the unit (as instance
// n1) and its offline security review; the exposure stays at most 3.5
// (3.0 with Debian 12's systemd 252). Only the binary and the man page,
// which are not installed here, may be missing.
func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	raw, _ := Unit()
	path := filepath.Join(t.TempDir(), "shoal@n1.service")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(sa, "verify", path).CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, "/usr/local/bin/shoal is not executable") || strings.Contains(line, "man shoal(1)") {
			continue
		}
		t.Errorf("systemd-analyze verify: %s", line)
	}
	out, err = exec.Command(sa, "security", "--offline=yes", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for shoal@n1.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Skipf("this systemd-analyze has no offline security review (%v)", err)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	if score > 3.5 {
		t.Errorf("exposure %.1f, want at most 3.5", score)
	}
}
