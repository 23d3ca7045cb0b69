package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/control/groups"
	"github.com/shoal-lb/shoal/control/health"
	"github.com/shoal-lb/shoal/control/ranges"
)

// Paths of a node's files in StateDir.
func ConfigPath(id string) string { return filepath.Join(StateDir, id+".yaml") }
func PIDPath(id string) string    { return filepath.Join(StateDir, id+".pid") }
func LogPath(id string) string    { return filepath.Join(StateDir, id+".log") }
func SocketPath(id string) string { return filepath.Join(StateDir, id+".sock") }

// StorePath is node id's storage area of published versions
// (content.store); it survives a node's restart, not lab down.
func StorePath(id string) string { return filepath.Join(StateDir, "store", id) }

// GroupAll is the group every lab defines, holding every node.
const GroupAll = "all"

// proc is a node process started by this process. A goroutine waits for it,
// so it never lingers as a zombie and readiness can notice an early exit.
type proc struct {
	pid  int
	done chan struct{}
	err  error // exit status, valid once done is closed
}

// stopGrace is how long a node gets to exit after SIGTERM before SIGKILL.
const stopGrace = 5 * time.Second

// resolveBinary finds the shoal binary that runs the nodes.
func resolveBinary(bin string) (string, error) {
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("lab: finding the shoal binary: %w", err)
		}
		if strings.HasSuffix(exe, ".test") {
			return "", fmt.Errorf("lab: Options.Binary is empty and %s is a test binary without the node command: build shoal with lab.BuildBinary and pass its path", exe)
		}
		bin = exe
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", fmt.Errorf("lab: binary %s: %w", bin, err)
	}
	if st, err := os.Stat(abs); err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("lab: binary %s is not an executable file", abs)
	}
	return abs, nil
}

// BuildBinary builds the shoal command into dir and returns its path, for
// tests that run real nodes (the test binary itself has no node command).
func BuildBinary(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "shoal")
	if _, err := run(ctx, "", "go", "build", "-o", out, "github.com/shoal-lb/shoal/cmd/shoal"); err != nil {
		return "", err
	}
	return out, nil
}

// buildConfig is node k's config before defaults and validation (which
// look at the files it names).
func (l *Lab) buildConfig(k int) *config.Config {
	id := NodeID(k)
	var members []config.MemberConfig
	slowStart := int(l.opts.SlowStart / time.Second)
	var gossip config.GossipConfig
	var capacity config.CapacityConfig
	if l.opts.Static {
		for i := 0; i < l.opts.Nodes; i++ {
			members = append(members, config.MemberConfig{ID: NodeID(i + 1), Weight: l.opts.Weights[i]})
		}
	} else {
		// Gossip over the node addresses, every node a seed. Load-aware
		// availability stays off: the lab's nodes share the machine's
		// CPUs, so CPU load says nothing about one node.
		w := l.opts.Weights[k-1]
		capacity.Weight = &w
		gossip.Key = GossipKey
		for i := 1; i <= l.opts.Nodes; i++ {
			gossip.Seeds = append(gossip.Seeds, NodeIP(i)+":7946")
		}
	}
	c := &config.Config{
		Gossip:   gossip,
		Capacity: capacity,
		Health: config.HealthConfig{
			// The node's own web server, checked often so that tests of a
			// dead application stay short.
			Checks:    []health.Check{{Name: "web", Kind: "http", Port: 80, Path: "/", IntervalMS: 100, TimeoutMS: 300, Fall: 2, Rise: 2}},
			SlowStart: config.SlowStartConfig{WindowSec: &slowStart},
		},
		NodeID: id,
		Cluster: config.ClusterConfig{
			VIP:     VIP,
			MAC:     ClusterMAC,
			Seed:    l.opts.Seed,
			Members: members,
		},
		Interface: config.InterfaceConfig{
			Device:  Device,
			Tap:     Tap,
			Address: NodeIP(k) + "/" + strconv.Itoa(Prefix),
		},
		DPDK:      config.DPDKConfig{MemoryMB: l.opts.MemoryMB, Hugepages: "auto"},
		Dataplane: config.DataplaneConfig{ExtraBuckets: l.opts.ExtraBuckets[k], ReplyPath: l.replyPath(k)},
		HTTP:      config.HTTPConfig{Content: l.ContentDirOf(k)},
		Admin: config.AdminConfig{Socket: SocketPath(id),
			Listen: fmt.Sprintf("%s:%d", NodeIP(k), AdminPort), TokenFile: TokenPath},
	}
	// Every lab has group "all", holding every node: a target for
	// published content (docs/versions.md). Presets add theirs.
	c.Groups = []groups.Group{{Name: GroupAll}}
	c.MemberOf = []string{GroupAll}
	for i := range c.Cluster.Members {
		c.Cluster.Members[i].Groups = []string{GroupAll}
	}
	c.Content.Store = StorePath(id)
	l.applyPreset(k, c)
	if l.opts.Configure != nil {
		l.opts.Configure(id, c)
	}
	return c
}

