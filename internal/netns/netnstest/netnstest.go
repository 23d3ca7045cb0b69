// Package netnstest makes throw-away network namespaces for root tests.
//
// Contract: New makes a namespace named PREFIX-PID-N-ROLE (tests pass a
// prefix that is never one of the lab's shoal-* names), with lo up and
// IPv6 off (no router or neighbour solicitations to teach a bridge where a
// MAC lives), and deletes it when the test ends, however it ends. Run runs
// a command and fails the test with its output when it fails. InOrder
// makes a veth end deliver what it receives in the order it was sent.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
)

var count atomic.Int32

// New makes a namespace for t (see the package contract) and returns its
// name.
func New(t testing.TB, prefix, role string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d-%d-%s", prefix, os.Getpid(), count.Add(1), role)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	Run(t, "ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return name
}

// Run runs argv and returns its trimmed output; a failure fails t.
func Run(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// InOrder makes the veth dev in namespace ns take in every frame on one
// CPU (receive packet steering to CPU 0), so frames leave it in the order
// they were sent, as from a real link. Without it a veth queues each frame
// on the backlog of the CPU that sent it, and two segments a socket sends
// from two CPUs (a delayed ACK from a timer, then a FIN from the process)
// can arrive swapped: the late one then meets a connection its peer has
// closed, and is answered with a reset that no handoff caused.
func InOrder(t testing.TB, ns, dev string) {
	t.Helper()
	Run(t, "ip", "netns", "exec", ns, "sh", "-c", fmt.Sprintf("for q in /sys/class/net/%s/queues/rx-*; do echo 1 > $q/rps_cpus; done", dev))
}
