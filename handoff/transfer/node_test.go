package transfer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shoal-lb/shoal/handoff/peek"
	"github.com/shoal-lb/shoal/handoff/wire"
	"github.com/shoal-lb/shoal/internal/netns/netnstest"
)

// The two-node layout (as handoff/tcprepair's): a client and nodes A and
// B holding one VIP and MAC on veths into a bridge, plus a node network
// between A and B for the channel. Each node is a process of this test
// binary run in its namespace (as a shoal node runs), so its Mover
// restores and dials there.
const (
	clientIP  = "198.19.200.10"
	clientMAC = "02:00:c6:13:c8:0a"
	vip       = "198.19.200.100"
	vipMAC    = "02:00:c6:13:c8:64"
	nodeNet   = "198.19.201."
	chanPort  = 7947
)

// ruleDataPlane is the data plane of a node in the test: policy routing
// rules that decide, per client address and port, whether this node's
// kernel receives a flow to the VIP. The bridge floods the VIP's MAC to
// both nodes (learning is off on their ports), as the cluster MAC
// reaches every node; the rules stand where a worker's flow table
// stands. Adopt adds a rule delivering the flow locally ahead of the
// node's default; Release adds a blackhole rule (the tombstone); Forget
// removes the adoption. Rules apply to segments no established socket
// claims first, which is where they matter: a restored socket before
// adoption, a closed frozen one after release.
type ruleDataPlane struct{}

func ruleArgs(f Flow) []string {
	return []string{"from", f.Client.Addr().String(), "ipproto", "tcp", "sport", strconv.Itoa(int(f.Client.Port())), "dport", strconv.Itoa(int(f.VIP.Port()))}
}

