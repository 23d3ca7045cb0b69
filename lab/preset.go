package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/control/groups"
)

// PresetGroups is the preset of issue 12 (`shoal lab up --preset groups`):
// content groups html = {n1, n2} (paths *.html; /page.html exists only on
// n1 and n2) and cgi = {n2, n3} (paths *.cgi and /upload, served by the lab
// app, package lab/app, on n2 and n3), the session cookie shoal_session,
// and HTTPS on VIP:443 with the lab certificate. Nodes beyond n3 join no
// group. It needs at least PresetGroupsMinNodes nodes.
const PresetGroups = "groups"

// PresetGroupsMinNodes is the smallest cluster the groups preset builds.
const PresetGroupsMinNodes = 3

// SessionCookie is the preset's http.session_cookie, the cookie the lab app
// sets.
const SessionCookie = "shoal_session"

// The lab certificate: self-signed ECDSA P-256 for LabDomain, "*."+LabDomain
// and the VIP, generated on the first Up that needs it and kept across Ups
// (Down removes it with StateDir). The key file is mode 0600.
const (
	LabDomain = "shoal.lab"
	CertPath  = StateDir + "/lab-cert.pem"
	KeyPath   = StateDir + "/lab-key.pem"
)

// CGIHost is the host name (SNI or Host) the preset routes to group cgi,
// when the group definitions support hosts.
const CGIHost = "cgi." + LabDomain

