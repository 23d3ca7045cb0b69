package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-lb/shoal/config"
)

// Addresses and names of the lab. Everything sits in 198.18.0.0/15, the range
// reserved for network benchmarks, so nothing can leak onto a real network.
const (
	// VIP is the virtual address every node holds on its tap.
	VIP = "198.18.0.100"
	// ClientIP is the client's address on its veth.
	ClientIP = "198.18.0.10"
	// ClientMAC is the client veth's MAC (02:00 + 198.18 + .10), fixed so
	// captures and bridge tables read the same on every run.
	ClientMAC = "02:00:c6:12:00:0a"
	// ClusterMAC is the multicast MAC the nodes answer ARP for the VIP with;
	// the bridge floods it to every port.
	ClusterMAC = "01:00:5e:75:c9:3e"
	// Prefix is the lab subnet's prefix length.
	Prefix = 24
	// MaxNodes bounds the cluster size: node addresses must stay inside the
	// /24 and bridge port names short.
	MaxNodes = 16
	// StateDir holds configs, pid files, logs, admin sockets and content.
	StateDir = "/run/shoal-lab"
	// NSPrefix starts the name of every lab namespace.
	NSPrefix = "shoal-"
	// Interface is the name of the veth inside the client and node
	// namespaces.
	Interface = "eth0"
	// Tap is the name of the tap each node creates for the kernel path.
	Tap = "shoal0"
	// Device is the DPDK devargs with which a node drives its veth.
	Device = "net_af_packet0,iface=" + Interface
	// DefaultNodes is the cluster size when Options.Nodes is zero.
	DefaultNodes = 3
	// DefaultReadyTimeout bounds the wait for the nodes to answer.
	DefaultReadyTimeout = 20 * time.Second
)

// NodeID is the name of node k (1-based): "nK".
func NodeID(k int) string { return "n" + strconv.Itoa(k) }

// NodeIP is node k's own address: 198.18.0.(100+k).
func NodeIP(k int) string { return fmt.Sprintf("198.18.0.%d", 100+k) }

// NodeMAC is node k's veth MAC (02:00 + 198.18 + 0.(100+k)). The node gives
// its tap the NIC's MAC, so this is also the MAC of the node's own address.
func NodeMAC(k int) string { return fmt.Sprintf("02:00:c6:12:00:%02x", 100+k) }

// Namespace is the network namespace of where ("client", "br" or "nK").
func Namespace(where string) string { return NSPrefix + where }

// Options describe the lab to build. The zero value is a three-node cluster
// of equal weights started from the running executable.
type Options struct {
	// Nodes is the cluster size, 1..MaxNodes; zero means DefaultNodes.
	Nodes int
	// Weights are the configured capacities, one per node, each > 0; nil
	// means all 1.
	Weights []float64
	// StaticNeighbor adds a permanent neighbour entry VIP → ClusterMAC on
	// the client, as a router with a static ARP entry would have, instead
	// of resolving the VIP by ARP through the nodes.
	StaticNeighbor bool
	// Binary is the shoal binary that runs the nodes; empty means
	// os.Executable(), which is right for the shoal command but not under
	// `go test` (see BuildBinary).
	Binary string
	// ExtraBuckets maps a node index (1-based) to its
	// dataplane.extra_buckets ("0-99,512"), to provoke overlaps in tests.
	ExtraBuckets map[int]string
	// ReplyPath is every node's dataplane.reply_path ("auto", "kernel",
	// "tap"); empty means auto, which is kernel on the lab's af_packet
	// veths. ReplyPaths overrides it per node index (1-based), to run both
	// modes in one lab.
	ReplyPath  string
	ReplyPaths map[int]string
	// Static gives every node the member list in its config instead of
	// gossip.
	Static bool
	// SlowStart is the nodes' slow-start window; 0 (the lab's default,
	// unlike a node's 30 s) keeps tables predictable for tests.
	SlowStart time.Duration
	// SkipConverge tells callers not to wait for a healthy, agreeing
	// cluster (for tests of nodes that never become healthy).
	SkipConverge bool
	// Seed is cluster.seed, the connection hash seed.
	Seed uint32
	// MemoryMB is dpdk.memory_mb per node; zero means 128.
	MemoryMB int
	// ReadyTimeout bounds the wait for all nodes to answer; zero means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// NetworkOnly builds namespaces, bridge, filters and content but starts
	// no node, for tests of the network itself and for running nodes by
	// hand.
	NetworkOnly bool
	// Preset is "" (every node serves the same content) or PresetGroups
	// (content groups, the lab app, HTTPS; see PresetGroups). It needs
	// PresetGroupsMinNodes nodes or more.
	Preset string
	// Configure, if set, may adjust each node's config before it is
	// written (timeouts, lcores, ...). The result is validated.
	Configure func(id string, c *config.Config)
	// Log receives one line per step; nil discards them.
	Log io.Writer
}