func ipRule(args ...string) error {
	out, err := exec.Command("ip", append([]string{"rule"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip rule %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (ruleDataPlane) Adopt(_ context.Context, f Flow) error {
	return ipRule(append(append([]string{"add", "pref", "5"}, ruleArgs(f)...), "lookup", "local")...)
}

func (ruleDataPlane) Release(_ context.Context, f Flow) error {
	return ipRule(append(append([]string{"add", "pref", "4"}, ruleArgs(f)...), "blackhole")...)
}

func (ruleDataPlane) Forget(_ context.Context, f Flow) error {
	return ipRule(append(append([]string{"del", "pref", "5"}, ruleArgs(f)...), "lookup", "local")...)
}

// TestMain runs a node when the test binary is started as one.
func TestMain(m *testing.M) {
	if role := os.Getenv("SHOAL_TRANSFER_NODE"); role != "" {
		if err := runNode(role); err != nil {
			fmt.Fprintln(os.Stderr, "node", role+":", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runNode is node a (the front: accept on VIP:80, peek, move to b) or b
// (serve the channel; answer adopted requests). It prints its Stats as
// JSON when its stdin closes, and exits.
func runNode(role string) error {
	key, _ := wire.DeriveKey([]byte("shoal transfer test cluster key!"))
	peers := staticPeers{"a": netip.MustParseAddr(nodeNet + "1"), "b": netip.MustParseAddr(nodeNet + "2")}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	// 2 s: the destination gives itself half, and 50 concurrent Adopts,
	// each an ip(8) process, take up to half a second on two shared cores.
	m := New(Config{Self: role, Key: key, Port: chanPort, Timeout: 2 * time.Second, DataPlane: ruleDataPlane{}, Peers: peers, Log: log})
	var ln net.Listener
	var err error
	// moving counts the Moves under way: the Stats printed at the end
	// must count every one, and a client has its answer from B before A
	// has read the ACCEPT, withdrawn the flow and closed its socket.
	var moving sync.WaitGroup
	accepting := make(chan struct{}) // closed when no more Moves can start
	if role == "b" {
		close(accepting)
		if ln, err = net.Listen("tcp4", fmt.Sprintf("%s2:%d", nodeNet, chanPort)); err != nil {
			return err
		}
		go m.Serve(ln, func(c *net.TCPConn, origin string) { serveOne(c, role, origin, log) })
	} else {
		if ln, err = net.Listen("tcp4", vip+":80"); err != nil {
			return err
		}
		go func() {
			defer close(accepting)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				moving.Add(1)
				go func() {
					tc := c.(*net.TCPConn)
					if _, _, err := (peek.Peeker{}).PeekHTTP(tc); err != nil {
						moving.Done()
						tc.Close()
						return
					}
					intact, err := m.Move(context.Background(), tc, "b", wire.ReasonGroup)
					moving.Done()
					if err != nil {
						log.Error("move", "intact", intact, "err", err)
						if intact {
							serveOne(tc, role, "", log) // thawed: the origin serves it
						}
					}
				}()
			}
		}()
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	ln.Close()
	<-accepting
	moving.Wait()
	return json.NewEncoder(os.Stdout).Encode(m.Stats())
}

// serveOne answers the request on c as node self (origin: the node that
// handed it over, "" if none), then waits for the client to close.
func serveOne(c *net.TCPConn, self, origin string, log *slog.Logger) {
	defer c.Close()
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		log.Error("serving a connection", "err", err)
		return
	}
	body := "served " + req.URL.Path + " by " + self
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Shoal-Node: %s\r\nX-Shoal-Handoff: %s\r\n\r\n%s", len(body), self, origin, body)
	c.CloseWrite()
	io.Copy(io.Discard, c) // until the client closes
}

// cluster is the two-node layout with both nodes running.
type cluster struct {
	client, br string
	node       [2]string
	procs      [2]*exec.Cmd
	stdin      [2]io.WriteCloser
	stdout     [2]*bufio.Reader
	rsts       map[string]func() (int, int)
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("needs nft to count resets: %v", err)
	}
	c := &cluster{br: newNS(t, "br"), client: newNS(t, "c"), node: [2]string{newNS(t, "a"), newNS(t, "b")}, rsts: map[string]func() (int, int){}}
	run(t, "ip", "-n", c.br, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", c.br, "link", "set", "br0", "up")
	port := func(ns, name, ip, mac string, learning bool) {
		run(t, "ip", "-n", c.br, "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", ns)
		netnstest.InOrder(t, c.br, name)
		netnstest.InOrder(t, ns, "eth0")
		run(t, "ip", "-n", c.br, "link", "set", name, "master", "br0")
		if !learning {
			run(t, "ip", "-n", c.br, "link", "set", name, "type", "bridge_slave", "learning", "off")
		}
		run(t, "ip", "-n", ns, "link", "set", "eth0", "address", mac)
		run(t, "ip", "-n", ns, "addr", "add", ip+"/24", "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", c.br, "link", "set", name, "up")
	}
	port(c.client, "pc", clientIP, clientMAC, true)
	port(c.node[0], "p0", vip, vipMAC, false)
	port(c.node[1], "p1", vip, vipMAC, false)
	run(t, "ip", "-n", c.client, "neigh", "replace", vip, "lladdr", vipMAC, "dev", "eth0", "nud", "permanent")
	// The node network: a veth between A and B.
	run(t, "ip", "-n", c.node[0], "link", "add", "ch", "type", "veth", "peer", "name", "ch", "netns", c.node[1])
	for i, ns := range c.node {
		netnstest.InOrder(t, ns, "ch")
		run(t, "ip", "-n", ns, "addr", "add", fmt.Sprintf("%s%d/24", nodeNet, i+1), "dev", "ch")
		run(t, "ip", "-n", ns, "link", "set", "ch", "up")
		run(t, "ip", "-n", ns, "neigh", "replace", clientIP, "lladdr", clientMAC, "dev", "eth0", "nud", "permanent")
		// The local table moves behind the data plane's rules.
		run(t, "ip", "-n", ns, "rule", "add", "pref", "100", "lookup", "local")
		run(t, "ip", "-n", ns, "rule", "del", "pref", "0")
		c.rsts[ns] = countRSTs(t, ns)
	}
	c.rsts[c.client] = countRSTs(t, c.client)
	// B's default: the client's connections to the VIP belong to A.
	run(t, "ip", "-n", c.node[1], "rule", "add", "pref", "10", "from", clientIP, "ipproto", "tcp", "dport", "80", "blackhole")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for i, role := range []string{"a", "b"} {
		cmd := exec.Command("ip", "netns", "exec", c.node[i], self, "-test.run=^$")
		cmd.Env = append(os.Environ(), "SHOAL_TRANSFER_NODE="+role)
		cmd.Stderr = &testWriter{t: t, prefix: "node " + role + ": "}
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c.procs[i], c.stdin[i], c.stdout[i] = cmd, in, bufio.NewReader(out)
		t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
		if line, err := c.stdout[i].ReadString('\n'); err != nil || line != "ready\n" {
			t.Fatalf("node %s: %q, %v", role, line, err)
		}
	}
	return c
}

// stop ends both nodes and returns their Stats.
func (c *cluster) stop(t testing.TB) [2]Stats {
	t.Helper()
	var s [2]Stats
	for i := range c.procs {
		c.stdin[i].Close()
		if err := json.NewDecoder(c.stdout[i]).Decode(&s[i]); err != nil {
			t.Fatalf("node %d stats: %v", i, err)
		}
		c.procs[i].Wait()
	}
	return s
}

type testWriter struct {
	t      testing.TB
	prefix string
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimSpace(string(b)))
	return len(b), nil
}

// countRSTs counts TCP resets received and sent in ns with nftables.
func countRSTs(t testing.TB, ns string) func() (in, out int) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(`table inet shoaltr {
	counter rst_in {}
	counter rst_out {}
	set rst_seen { type ipv4_addr . inet_service . ipv4_addr . inet_service; flags dynamic; }
	chain in {
		type filter hook prerouting priority -500;
		tcp flags & rst == rst counter name "rst_in"
		tcp flags & rst == rst update @rst_seen { ip saddr . tcp sport . ip daddr . tcp dport }
	}
	chain out {
		type filter hook output priority 0;
		tcp flags & rst == rst counter name "rst_out"
		tcp flags & rst == rst update @rst_seen { ip saddr . tcp sport . ip daddr . tcp dport }
	}
}`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	re := regexp.MustCompile(`packets (\d+)`)
	read := func(name string) int {
		m := re.FindStringSubmatch(run(t, "ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "shoaltr", name))
		if m == nil {
			t.Fatalf("no packet count for counter %s", name)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return func() (int, int) { return read("rst_in"), read("rst_out") }
}

// diagnose logs, for a failure, the resets each namespace saw (addresses
// and ports, either direction), its sockets (ss -tinoe) and its non-zero
// TCP counters (nstat), which name the drops.
func (c *cluster) diagnose(t testing.TB) {
	t.Helper()
	for _, ns := range []string{c.client, c.node[0], c.node[1]} {
		var b strings.Builder
		for _, argv := range [][]string{{"nft", "list", "set", "inet", "shoaltr", "rst_seen"}, {"ss", "-tinoe"}, {"nstat", "-as"}} {
			out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...).CombinedOutput()
			fmt.Fprintf(&b, "\n$ %s (%v)\n", strings.Join(argv, " "), err)
			for _, l := range strings.Split(string(out), "\n") {
				if argv[0] != "nstat" || strings.HasPrefix(l, "Tcp") {
					b.WriteString(l + "\n")
				}
			}
		}
		t.Logf("namespace %s:%s", ns, b.String())
	}
}

var clientPort atomic.Int32

func init() { clientPort.Store(30000) }

// get asks the VIP for path on a fresh connection from the client and
// returns the response and the client's retransmission count.
func (c *cluster) get(path string) (*http.Response, string, uint32, error) {
	var resp *http.Response
	var body string
	var retrans uint32
	err := inNS(c.client, func() error {
		// Each connection gets a client port of its own: the test's data
		// plane keeps its rules (a tombstone on A, an adoption on B) after
		// the connection ends, where the real one ages them out, so a
		// reused port would meet them.
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP), Port: int(clientPort.Add(1))}}
		conn, err := d.Dial("tcp4", vip+":80")
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, vip); err != nil {
			return err
		}
		if resp, err = http.ReadResponse(bufio.NewReader(conn), nil); err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		body = string(b)
		ti := tcpInfo(conn.(*net.TCPConn))
		retrans = ti.Total_retrans
		return nil
	})
	return resp, body, retrans, err
}

// TestMoveBetweenNodes: a real client's request, accepted and peeked on
// node A, is moved to node B, which adopts it and answers: the client
// sees one connection, B's answer, and no reset in any namespace. Then 50
// clients at once: 50 concurrent moves through A's one pool.
func TestMoveBetweenNodes(t *testing.T) {
	c := newCluster(t)
	resp, body, retrans, err := c.get("/app.cgi")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != "served /app.cgi by b" || resp.Header.Get("X-Shoal-Handoff") != "a" {
		t.Fatalf("response %d %q, headers %v", resp.StatusCode, body, resp.Header)
	}
	t.Logf("client retransmitted %d segments", retrans)

	n := 50
	if v := os.Getenv("SHOAL_TRANSFER_N"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			path := fmt.Sprintf("/c/%d", i)
			resp, body, _, err := c.get(path)
			if err == nil && (resp.StatusCode != 200 || body != "served "+path+" by b") {
				err = fmt.Errorf("%s: %d %q", path, resp.StatusCode, body)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	reset := false
	for ns, read := range c.rsts {
		if in, out := read(); in != 0 || out != 0 {
			t.Errorf("namespace %s: %d resets received, %d sent", ns, in, out)
			reset = true
		}
	}
	if reset {
		c.diagnose(t)
	}
	s := c.stop(t)
	if s[0].Moves["group"] != uint64(n+1) || len(s[0].Failures) != 0 || s[1].Adopted["group"] != uint64(n+1) || len(s[1].Failures) != 0 || len(s[1].Refusals) != 0 {
		t.Errorf("stats: A %+v; B %+v", s[0], s[1])
	}
	checkOriginSteps(t, s[0], uint64(n+1))
	for _, step := range []string{StepOpen, StepRestore, StepAdopt, StepReadySent, StepCommitWait, StepRelease, StepAcceptSent} {
		if got := s[1].Steps[step].Count; got != uint64(n+1) {
			t.Errorf("destination step %s counted %d times, want %d", step, got, n+1)
		}
	}
	if len(s[1].Steps) != 7 || len(s[0].Steps) != 10 {
		t.Errorf("steps: A %d kinds, B %d; want the 10 origin steps on A, the 7 destination steps on B", len(s[0].Steps), len(s[1].Steps))
	}
	t.Logf("freeze→ACCEPT over %d moves: p50 ≤ %v, p99 ≤ %v, max %v", s[0].Latency.Count, s[0].Latency.Quantile(0.5), s[0].Latency.Quantile(0.99), s[0].Latency.Max)
}

// TestOneWayLossNeverTwoSockets: the node network loses everything from B
// to A on the channel (A's frames reach B, B's ACKs and answers do not).
// B restores and adopts the connection and answers READY, which is lost;
// A, having no READY, never sends COMMIT and thaws; B, having no COMMIT,
// forgets the flow and aborts its silent socket. The client is served by
// A alone, on its one connection, with no reset: never by two live
// sockets. (The rule the two-phase exchange replaced thawed on
// unacknowledged channel bytes while B had already released and served.)
func TestOneWayLossNeverTwoSockets(t *testing.T) {
	c := newCluster(t)
	cmd := exec.Command("ip", "netns", "exec", c.node[1], "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(fmt.Sprintf(`table inet shoaltrcut {
	chain out {
		type filter hook output priority 0;
		ip daddr %s1 tcp sport %d tcp flags & syn == 0 drop
	}
}`, nodeNet, chanPort))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	resp, body, _, err := c.get("/cut")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || body != "served /cut by a" || resp.Header.Get("X-Shoal-Handoff") != "" {
		t.Fatalf("response %d %q, headers %v; want A's own answer", resp.StatusCode, body, resp.Header)
	}
	time.Sleep(200 * time.Millisecond) // B's abort is due 1 s after the HANDOFF, A's thaw 1.5 s after the freeze
	if in, out := c.rsts[c.client](); in != 0 || out != 0 {
		t.Errorf("client: %d resets received, %d sent", in, out)
	}
	s := c.stop(t)
	if len(s[0].Moves) != 0 || s[0].Failures[CauseNoReady] != 1 || len(s[0].Refusals) != 0 {
		t.Errorf("A: %+v; want one no_ready failure, no move", s[0])
	}
	if len(s[1].Adopted) != 0 || s[1].Failures[CauseNoCommit] != 1 {
		t.Errorf("B: %+v; want one no_commit failure, nothing adopted", s[1])
	}
	if len(s[0].Steps) != 0 || len(s[1].Steps) != 0 {
		t.Errorf("steps timed: A %v, B %v; want none (only handoffs that succeed are timed)", s[0].Steps, s[1].Steps)
	}
}