// PageHTML is /page.html, which only n1 and n2 (group html) hold.
const PageHTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>shoal lab: page.html</title></head>
<body><p>This page exists only on the nodes of group html (n1 and n2 in the groups preset).</p></body></html>
`

// PageSHA256 is the hex SHA-256 of PageHTML.
func PageSHA256() string {
	s := sha256.Sum256([]byte(PageHTML))
	return hex.EncodeToString(s[:])
}

// PresetGroupDefs are the group definitions of the groups preset, the same
// on every node.
func PresetGroupDefs() []groups.Group {
	return []groups.Group{
		{Name: "html", Paths: []string{"*.html"}, Policy: groups.ByHash},
		{Name: "cgi", Paths: []string{"*.cgi", "/upload"}, Policy: groups.ByHash},
	}
}

// PresetMemberOf names the groups node k serves in the groups preset.
func PresetMemberOf(k int) []string {
	switch k {
	case 1:
		return []string{"html"}
	case 2:
		return []string{"html", "cgi"}
	case 3:
		return []string{"cgi"}
	}
	return nil
}

// NodeContentDir is node id's own content directory (http.content) under
// a preset: the common files of ContentDir, hard-linked, plus the node's
// own. Without a preset every node serves ContentDir itself.
func NodeContentDir(id string) string { return filepath.Join(StateDir, "nodes", id, "content") }

// Paths of a node's lab app (groups preset, group cgi).
func AppSocket(id string) string  { return filepath.Join(StateDir, id+"-app.sock") }
func AppPIDPath(id string) string { return filepath.Join(StateDir, id+"-app.pid") }
func AppLogPath(id string) string { return filepath.Join(StateDir, id+"-app.log") }

// HasApp says whether node k runs the lab app under the preset.
func HasApp(preset string, k int) bool {
	return preset == PresetGroups && slices.Contains(PresetMemberOf(k), "cgi")
}

// ContentDirOf is the http.content of node k under the lab's options.
func (l *Lab) ContentDirOf(k int) string {
	if l.opts.Preset == "" {
		return ContentDir
	}
	return NodeContentDir(NodeID(k))
}

func checkPreset(p string, nodes int) error {
	switch p {
	case "":
		return nil
	case PresetGroups:
		if nodes < PresetGroupsMinNodes {
			return fmt.Errorf("preset %q needs at least %d nodes (groups html = {n1, n2}, cgi = {n2, n3}), got %d", p, PresetGroupsMinNodes, nodes)
		}
		return nil
	}
	return fmt.Errorf("preset: %q is not a preset; the only one is %q", p, PresetGroups)
}

// applyPreset turns node k's base config into the preset's.
func (l *Lab) applyPreset(k int, c *config.Config) {
	if l.opts.Preset != PresetGroups {
		return
	}
	id := NodeID(k)
	c.Groups = append(c.Groups, PresetGroupDefs()...)
	setHosts(c.Groups)
	c.MemberOf = append(c.MemberOf, PresetMemberOf(k)...)
	for i := range c.Cluster.Members { // static mode: the member list says it too
		c.Cluster.Members[i].Groups = append(c.Cluster.Members[i].Groups, PresetMemberOf(i+1)...)
		c.Cluster.Members[i].Address = NodeIP(i + 1)
	}
	c.HTTP.Content = l.ContentDirOf(k)
	c.HTTP.SessionCookie = SessionCookie
	if HasApp(l.opts.Preset, k) {
		c.HTTP.Upstreams = map[string]string{"cgi": "unix:" + AppSocket(id)}
	}
	c.HTTP.TLS.Cert, c.HTTP.TLS.Key = l.certPath, l.keyPath
	if l.certPath == "" {
		c.HTTP.TLS.Cert, c.HTTP.TLS.Key = CertPath, KeyPath
	}
}

// setHosts gives group cgi its SNI/Host rule: a TLS connection naming
// CGIHost goes to group cgi before any path is known.
func setHosts(gs []groups.Group) {
	for i := range gs {
		if gs[i].Name == "cgi" {
			gs[i].Hosts = []string{CGIHost}
		}
	}
}

// writeNodeContent builds every node's content directory: hard links to the
// shared generated files (symlinks if the file system refuses links), and
// page.html on the members of group html.
func (l *Lab) writeNodeContent() error {
	if err := os.RemoveAll(filepath.Join(StateDir, "nodes")); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	common := []string{"index.html"}
	for _, o := range Objects {
		common = append(common, o.Name)
	}
	for k := 1; k <= l.opts.Nodes; k++ {
		dir := NodeContentDir(NodeID(k))
		for _, name := range common {
			src, dst := filepath.Join(ContentDir, name), filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return fmt.Errorf("lab: content of %s: %w", NodeID(k), err)
			}
			if err := os.Link(src, dst); err != nil {
				if err := os.Symlink(src, dst); err != nil {
					return fmt.Errorf("lab: content of %s: %w", NodeID(k), err)
				}
			}
		}
		if slices.Contains(PresetMemberOf(k), "html") {
			if err := writeIfChanged(filepath.Join(dir, "page.html"), []byte(PageHTML)); err != nil {
				return err
			}
		}
	}
	return nil
}

// EnsureCert writes the lab certificate and key to certPath and keyPath
// unless a valid pair for the lab's names is already there.
func EnsureCert(certPath, keyPath string) error {
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil &&
			leaf.VerifyHostname(CGIHost) == nil && leaf.VerifyHostname(VIP) == nil &&
			time.Now().Add(24*time.Hour).Before(leaf.NotAfter) {
			return nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("lab: certificate key: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: LabDomain, Organization: []string{"shoal lab"}},
		DNSNames:              []string{LabDomain, "*." + LabDomain},
		IPAddresses:           []net.IP{net.ParseIP(VIP)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("lab: certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("lab: certificate key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o755); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.Chmod(keyPath, 0o600); err != nil { // an older file keeps its mode through WriteFile
		return fmt.Errorf("lab: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// startApp starts node id's lab app in the node's namespace, detached like
// a node, and waits until its socket accepts connections.
func (l *Lab) startApp(ctx context.Context, id string) error {
	return startApp(ctx, l.opts.Binary, id, l.logf)
}

func startApp(ctx context.Context, bin, id string, logf func(string, ...any)) error {
	if pid, ok := appPID(id); ok {
		return fmt.Errorf("lab: the app of %s is already running (pid %d)", id, pid)
	}
	lf, err := os.OpenFile(AppLogPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer lf.Close()
	argv := in(Namespace(id), bin, "lab", "app", "--listen", "unix:"+AppSocket(id), "--node", id)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("lab: starting the app of %s: `%s`: %w", id, strings.Join(argv, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := os.WriteFile(AppPIDPath(id), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	logf("started the app of %s, pid %d, socket %s", id, cmd.Process.Pid, AppSocket(id))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if c, err := net.Dial("unix", AppSocket(id)); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-done:
			os.Remove(AppPIDPath(id))
			b, _ := os.ReadFile(AppLogPath(id))
			return fmt.Errorf("lab: the app of %s exited (%v): %s", id, err, strings.TrimSpace(string(b)))
		case <-ctx.Done():
			return fmt.Errorf("lab: the app of %s does not accept on %s: %w", id, AppSocket(id), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// appPID returns the pid in node id's app pid file if that process is alive
// and is that app (a reused pid is never signalled).
func appPID(id string) (int, bool) {
	return pidFileProcess(AppPIDPath(id), "\x00app\x00--listen\x00unix:"+AppSocket(id)+"\x00")
}

// appPIDs lists the live lab apps recorded in StateDir.
func appPIDs() []int {
	var pids []int
	entries, _ := os.ReadDir(StateDir)
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), "-app.pid"); ok {
			if pid, ok := appPID(id); ok {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// StopApp stops node id's lab app (SIGTERM, then SIGKILL), for tests of a
// dead upstream.
func StopApp(id string) error {
	pid, ok := appPID(id)
	if !ok {
		return errors.New("lab: the app of " + id + " is not running")
	}
	syscall.Kill(pid, syscall.SIGTERM)
	if !waitDead([]int{pid}, stopGrace) {
		syscall.Kill(pid, syscall.SIGKILL)
		waitDead([]int{pid}, 2*time.Second)
	}
	os.Remove(AppPIDPath(id))
	return nil
}
