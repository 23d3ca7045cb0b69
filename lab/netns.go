package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// requiredCommands are the programs the lab shells out to, with the Debian
// package that provides each (`make deps` installs them).
var requiredCommands = []struct{ cmd, pkg string }{
	{"ip", "iproute2"},
	{"nft", "nftables"},
	{"ethtool", "ethtool"},
	{"sysctl", "procps"},
}

// CheckHost fails, naming what is missing, unless the lab can be built here:
// root, and every command it shells out to.
func CheckHost() error {
	if os.Geteuid() != 0 {
		return errors.New("lab: needs root (network namespaces, bridges, nftables)")
	}
	for _, r := range requiredCommands {
		if _, err := exec.LookPath(r.cmd); err != nil {
			return fmt.Errorf("lab: command %q not found in PATH: install the %s package (`make deps`)", r.cmd, r.pkg)
		}
	}
	return nil
}

// run runs argv and returns its stdout. A failure names the whole command
// line and carries its stderr, which is where ip and nft say what is wrong.
func run(ctx context.Context, stdin string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		return out.String(), fmt.Errorf("lab: `%s`: %v: %s", strings.Join(argv, " "), err, msg)
	}
	return out.String(), nil
}

// in prefixes argv so that it runs inside namespace ns. `ip netns exec` also
// remounts /sys for the namespace, so sysfs reads there see its devices.
func in(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

// labNamespaces lists the existing namespaces whose names start with
// NSPrefix.
func labNamespaces() ([]string, error) {
	out, err := run(context.Background(), "", "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line) // "shoal-n1 (id: 3)"
		if len(f) > 0 && strings.HasPrefix(f[0], NSPrefix) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// deleteNamespaces deletes every lab namespace. Deleting shoal-br destroys
// the bridge ends of all veths, and deleting the others the rest, so nothing
// is left in the root namespace (nothing is ever created there).
func deleteNamespaces() error {
	names, err := labNamespaces()
	if err != nil {
		return err
	}
	var errs []error
	for _, ns := range names {
		if _, err := run(context.Background(), "", "ip", "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nodeFilter drops every frame arriving on a node's veth before the node
// kernel's IP stack sees it. net_af_packet leaves frames visible to the
// kernel, which holds the VIP on its tap and, being a weak host, would answer
// other nodes' flows with resets. Packet sockets (DPDK's af_packet PMD among
// them) receive frames in the taps that run before the ingress hook, so the
// data plane still sees everything. The rule counts what it drops, which
// `nft list ruleset` shows when debugging.
const nodeFilter = `table netdev shoal_lab {
	chain veth_ingress {
		type filter hook ingress device "` + Interface + `" priority 0; policy drop;
		counter drop
	}
}
`

// newNamespace creates ns with IPv6 off (set before any interface exists so
// the default covers them: no router solicitations or DAD in captures) and
// loopback up.
func newNamespace(ctx context.Context, ns string) error {
	if _, err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
		return err
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err == nil {
		if _, err := run(ctx, "", in(ns, "sysctl", "-q", "-w",
			"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")...); err != nil {
			return err
		}
	}
	_, err := run(ctx, "", "ip", "-n", ns, "link", "set", "lo", "up")
	return err
}

// addVeth creates a veth pair with one end named Interface in ns (with the
// given MAC) and the other named port in the bridge namespace, enslaved to the
// bridge. Both ends are created directly in their namespaces, so no name is
// ever taken in the root namespace, where other software lives.
func addVeth(ctx context.Context, ns, mac, port string) error {
	br := Namespace("br")
	steps := [][]string{
		{"ip", "link", "add", Interface, "netns", ns, "address", mac, "type", "veth", "peer", "name", port, "netns", br},
		{"ip", "-n", br, "link", "set", port, "master", "br0", "up"},
		{"ip", "-n", ns, "link", "set", Interface, "up"},
	}
	for _, s := range steps {
		if _, err := run(ctx, "", s...); err != nil {
			return err
		}
	}
	return nil
}

// createNetwork builds the bridge, the client and n node namespaces.
func createNetwork(ctx context.Context, n int, staticNeighbor bool) error {
	br := Namespace("br")
	if err := newNamespace(ctx, br); err != nil {
		return err
	}
	// Multicast snooping off: the bridge then floods frames for the cluster
	// MAC to every port instead of only to ports that joined by IGMP, which
	// the nodes never do.
	if _, err := run(ctx, "", "ip", "-n", br, "link", "add", "br0", "type", "bridge",
		"mcast_snooping", "0", "stp_state", "0"); err != nil {
		return err
	}
	if _, err := run(ctx, "", "ip", "-n", br, "link", "set", "br0", "up"); err != nil {
		return err
	}

	client := Namespace("client")
	if err := newNamespace(ctx, client); err != nil {
		return err
	}
	if err := addVeth(ctx, client, ClientMAC, "client"); err != nil {
		return err
	}
	// Without this the client kernel hands the veth frames whose TCP/UDP
	// checksum is only partial (completed "by hardware" that a veth does not
	// have); the DPDK side forwards them as they are and the node kernel
	// drops them as bad. Turning checksum offload off also turns TSO off,
	// so frames are MTU-sized as on a wire.
	if _, err := run(ctx, "", in(client, "ethtool", "-K", Interface, "tx", "off")...); err != nil {
		return err
	}
	if _, err := run(ctx, "", "ip", "-n", client, "addr", "add",
		ClientIP+"/"+strconv.Itoa(Prefix), "dev", Interface); err != nil {
		return err
	}
	if staticNeighbor {
		if _, err := run(ctx, "", "ip", "-n", client, "neigh", "replace", VIP,
			"lladdr", ClusterMAC, "dev", Interface, "nud", "permanent"); err != nil {
			return err
		}
	}

	for k := 1; k <= n; k++ {
		ns := Namespace(NodeID(k))
		if err := newNamespace(ctx, ns); err != nil {
			return err
		}
		if err := addVeth(ctx, ns, NodeMAC(k), NodeID(k)); err != nil {
			return err
		}
		if _, err := run(ctx, nodeFilter, in(ns, "nft", "-f", "-")...); err != nil {
			return err
		}
	}
	return nil
}

// MaxHosts bounds the extra hosts AddHost makes (h1..h9).
const MaxHosts = 9

// HostID names extra host k: "hK".
func HostID(k int) string { return "h" + strconv.Itoa(k) }

// HostIP is extra host k's address: 198.18.0.(200+k).
func HostIP(k int) string { return fmt.Sprintf("198.18.0.%d", 200+k) }

// HostMAC is extra host k's veth MAC (02:00 + 198.18 + 0.(200+k)).
func HostMAC(k int) string { return fmt.Sprintf("02:00:c6:12:00:%02x", 200+k) }

// AddHost adds a plain Linux host to a running lab's bridge: namespace
// shoal-hK, eth0 at HostIP(k)/24 with the veth's default offloads. The
// benchmarks run their peers there (a central balancer, origin servers, a
// server on the plain kernel path); Down removes them with the rest.
func AddHost(ctx context.Context, k int) error {
	if k < 1 || k > MaxHosts {
		return fmt.Errorf("lab: host %d: hosts are h1..h%d", k, MaxHosts)
	}
	ns := Namespace(HostID(k))
	if err := newNamespace(ctx, ns); err != nil {
		return err
	}
	if err := addVeth(ctx, ns, HostMAC(k), HostID(k)); err != nil {
		return err
	}
	_, err := run(ctx, "", "ip", "-n", ns, "addr", "add", HostIP(k)+"/"+strconv.Itoa(Prefix), "dev", Interface)
	return err
}