// Validate reports bad options, each error naming its field. The shoal
// command treats every error from it as bad input.
func (o *Options) Validate() error {
	var errs []error
	n := o.Nodes
	if n == 0 {
		n = DefaultNodes
	}
	if n < 1 || n > MaxNodes {
		errs = append(errs, fmt.Errorf("nodes: %d must be between 1 and %d", o.Nodes, MaxNodes))
	}
	if o.Weights != nil {
		if len(o.Weights) != n {
			errs = append(errs, fmt.Errorf("weights: %d given for %d nodes; give one per node", len(o.Weights), n))
		}
		for i, w := range o.Weights {
			if err := checkWeight(w); err != nil {
				errs = append(errs, fmt.Errorf("weights[%d]: %v", i, err))
			}
		}
	}
	for k, b := range o.ExtraBuckets {
		if k < 1 || k > n {
			errs = append(errs, fmt.Errorf("extra buckets: node index %d is not among nodes 1..%d", k, n))
		}
		if _, err := config.ParseBuckets(b); err != nil {
			errs = append(errs, fmt.Errorf("extra buckets of %s: %v", NodeID(k), err))
		}
	}
	if err := checkReplyPath(o.ReplyPath); err != nil {
		errs = append(errs, fmt.Errorf("reply path: %v", err))
	}
	for k, m := range o.ReplyPaths {
		if k < 1 || k > n {
			errs = append(errs, fmt.Errorf("reply paths: node index %d is not among nodes 1..%d", k, n))
		}
		if err := checkReplyPath(m); err != nil {
			errs = append(errs, fmt.Errorf("reply path of %s: %v", NodeID(k), err))
		}
	}
	if err := checkPreset(o.Preset, n); err != nil {
		errs = append(errs, err)
	}
	if o.MemoryMB < 0 {
		errs = append(errs, fmt.Errorf("memory: %d MiB is negative", o.MemoryMB))
	}
	if o.ReadyTimeout < 0 {
		errs = append(errs, fmt.Errorf("ready timeout: %v is negative", o.ReadyTimeout))
	}
	return errors.Join(errs...)
}

// ParseReplyPaths sets opts' reply paths from "tap" (every node) or
// "kernel,tap,kernel" (one per node).
func ParseReplyPaths(s string, nodes int, opts *Options) error {
	parts := strings.Split(s, ",")
	if len(parts) == 1 {
		opts.ReplyPath = strings.TrimSpace(s)
		return checkReplyPath(opts.ReplyPath)
	}
	if len(parts) != nodes {
		return fmt.Errorf("%q: %d given for %d nodes; give one, or one per node", s, len(parts), nodes)
	}
	opts.ReplyPaths = map[int]string{}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if err := checkReplyPath(p); err != nil {
			return err
		}
		opts.ReplyPaths[i+1] = p
	}
	return nil
}

func checkReplyPath(m string) error {
	switch m {
	case "", "auto", "kernel", "tap":
		return nil
	}
	return fmt.Errorf("%q must be auto, kernel or tap", m)
}

func checkWeight(w float64) error {
	if math.IsNaN(w) || math.IsInf(w, 0) || w <= 0 || w > 1e6 {
		return fmt.Errorf("%v must be a finite number above 0 and at most 1000000", w)
	}
	return nil
}