// NodeConfig returns the config node k of this lab runs with, defaulted and
// validated, so a mistake fails Up instead of crashing a node.
func (l *Lab) NodeConfig(k int) (*config.Config, error) {
	c := l.buildConfig(k)
	id := c.NodeID
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("lab: config of %s: %s", id, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return c, nil
}

// replyPath is node k's dataplane.reply_path.
func (l *Lab) replyPath(k int) string {
	if m := l.opts.ReplyPaths[k]; m != "" {
		return m
	}
	return l.opts.ReplyPath
}

func (l *Lab) writeConfig(k int) error {
	c, err := l.NodeConfig(k)
	if err != nil {
		return err
	}
	raw, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("lab: config of %s: %w", c.NodeID, err)
	}
	head := "# Written by `shoal lab up`; the lab rewrites it on every run.\n"
	if err := os.WriteFile(ConfigPath(c.NodeID), append([]byte(head), raw...), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

func nodeIndex(id string) (int, bool) {
	if !strings.HasPrefix(id, "n") {
		return 0, false
	}
	k, err := strconv.Atoi(id[1:])
	if err != nil || NodeID(k) != id || k < 1 || k > MaxNodes {
		return 0, false
	}
	return k, true
}

// startNode starts node id detached: its own session, so a terminal's ^C
// after `shoal lab up` does not reach it, and output to its log file. The
// pid of `ip netns exec` is the node's pid, since ip execs the command.
func (l *Lab) startNode(id string) error {
	logf, err := os.OpenFile(LogPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== lab: starting %s at %s\n", id, time.Now().Format(time.RFC3339))
	argv := in(Namespace(id), l.opts.Binary, "node", "--config", ConfigPath(id))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: starting %s: `%s`: %w", id, strings.Join(argv, " "), err)
	}
	p := &proc{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs[id] = p
	l.mu.Unlock()
	l.logf("started %s, pid %d, log %s", id, p.pid, LogPath(id))
	if err := os.WriteFile(PIDPath(id), []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// Start starts node id again (after Kill) and waits until it answers.
func (l *Lab) Start(ctx context.Context, id string) error {
	k, ok := nodeIndex(id)
	if !ok || k > l.opts.Nodes {
		return fmt.Errorf("%w %q: this lab has nodes n1..n%d", ErrUnknownPlace, id, l.opts.Nodes)
	}
	if l.opts.NetworkOnly {
		return errors.New("lab: this lab was built with NetworkOnly; it starts no nodes")
	}
	if pid, ok := nodePID(id); ok {
		return fmt.Errorf("lab: node %s is already running (pid %d)", id, pid)
	}
	if err := l.writeConfig(k); err != nil {
		return err
	}
	if _, running := appPID(id); HasApp(l.opts.Preset, k) && !running {
		if err := l.startApp(ctx, id); err != nil {
			return err
		}
	}
	if err := l.startNode(id); err != nil {
		return err
	}
	return l.waitReady(ctx, []string{id})
}

// waitReady polls, from the client namespace, GET http://NodeIP(k)/ of each
// node until it answers with X-Shoal-Node: nK, which proves the data plane,
// the tap, the node kernel and the HTTP server are all in place.
func (l *Lab) waitReady(ctx context.Context, ids []string) error {
	ctx, cancel := context.WithTimeout(ctx, l.opts.ReadyTimeout)
	defer cancel()
	client := HTTPClient("client")
	client.Transport.(*http.Transport).DisableKeepAlives = true
	pending := slices.Clone(ids)
	var lastErr = map[string]error{}
	for {
		var still []string
		for _, id := range pending {
			l.mu.Lock()
			p := l.procs[id]
			l.mu.Unlock()
			if p != nil {
				select {
				case <-p.done:
					os.Remove(PIDPath(id))
					return fmt.Errorf("lab: node %s exited before it was ready (%v); end of %s:\n%s",
						id, p.err, LogPath(id), logTail(id))
				default:
				}
			}
			err := probe(ctx, client, id)
			if err == nil {
				l.logf("%s is ready", id)
				continue
			}
			lastErr[id] = err
			still = append(still, id)
		}
		pending = still
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			id := pending[0]
			return fmt.Errorf("lab: node %s not ready after %v (last probe: %v); end of %s:\n%s",
				id, l.opts.ReadyTimeout, lastErr[id], LogPath(id), logTail(id))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func probe(ctx context.Context, client *http.Client, id string) error {
	k, _ := nodeIndex(id)
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+NodeIP(k)+"/", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if got := resp.Header.Get("X-Shoal-Node"); got != id {
		return fmt.Errorf("GET / answered %s with X-Shoal-Node %q, want %q", resp.Status, got, id)
	}
	return nil
}

// logTail returns the last lines of a node's log for error messages.
func logTail(id string) string {
	f, err := os.Open(LogPath(id))
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	const max = 4096
	if st, err := f.Stat(); err == nil && st.Size() > max {
		f.Seek(st.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "  | " + strings.Join(lines, "\n  | ")
}

// nodePID returns the pid recorded for node id if that process is alive and
// is really that node: pids are reused, and a stale pid file must never make
// the lab signal an unrelated process.
func nodePID(id string) (int, bool) {
	return pidFileProcess(PIDPath(id), "\x00"+ConfigPath(id))
}

// pidFileProcess returns the pid in pidFile if that process is alive and
// its command line (NUL-separated) contains marker: a reused pid is never
// taken for ours.
func pidFileProcess(pidFile, marker string) (int, bool) {
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 || !alive(pid) {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), marker) {
		return 0, false
	}
	return pid, true
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself
	// contain parentheses.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	st := s[i+2]
	return st != 'Z' && st != 'X'
}

// Kill kills node id with SIGKILL, as a crash would, and removes its pid
// file. Errors wrap ErrUnknownPlace when id is not a node of the lab.
func Kill(id string) error { return signalNode(id, syscall.SIGKILL, 2*time.Second) }

// Stop asks node id to leave gracefully (SIGTERM: drain, wait for the
// peers, finish its flows, leave) and waits up to wait for it to exit.
func Stop(id string, wait time.Duration) error { return signalNode(id, syscall.SIGTERM, wait) }

func signalNode(id string, sig syscall.Signal, wait time.Duration) error {
	if _, ok := nodeIndex(id); !ok {
		return fmt.Errorf("%w %q: nodes are n1..n%d", ErrUnknownPlace, id, MaxNodes)
	}
	if err := CheckWhere(id); err != nil {
		return err
	}
	pid, ok := nodePID(id)
	if !ok {
		os.Remove(PIDPath(id))
		return fmt.Errorf("lab: node %s is not running", id)
	}
	if err := syscall.Kill(pid, sig); err != nil && err != syscall.ESRCH {
		return fmt.Errorf("lab: %v to %s (pid %d): %w", sig, id, pid, err)
	}
	if !waitDead([]int{pid}, wait) {
		return fmt.Errorf("lab: node %s (pid %d) still runs %v after %v", id, pid, wait, sig)
	}
	os.Remove(PIDPath(id))
	return nil
}

// waitDead polls until none of pids is alive or d has passed.
func waitDead(pids []int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		any := false
		for _, p := range pids {
			if alive(p) {
				any = true
				break
			}
		}
		if !any {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopAll stops the nodes named by pid files and every other process inside
// a lab namespace (commands run with Exec, a node started by hand): SIGTERM,
// then SIGKILL after stopGrace. The lab namespaces belong to the lab, so
// whatever runs in them is the lab's to stop.
func stopAll() error {
	var pids []int
	if entries, err := os.ReadDir(StateDir); err == nil {
		for _, e := range entries {
			if id, ok := strings.CutSuffix(e.Name(), ".pid"); ok {
				if pid, ok := nodePID(id); ok {
					pids = append(pids, pid)
				}
			}
		}
	}
	pids = append(pids, appPIDs()...)
	names, err := labNamespaces()
	if err != nil {
		return err
	}
	self := os.Getpid()
	for _, ns := range names {
		out, err := run(context.Background(), "", "ip", "netns", "pids", ns)
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(out) {
			// This process itself shows up when one of its threads joined a
			// namespace on the main thread (InNamespace); never signal it.
			if pid, err := strconv.Atoi(f); err == nil && pid != self && !slices.Contains(pids, pid) {
				pids = append(pids, pid)
			}
		}
	}
	if len(pids) == 0 {
		return nil
	}
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGTERM)
	}
	if waitDead(pids, stopGrace) {
		return nil
	}
	for _, p := range pids {
		if alive(p) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	if waitDead(pids, 2*time.Second) {
		return nil
	}
	var left []string
	for _, p := range pids {
		if alive(p) {
			left = append(left, strconv.Itoa(p))
		}
	}
	return fmt.Errorf("lab: processes %s survived SIGKILL", strings.Join(left, ", "))
}

// NodeStatus is one node as Inspect sees it.
type NodeStatus struct {
	ID        string
	Namespace bool // its namespace exists
	PID       int  // 0 when no live node process is recorded
}

// Status is the state of the lab on this machine.
type Status struct {
	Namespaces []string // every shoal-* namespace
	Nodes      []NodeStatus
}

// Inspect reports the lab's namespaces and which node processes are alive;
// it works from any process, using the namespaces and pid files.
func Inspect() (Status, error) {
	var s Status
	names, err := labNamespaces()
	if err != nil {
		return s, err
	}
	slices.Sort(names)
	s.Namespaces = names
	ids := map[string]bool{}
	for _, ns := range names {
		if _, ok := nodeIndex(strings.TrimPrefix(ns, NSPrefix)); ok {
			ids[strings.TrimPrefix(ns, NSPrefix)] = true
		}
	}
	if entries, err := os.ReadDir(StateDir); err == nil {
		for _, e := range entries {
			if id, ok := strings.CutSuffix(e.Name(), ".pid"); ok {
				if _, ok := nodeIndex(id); ok {
					ids[id] = true
				}
			}
		}
	}
	for id := range ids {
		ns := slices.Contains(names, Namespace(id))
		pid, _ := nodePID(id)
		s.Nodes = append(s.Nodes, NodeStatus{ID: id, Namespace: ns, PID: pid})
	}
	slices.SortFunc(s.Nodes, func(a, b NodeStatus) int {
		ka, _ := nodeIndex(a.ID)
		kb, _ := nodeIndex(b.ID)
		return ka - kb
	})
	return s, nil
}

// Exec returns a command that runs argv in the namespace of where ("client",
// "br" or "nK") through `ip netns exec`. A bad name makes the command fail
// to start with an error wrapping ErrUnknownPlace.
func Exec(ctx context.Context, where string, argv ...string) *exec.Cmd {
	ns, err := ParseWhere(where)
	if err != nil || len(argv) == 0 {
		cmd := exec.CommandContext(ctx, "ip")
		if err == nil {
			err = errors.New("lab: exec: no command given")
		}
		cmd.Err = err
		return cmd
	}
	full := in(ns, argv...)
	return exec.CommandContext(ctx, full[0], full[1:]...)
}

// GossipKey is the lab's cluster key (AES-128, hex). Only lab namespaces
// ever see it.
const GossipKey = "73686f616c2d6c61622d6b65792d3031"

// Members is the member list the lab's nodes build their first table from.
func (l *Lab) Members() []ranges.Member {
	var ms []ranges.Member
	for i := 0; i < l.opts.Nodes; i++ {
		ms = append(ms, ranges.Member{ID: NodeID(i + 1), Weight: l.opts.Weights[i]})
	}
	return ms
}

// WaitConverged waits until every running node of ids sees want members
// and all run the same tables (the cluster's and every group's: the
// agreement hash); it returns the cluster table's hash, as status shows it.
func WaitConverged(ctx context.Context, ids []string, want int) (string, error) {
	var last string
	for {
		hashes := map[string]bool{}
		table := ""
		ok := true
		for _, id := range ids {
			var st api.Status
			if err := api.Get(SocketPath(id), api.PathStatus, &st); err != nil {
				ok, last = false, err.Error()
				break
			}
			hashes[st.AgreementHash] = true
			table = st.TableHash
			if st.Holding {
				// Still accepting buckets it gave away (make-before-break).
				ok = false
				last = fmt.Sprintf("%s still holds buckets it gave away", id)
			}
			if len(st.Members) != want || !st.Agreement {
				ok = false
				last = fmt.Sprintf("%s sees %d members (want %d), agreement %v", id, len(st.Members), want, st.Agreement)
			}
			for _, m := range st.Members {
				if m.Health == "unhealthy" {
					ok = false
					last = fmt.Sprintf("%s sees %s %s", id, m.ID, m.Health)
				}
				// The table must be built from the view: a node may agree
				// with its peers on a table made before the last change
				// reached it (it rebuilds within a sample interval).
				if m.Health == "healthy" && m.Weight != m.Availability {
					ok = false
					last = fmt.Sprintf("%s built its table with %s at %g, sees availability %g", id, m.ID, m.Weight, m.Availability)
				}
			}
		}
		if ok && len(hashes) == 1 {
			return table, nil
		}
		if ok {
			last = fmt.Sprintf("nodes run %d different tables", len(hashes))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("lab: cluster did not converge: %s", last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Restart starts node id of the running lab again from its config file
// (after Kill, or after a crash) and waits until it answers. binary is the
// shoal binary ("" = this one).
func Restart(ctx context.Context, id, binary string) error {
	if _, ok := nodeIndex(id); !ok {
		return fmt.Errorf("%w %q: nodes are named n1..n%d", ErrUnknownPlace, id, MaxNodes)
	}
	if _, err := os.Stat(ConfigPath(id)); err != nil {
		return fmt.Errorf("lab: no config for %s (%v): is the lab up?", id, err)
	}
	if pid, ok := nodePID(id); ok {
		return fmt.Errorf("lab: node %s is already running (pid %d)", id, pid)
	}
	bin, err := resolveBinary(binary)
	if err != nil {
		return err
	}
	l := &Lab{opts: Options{Binary: bin, ReadyTimeout: DefaultReadyTimeout}, procs: map[string]*proc{}}
	// A node of the groups preset proxies to its lab app: start it again
	// if it is gone too.
	if raw, err := os.ReadFile(ConfigPath(id)); err == nil && strings.Contains(string(raw), "unix:"+AppSocket(id)) {
		if _, running := appPID(id); !running {
			if err := startApp(ctx, bin, id, l.logf); err != nil {
				return err
			}
		}
	}
	if err := l.startNode(id); err != nil {
		return err
	}
	return l.waitReady(ctx, []string{id})
}

// WaitVersion waits, up to within, until every node of ids says in its
// update table that it serves version v of path (its own row available
// at v).
func WaitVersion(ctx context.Context, ids []string, path string, v uint64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		done := 0
		for _, id := range ids {
			var st api.Content
			if api.Get(SocketPath(id), api.PathContent, &st) != nil {
				continue
			}
			for _, p := range st.Paths {
				for _, r := range p.Nodes {
					if p.Path == path && r.Node == id && r.Version == v && r.State == "available" {
						done++
					}
				}
			}
		}
		if done == len(ids) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("lab: %d of %d nodes serve %s v%d after %v", done, len(ids), path, v, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
