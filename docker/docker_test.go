package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/control/ranges"
	"github.com/shoal-lb/shoal/dataplane"
	"github.com/shoal-lb/shoal/lab"
)

// The compose cluster's addresses (compose.yaml).
const (
	vip      = "198.19.5.100"
	clientIP = "198.19.5.10"
	project  = "shoal-test"
	image    = "shoal:test"
	// The daemon this test starts when none runs: its networks stay in
	// 198.18.0.0/15 like the lab's, and it leaves the host's firewall
	// and forwarding alone (the compose network is internal anyway).
	bridgeIP = "198.19.255.1/24"
	pool     = "base=198.19.0.0/16,size=24"
)

func cmdOut(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// needDocker makes sure a Docker engine answers: the one running, or one
// this test starts (and stops at the end). It skips, naming the reason,
// where Docker cannot run.
func needDocker(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("docker: needs root (the engine, and containers with NET_ADMIN)")
	}
	for _, tool := range []string{"docker", "docker-compose", "debootstrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("docker: %s is not installed (make deps installs docker.io, docker-compose and debootstrap)", tool)
		}
	}
	ctx := context.Background()
	if _, err := cmdOut(ctx, nil, "docker", "info"); err == nil {
		return
	}
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Skip("docker: no engine answers and dockerd is not installed")
	}
	logf, err := os.CreateTemp("", "shoal-dockerd-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dockerd, "--iptables=false", "--ip-forward=false", "--ip-masq=false",
		"--bip="+bridgeIP, "--default-address-pool", pool, "--userland-proxy=false")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("docker: dockerd does not start: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		os.Remove(logf.Name())
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := cmdOut(ctx, nil, "docker", "info"); err == nil {
			t.Logf("started dockerd (pid %d) for this test", cmd.Process.Pid)
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logf.Name())
			t.Skipf("docker: dockerd exited at start; Docker cannot run here:\n%s", tail(string(b), 1500))
		case <-time.After(300 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("dockerd does not answer after 30 s:\n%s", tail(string(b), 1500))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestComposeCluster: `make image` (scripts/image.sh) builds the image from
// Debian packages alone, and compose.yaml's three nodes and client run:
// 100 fresh connections from the client container are all answered, each
// by the node whose bucket it falls in, so by all three nodes; the client
// learnt the cluster MAC by ARP. The base image is cached between runs
// (first build about 1.5 minutes); the rest takes about half a minute.
func TestComposeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image and runs containers; runs without -short")
	}
	needDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	// The containers' DPDK takes hugepages as the lab's nodes do: with
	// both at once (go test runs packages in parallel), EAL init failed
	// for want of memory. One user at a time.
	release, err := lab.Hold(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	start := time.Now()
	bin, err := lab.BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmdOut(ctx, []string{"SHOAL_BIN=" + bin}, "../scripts/image.sh", image)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s(binary and image in %v)", out, time.Since(start).Round(time.Second))

	composeCtx := func(ctx context.Context, args ...string) (string, error) {
		return cmdOut(ctx, []string{"SHOAL_IMAGE=" + image}, "docker-compose", append([]string{"-f", "compose.yaml", "-p", project}, args...)...)
	}
	compose := func(args ...string) (string, error) { return composeCtx(ctx, args...) }
	t.Cleanup(func() {
		// The test's context is gone by now.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			for _, n := range []string{"n1", "n2", "n3"} {
				logs, _ := composeCtx(ctx, "logs", "--no-color", "--tail", "30", n)
				t.Logf("--- %s:\n%s", n, logs)
			}
		}
		if _, err := composeCtx(ctx, "down", "--volumes", "--remove-orphans", "--timeout", "10"); err != nil {
			t.Errorf("compose down: %v", err)
		}
	})
	started := time.Now()
	if _, err := compose("up", "-d"); err != nil {
		t.Fatal(err)
	}
	exec1 := func(service string, argv ...string) (string, error) {
		return compose(append([]string{"exec", "-T", service}, argv...)...)
	}

	// Ready: the three nodes agree on one table of three members.
	var st api.Status
	deadline := time.Now().Add(60 * time.Second)
	for {
		hashes := map[string]bool{}
		ready := true
		for _, n := range []string{"n1", "n2", "n3"} {
			raw, err := exec1(n, "shoal", "status", "--json", "--socket", "/run/shoal/"+n+".sock")
			if err != nil || json.Unmarshal([]byte(raw), &st) != nil || len(st.Members) != 3 || !st.Agreement || st.Holding {
				ready = false
				break
			}
			hashes[st.TableHash] = true
		}
		if ready && len(hashes) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the compose cluster did not converge in 60 s (last status: %+v)", st)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("3 nodes agree on table %s %v after compose up", st.TableHash, time.Since(started).Round(time.Millisecond))
	// Every node offers the newest table algorithm, so they negotiate it.
	if st.TableAlgorithm != ranges.AlgoLatest {
		t.Fatalf("the nodes build with table algorithm %d, want %d", st.TableAlgorithm, ranges.AlgoLatest)
	}
	tb, err := ranges.BuildV(ranges.AlgoLatest, 1, []ranges.Member{{ID: "n1", Weight: 1}, {ID: "n2", Weight: 1}, {ID: "n3", Weight: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if tb.Hash != st.TableHash {
		t.Fatalf("the nodes run table %s, seed 1 and equal weights give %s", st.TableHash, tb.Hash)
	}

	// 100 fresh connections from fixed ports.
	const first, n = 31000, 100
	script := fmt.Sprintf(`for p in $(seq %d %d); do echo "$p $(curl -s --max-time 5 --local-port $p -H 'Connection: close' -o /dev/null -w '%%{http_code} %%header{x-shoal-node}' http://%s/)"; done`, first, first+n-1, vip)
	out, err = exec1("client", "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]int{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != n {
		t.Fatalf("%d answers for %d requests:\n%s", len(lines), n, out)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 3 || f[1] != "200" {
			t.Errorf("request %q: not answered 200", line)
			continue
		}
		port, _ := strconv.Atoi(f[0])
		v := dataplane.ConnValue(1, netip.MustParseAddr(clientIP), netip.MustParseAddr(vip), uint16(port), 80)
		if want := tb.OwnerOf(dataplane.Bucket(v)); f[2] != want {
			t.Errorf("port %d: answered by %s, its bucket belongs to %s", port, f[2], want)
		}
		served[f[2]]++
	}
	t.Logf("100 requests answered: n1 %d, n2 %d, n3 %d", served["n1"], served["n2"], served["n3"])
	for _, id := range []string{"n1", "n2", "n3"} {
		if served[id] == 0 {
			t.Errorf("%s answered no request", id)
		}
	}
	neigh, err := exec1("client", "ip", "neigh", "show", vip)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(neigh, lab.ClusterMAC) {
		t.Errorf("the client's neighbour entry for the VIP is %q, want the cluster MAC %s", strings.TrimSpace(neigh), lab.ClusterMAC)
	}
	t.Logf("whole test %v", time.Since(start).Round(time.Second))
}
