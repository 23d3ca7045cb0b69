package replypath

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/shoal-lb/shoal/sysctl"
)

// Mode is a reply path: how reply segments leave the node's kernel.
type Mode string

const (
	// Auto is Kernel when the device leaves a kernel netdev, Tap otherwise.
	Auto Mode = "auto"
	// Kernel sends data segments through the NIC's kernel netdev.
	Kernel Mode = "kernel"
	// Tap sends every reply through the tap and the worker.
	Tap Mode = "tap"
)

// Modes lists the values dataplane.reply_path accepts.
var Modes = []Mode{Auto, Kernel, Tap}

// ParseMode checks a configured value; "" means Auto.
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return Auto, nil
	}
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("%q must be auto, kernel or tap", s)
}

// Decision is the reply path a node runs.
type Decision struct {
	Mode Mode
	// Netdev is the kernel netdev of the NIC (kernel mode only).
	Netdev string
	// Reason says why, for the log and `shoal status`.
	Reason string
}

// SysfsRoot is where Resolve looks for a PCI device's netdev; tests point
// it at a fake tree.
var SysfsRoot = "/sys"

var netdevName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// Netdev returns the kernel netdev that DPDK devargs leave to the kernel's
// transmit path: the iface= of net_af_packet and net_af_xdp (whose XDP
// program only takes received frames), or, for a PCI address, the netdev a
// bifurcated driver (mlx5) keeps in sysfs. vfio-pci and uio devices have
// none, nor have virtual devices like net_null or net_ring.
func Netdev(devargs string) (string, bool) {
	name, args, _ := strings.Cut(strings.TrimSpace(devargs), ",")
	for _, p := range []string{"net_af_packet", "eth_af_packet", "net_af_xdp"} {
		if strings.HasPrefix(name, p) {
			for _, kv := range strings.Split(args, ",") {
				if v, ok := strings.CutPrefix(kv, "iface="); ok && netdevName.MatchString(v) {
					return v, true
				}
			}
			return "", false
		}
	}
	addr := strings.TrimPrefix(name, "pci:")
	if !pciAddr.MatchString(addr) {
		return "", false
	}
	if !strings.Contains(addr[:len(addr)-len("00:00.0")], ":") {
		addr = "0000:" + addr
	}
	ents, err := os.ReadDir(filepath.Join(SysfsRoot, "bus/pci/devices", addr, "net"))
	if err != nil || len(ents) == 0 {
		return "", false
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names[0], true
}

var pciAddr = regexp.MustCompile(`^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$`)

// Resolve decides the reply path for a configured mode and device.
func Resolve(mode Mode, devargs string) (Decision, error) {
	dev, ok := Netdev(devargs)
	switch mode {
	case Tap:
		return Decision{Mode: Tap, Reason: "configured"}, nil
	case Kernel:
		if !ok {
			return Decision{}, fmt.Errorf("dataplane.reply_path: kernel needs a device whose netdev the kernel keeps (net_af_packet or net_af_xdp with iface=, or a PCI device of a bifurcated driver); %q has none: use tap or auto", devargs)
		}
		return Decision{Mode: Kernel, Netdev: dev, Reason: "configured"}, nil
	case Auto, "":
		if ok {
			return Decision{Mode: Kernel, Netdev: dev, Reason: "auto: the kernel keeps netdev " + dev}, nil
		}
		return Decision{Mode: Tap, Reason: "auto: the kernel has no netdev for this device"}, nil
	}
	return Decision{}, fmt.Errorf("dataplane.reply_path: %q must be auto, kernel or tap", mode)
}

// Params are what the kernel reply path is built from.
type Params struct {
	// VIP is the cluster address; only segments from it are moved.
	VIP netip.Addr
	// Tap is the tap the kernel sends through ("shoal0").
	Tap string
	// Netdev is the NIC's kernel netdev ("eth0").
	Netdev string
}

func (p Params) check() error {
	if !p.VIP.Is4() {
		return fmt.Errorf("replypath: VIP %v is not IPv4", p.VIP)
	}
	if !netdevName.MatchString(p.Tap) || !netdevName.MatchString(p.Netdev) {
		return fmt.Errorf("replypath: bad interface names %q, %q", p.Tap, p.Netdev)
	}
	if p.Tap == p.Netdev {
		return fmt.Errorf("replypath: tap and netdev are both %q", p.Tap)
	}
	return nil
}

// Table is the nftables table of a tap's kernel reply path (family netdev).
func (p Params) Table() string {
	return "shoal_reply_" + strings.NewReplacer("-", "_", ".", "_").Replace(p.Tap)
}

// Ruleset is the nftables ruleset of the kernel reply path: one egress chain
// on the tap that moves the VIP's data segments to the NIC's netdev. It runs
// before the tap's queue and before GSO segmentation, so the frame keeps its
// Ethernet header (the next hop's MAC, resolved by ARP through the tap and
// the worker) and its size. Everything the rule does not match goes on
// through the tap to the worker, as in tap mode: the safe default.
func Ruleset(p Params) (string, error) {
	if err := p.check(); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table netdev %s {\n", p.Table())
	fmt.Fprintf(&b, "\tchain tap_egress {\n")
	fmt.Fprintf(&b, "\t\ttype filter hook egress device %q priority 0; policy accept;\n", p.Tap)
	fmt.Fprintf(&b, "\t\tip saddr %s tcp flags & (fin|syn|rst) == 0 counter fwd to %q\n", p.VIP, p.Netdev)
	fmt.Fprintf(&b, "\t}\n}\n")
	return b.String(), nil
}

// Sysctl is one /proc/sys/net setting.
type Sysctl struct{ Key, Value string }

// Path is the setting's file.
func (s Sysctl) Path() string { return sysctl.Root + s.Key }

// Sysctls are set on the NIC's netdev in kernel mode: the LVS-DR ARP recipe
// the tap already has. The kernel sends no ARP on the netdev (the next hop
// is resolved through the tap), but should anything else make it ARP there,
// it never names the VIP and never answers for it.
func Sysctls(p Params) []Sysctl {
	return []Sysctl{
		{"ipv4/conf/" + p.Netdev + "/arp_ignore", "1"},
		{"ipv4/conf/" + p.Netdev + "/arp_announce", "2"},
	}
}
