package lab

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/control/groups"
)

// presetLab is a Lab as Up fills it in, with the certificate in dir.
func presetLab(t *testing.T, nodes int, static bool) *Lab {
	t.Helper()
	dir := t.TempDir()
	l := &Lab{
		opts:     Options{Nodes: nodes, Preset: PresetGroups, Static: static, Weights: make([]float64, nodes), MemoryMB: 128},
		certPath: filepath.Join(dir, "cert.pem"),
		keyPath:  filepath.Join(dir, "key.pem"),
	}
	for i := range l.opts.Weights {
		l.opts.Weights[i] = 1
	}
	if err := l.opts.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := EnsureCert(l.certPath, l.keyPath); err != nil {
		t.Fatal(err)
	}
	return l
}

// validConfig is node k's config as NodeConfig makes it, validated with the
// files it names under StateDir (content, admin token; they exist only in a
// running lab) stood in for by temporary ones, and those paths restored.
func validConfig(t *testing.T, l *Lab, k int) *config.Config {
	t.Helper()
	c := l.buildConfig(k)
	content, token := c.HTTP.Content, c.Admin.TokenFile
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	c.HTTP.Content, c.Admin.TokenFile = dir, tok
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("config of %s (static %v): %v", c.NodeID, l.opts.Static, err)
	}
	c.HTTP.Content, c.Admin.TokenFile = content, token
	return c
}

// TestPresetGroupsConfigs: every node's config of the groups preset
// validates (NodeConfig runs config.Validate), carries the same group
// definitions, and the memberships, upstreams, content directories, session
// cookie and TLS files are as docs/lab.md states, in gossip and static mode
// and with a fourth node that joins no group.
func TestPresetGroupsConfigs(t *testing.T) {
	wantMember := map[string][]string{"n1": {"all", "html"}, "n2": {"all", "html", "cgi"}, "n3": {"all", "cgi"}, "n4": {"all"}}
	wantDefs := append([]groups.Group{{Name: GroupAll}}, PresetGroupDefs()...)
	for _, static := range []bool{false, true} {
		l := presetLab(t, 4, static)
		for k := 1; k <= 4; k++ {
			id := NodeID(k)
			c := validConfig(t, l, k)
			if !slices.EqualFunc(c.Groups, wantDefs, func(a, b groups.Group) bool {
				return a.Name == b.Name && slices.Equal(a.Paths, b.Paths) && a.Policy == b.Policy
			}) {
				t.Errorf("%s groups %+v", id, c.Groups)
			}
			if !slices.Equal(c.MemberOf, wantMember[id]) {
				t.Errorf("%s member_of %v, want %v", id, c.MemberOf, wantMember[id])
			}
			wantUp := map[string]string(nil)
			if id == "n2" || id == "n3" {
				wantUp = map[string]string{"cgi": "unix:/run/shoal-lab/" + id + "-app.sock"}
			}
			if len(c.HTTP.Upstreams) != len(wantUp) || c.HTTP.Upstreams["cgi"] != wantUp["cgi"] {
				t.Errorf("%s upstreams %v, want %v", id, c.HTTP.Upstreams, wantUp)
			}
			if HasApp(PresetGroups, k) != (wantUp != nil) {
				t.Errorf("HasApp(%d) = %v", k, HasApp(PresetGroups, k))
			}
			if want := "/run/shoal-lab/nodes/" + id + "/content"; c.HTTP.Content != want {
				t.Errorf("%s content %q, want %q", id, c.HTTP.Content, want)
			}
			if c.HTTP.SessionCookie != "shoal_session" || c.HTTP.TLS.Cert != l.certPath || c.HTTP.TLS.Key != l.keyPath {
				t.Errorf("%s http %+v", id, c.HTTP)
			}
			if static {
				for i, m := range c.Cluster.Members {
					if !slices.Equal(m.Groups, wantMember[m.ID]) || m.Address != NodeIP(i+1) {
						t.Errorf("%s: member %+v", id, m)
					}
				}
			}
			// The rules send what the preset says where it says.
			for path, want := range map[string]string{"/page.html": "html", "/a/b.html": "html", "/app.cgi": "cgi", "/upload": "cgi", "/obj/1m": "", "/": "", "/upload/x": ""} {
				if g, _ := groups.Match(c.Groups, path, nil); g != want {
					t.Errorf("%s: %s matches group %q, want %q", id, path, g, want)
				}
			}
		}
	}
	// Without a preset: the shared content and group "all" alone.
	l := &Lab{opts: Options{Nodes: 3, Weights: []float64{1, 1, 1}}}
	c := validConfig(t, l, 2)
	if c.HTTP.Content != ContentDir || len(c.Groups) != 1 || c.Groups[0].Name != GroupAll || !slices.Equal(c.MemberOf, []string{GroupAll}) ||
		c.HTTP.Upstreams != nil || c.HTTP.TLS.Enabled() || c.HTTP.SessionCookie != "" || c.Content.Store != StorePath("n2") {
		t.Errorf("no preset: %+v groups %v", c.HTTP, c.Groups)
	}
}

func TestPresetValidate(t *testing.T) {
	for _, o := range []Options{{Preset: "groups"}, {Preset: "groups", Nodes: 5}} {
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	for _, b := range []struct {
		o   Options
		why string
	}{
		{Options{Preset: "groups", Nodes: 2}, "at least 3 nodes"},
		{Options{Preset: "groups", Nodes: 1}, "at least 3 nodes"},
		{Options{Preset: "group"}, `preset: "group" is not a preset`},
	} {
		if err := b.o.Validate(); err == nil || !strings.Contains(err.Error(), b.why) || !strings.Contains(err.Error(), "preset") {
			t.Errorf("%+v: %v; want an error naming the preset and %q", b.o, err, b.why)
		}
	}
}

// TestEnsureCert: the certificate names the lab's hosts and the VIP, the key
// is private, and a second call keeps the pair (so resumed sessions and
// pinned clients survive a new `lab up`).
func TestEnsureCert(t *testing.T) {
	dir := t.TempDir()
	cp, kp := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := EnsureCert(cp, kp); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(kp)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", st.Mode(), err)
	}
	pair, err := tls.LoadX509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	for _, h := range []string{"shoal.lab", "cgi.shoal.lab", "www.shoal.lab", VIP} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if leaf.VerifyHostname("a.b.shoal.lab") == nil || leaf.VerifyHostname("example.com") == nil {
		t.Error("the certificate names more than the lab")
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: CGIHost}); err != nil {
		t.Errorf("a client trusting the lab certificate cannot verify it: %v", err)
	}
	before, _ := os.ReadFile(cp)
	if err := EnsureCert(cp, kp); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(cp); string(after) != string(before) {
		t.Error("a second EnsureCert replaced a valid certificate")
	}
	// A broken pair is replaced.
	os.WriteFile(kp, []byte("junk"), 0o644)
	if err := EnsureCert(cp, kp); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(cp, kp); err != nil {
		t.Fatalf("after repair: %v", err)
	}
	if st, _ := os.Stat(kp); st.Mode().Perm() != 0o600 {
		t.Errorf("repaired key has mode %v", st.Mode().Perm())
	}
}

func TestPageSHA256(t *testing.T) {
	s := sha256.Sum256([]byte(PageHTML))
	if PageSHA256() != hex.EncodeToString(s[:]) || len(PageHTML) < 100 {
		t.Fatal(PageSHA256())
	}
}
