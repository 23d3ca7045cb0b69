package replypath

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update once to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

var labParams = Params{VIP: netip.MustParseAddr("198.18.0.100"), Tap: "shoal0", Netdev: "eth0"}

func TestRulesetGolden(t *testing.T) {
	got, err := Ruleset(labParams)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "lab.nft", got)
	var b strings.Builder
	for _, s := range Sysctls(labParams) {
		b.WriteString(s.Path() + " = " + s.Value + "\n")
	}
	golden(t, "lab.sysctl", b.String())
	other := Params{VIP: netip.MustParseAddr("203.0.113.7"), Tap: "sh-0.a", Netdev: "enp3s0f1"}
	got, err = Ruleset(other)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "other.nft", got)
}

func TestRulesetRejectsBadParams(t *testing.T) {
	for _, p := range []Params{
		{VIP: netip.MustParseAddr("2001:db8::1"), Tap: "shoal0", Netdev: "eth0"},
		{Tap: "shoal0", Netdev: "eth0"},
		{VIP: labParams.VIP, Tap: "shoal0", Netdev: "eth0\"; flush ruleset"},
		{VIP: labParams.VIP, Tap: "eth0", Netdev: "eth0"},
		{VIP: labParams.VIP, Tap: "", Netdev: "eth0"},
	} {
		if r, err := Ruleset(p); err == nil {
			t.Errorf("%+v: accepted:\n%s", p, r)
		}
	}
}

func TestNetdev(t *testing.T) {
	root := t.TempDir()
	old := SysfsRoot
	SysfsRoot = root
	t.Cleanup(func() { SysfsRoot = old })
	// A bifurcated driver keeps a netdev under the PCI device; vfio-pci
	// does not.
	os.MkdirAll(filepath.Join(root, "bus/pci/devices/0000:03:00.0/net/enp3s0f0"), 0o755)
	os.MkdirAll(filepath.Join(root, "bus/pci/devices/0000:04:00.0"), 0o755)
	for _, c := range []struct {
		dev  string
		want string
		ok   bool
	}{
		{"net_af_packet0,iface=eth0", "eth0", true},
		{"net_af_packet0,qpairs=1,iface=veth-n1,blocksz=4096", "veth-n1", true},
		{"eth_af_packet1,iface=eth3", "eth3", true},
		{"net_af_xdp0,iface=eth0,start_queue=0", "eth0", true},
		{"net_af_packet0", "", false},
		{"net_af_packet0,iface=", "", false},
		{"net_af_packet0,iface=much-too-long-a-name", "", false},
		{"net_tap0,iface=tap9", "", false},
		{"net_null0", "", false},
		{"net_ring0", "", false},
		{"0000:03:00.0", "enp3s0f0", true},
		{"03:00.0", "enp3s0f0", true},
		{"pci:0000:03:00.0", "enp3s0f0", true},
		{"0000:04:00.0", "", false}, // vfio-pci
		{"0000:05:00.0", "", false}, // absent
	} {
		got, ok := Netdev(c.dev)
		if got != c.want || ok != c.ok {
			t.Errorf("Netdev(%q) = %q, %v; want %q, %v", c.dev, got, ok, c.want, c.ok)
		}
	}
}

func TestResolve(t *testing.T) {
	for _, c := range []struct {
		mode    Mode
		dev     string
		want    Mode
		netdev  string
		wantErr string
	}{
		{Auto, "net_af_packet0,iface=eth0", Kernel, "eth0", ""},
		{"", "net_af_xdp0,iface=eth1", Kernel, "eth1", ""},
		{Auto, "net_null0", Tap, "", ""},
		{Tap, "net_af_packet0,iface=eth0", Tap, "", ""},
		{Kernel, "net_af_packet0,iface=eth0", Kernel, "eth0", ""},
		{Kernel, "net_null0", "", "", "dataplane.reply_path: kernel needs"},
		{"fast", "net_af_packet0,iface=eth0", "", "", `dataplane.reply_path: "fast"`},
	} {
		d, err := Resolve(c.mode, c.dev)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Resolve(%q, %q) error %v, want %q", c.mode, c.dev, err, c.wantErr)
			}
			continue
		}
		if err != nil || d.Mode != c.want || d.Netdev != c.netdev || d.Reason == "" {
			t.Errorf("Resolve(%q, %q) = %+v, %v; want %s on %q", c.mode, c.dev, d, err, c.want, c.netdev)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": Auto, "auto": Auto, "kernel": Kernel, "tap": Tap} {
		if m, err := ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, m, err)
		}
	}
	if _, err := ParseMode("Kernel"); err == nil {
		t.Error("ParseMode accepted Kernel")
	}
}