// ParseWeights parses "1,2,1" into one weight per node and checks the count
// against nodes.
func ParseWeights(s string, nodes int) ([]float64, error) {
	parts := strings.Split(s, ",")
	if len(parts) != nodes {
		return nil, fmt.Errorf("weights %q: %d given for %d nodes; give one per node", s, len(parts), nodes)
	}
	out := make([]float64, len(parts))
	for i, p := range parts {
		w, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return nil, fmt.Errorf("weights %q: %q is not a number", s, p)
		}
		if err := checkWeight(w); err != nil {
			return nil, fmt.Errorf("weights %q: %v", s, err)
		}
		out[i] = w
	}
	return out, nil
}

var wherePattern = regexp.MustCompile(`^(client|br|n([1-9][0-9]?)|h[1-9])$`)

// ErrUnknownPlace marks a name that is not "client", "br" or "nK" of the
// running lab; the shoal command reports it as bad input.
var ErrUnknownPlace = errors.New("unknown lab namespace")

// ParseWhere checks that where names a lab place ("client", "br", "nK" with
// 1 <= K <= MaxNodes, or an extra host "hK" with 1 <= K <= MaxHosts) and
// returns its namespace. It does not check that the
// namespace exists (see CheckWhere).
func ParseWhere(where string) (string, error) {
	m := wherePattern.FindStringSubmatch(where)
	if m == nil {
		return "", fmt.Errorf("%w %q: use client, br, n1..n%d or h1..h%d", ErrUnknownPlace, where, MaxNodes, MaxHosts)
	}
	if m[2] != "" {
		if k, _ := strconv.Atoi(m[2]); k > MaxNodes {
			return "", fmt.Errorf("%w %q: nodes go up to n%d", ErrUnknownPlace, where, MaxNodes)
		}
	}
	return Namespace(where), nil
}

// CheckWhere is ParseWhere plus a check that the namespace exists now.
func CheckWhere(where string) error {
	ns, err := ParseWhere(where)
	if err != nil {
		return err
	}
	if _, err := os.Stat("/run/netns/" + ns); err != nil {
		return fmt.Errorf("%w %q: namespace %s does not exist (is the lab up? `shoal lab status`)", ErrUnknownPlace, where, ns)
	}
	return nil
}

// Lab is a running lab built by Up.
type Lab struct {
	opts Options
	ids  []string

	mu    sync.Mutex
	procs map[string]*proc // nodes started by this process

	// certPath and keyPath are the lab certificate's files (CertPath and
	// KeyPath; unit tests point them elsewhere).
	certPath, keyPath string
}

// NodeIDs lists the node names n1..nN.
func (l *Lab) NodeIDs() []string { return append([]string(nil), l.ids...) }

// Options returns the options the lab was built with, defaults filled in.
func (l *Lab) Options() Options { return l.opts }

// HTTPClient returns an HTTP client whose connections originate in the client
// namespace, so Go tests can talk to the VIP without curl.
func (l *Lab) HTTPClient() *http.Client { return HTTPClient("client") }

// Down is the package Down, for symmetry with Up.
func (l *Lab) Down() error { return Down() }

func (l *Lab) logf(format string, a ...any) {
	if l.opts.Log != nil {
		fmt.Fprintf(l.opts.Log, "lab: "+format+"\n", a...)
	}
}

// Up builds a lab as described in the package comment and returns once every
// node answers. It replaces any lab left behind by an earlier run.
func Up(ctx context.Context, opts Options) (*Lab, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	if opts.Nodes == 0 {
		opts.Nodes = DefaultNodes
	}
	if opts.Weights == nil {
		opts.Weights = make([]float64, opts.Nodes)
		for i := range opts.Weights {
			opts.Weights[i] = 1
		}
	}
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 128
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	if !opts.NetworkOnly {
		bin, err := resolveBinary(opts.Binary)
		if err != nil {
			return nil, err
		}
		opts.Binary = bin
	}
	if err := CheckHost(); err != nil {
		return nil, err
	}
	l := &Lab{opts: opts, procs: map[string]*proc{}, certPath: CertPath, keyPath: KeyPath}
	for k := 1; k <= opts.Nodes; k++ {
		l.ids = append(l.ids, NodeID(k))
	}
	if err := acquireLock(ctx, l.logf); err != nil {
		return nil, err
	}
	if err := l.build(ctx); err != nil {
		l.logf("setup failed; tearing down what was made")
		if derr := Down(); derr != nil {
			err = fmt.Errorf("%w (and teardown: %v)", err, derr)
		}
		return nil, err
	}
	return l, nil
}

// build does Up's work once the lock is held.
func (l *Lab) build(ctx context.Context) error {
	l.logf("removing any previous lab")
	if err := teardown(false); err != nil {
		return fmt.Errorf("lab: removing previous lab: %w", err)
	}
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.logf("writing content to %s", ContentDir)
	if err := WriteContent(ContentDir); err != nil {
		return err
	}
	if l.opts.Preset != "" {
		l.logf("writing each node's content to %s", NodeContentDir("nK"))
		if err := l.writeNodeContent(); err != nil {
			return err
		}
		l.logf("lab certificate %s (kept across runs)", CertPath)
		if err := EnsureCert(l.certPath, l.keyPath); err != nil {
			return err
		}
	}
	l.logf("creating namespaces for the client and %d nodes", l.opts.Nodes)
	if err := createNetwork(ctx, l.opts.Nodes, l.opts.StaticNeighbor); err != nil {
		return err
	}
	if l.opts.NetworkOnly {
		return nil
	}
	if err := writeToken(); err != nil {
		return err
	}
	for k := 1; k <= l.opts.Nodes; k++ {
		if err := l.writeConfig(k); err != nil {
			return err
		}
	}
	for k, id := range l.ids {
		if HasApp(l.opts.Preset, k+1) {
			if err := l.startApp(ctx, id); err != nil {
				return err
			}
		}
	}
	for _, id := range l.ids {
		if err := l.startNode(id); err != nil {
			return err
		}
	}
	return l.waitReady(ctx, l.ids)
}

// downLockWait bounds how long Down waits for another process's lab.
const downLockWait = 20 * time.Minute

// Down stops every lab process, deletes every shoal-* namespace and removes
// StateDir. It is idempotent. It takes the lab lock first, so it never
// tears down a lab another live process is using.
func Down() error {
	// Only the lock's holder may tear the lab down: another process's lab
	// (a test run beside this one) is waited for, never destroyed. A lab
	// left by a process that died has a free lock.
	ctx, cancel := context.WithTimeout(context.Background(), downLockWait)
	defer cancel()
	if err := acquireLock(ctx, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }); err != nil {
		return fmt.Errorf("lab: not torn down: %w", err)
	}
	err := teardown(true)
	releaseLock()
	return err
}

// DownInto is Down for a deferred call in a function with a named error
// result: it tears the lab down whatever happened and reports Down's error
// through *err unless *err already holds one (a benchmark that measured
// and then could not tear the lab down still says so).
func DownInto(err *error) {
	if derr := Down(); derr != nil && *err == nil {
		*err = derr
	}
}

// keptAcrossUps are the StateDir entries Up keeps: the content, so a 100 MB
// file is not rewritten on every run, and the lab certificate.
var keptAcrossUps = []string{contentDirName, filepath.Base(CertPath), filepath.Base(KeyPath)}

// teardown stops processes and deletes namespaces; all also removes StateDir
// (Up keeps keptAcrossUps).
func teardown(all bool) error {
	var errs []error
	if err := stopAll(); err != nil {
		errs = append(errs, err)
	}
	if err := deleteNamespaces(); err != nil {
		errs = append(errs, err)
	}
	if all {
		if err := os.RemoveAll(StateDir); err != nil {
			errs = append(errs, fmt.Errorf("lab: %w", err))
		}
	} else if entries, err := os.ReadDir(StateDir); err == nil {
		for _, e := range entries {
			if !slices.Contains(keptAcrossUps, e.Name()) {
				if err := os.RemoveAll(StateDir + "/" + e.Name()); err != nil {
					errs = append(errs, fmt.Errorf("lab: %w", err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
