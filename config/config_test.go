package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

const goodConfig = `
node_id: n1
cluster:
  vip: 198.18.0.100
  seed: 7
  members: [{id: n1, weight: 1}, {id: n2, weight: 2}]
interface:
  device: net_af_packet0,iface=eth0
  address: 198.18.0.101/24
`

func TestGoodConfig(t *testing.T) {
	c, err := Parse([]byte(goodConfig), "good")
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface.Tap != "shoal0" || c.Cluster.MAC != "01:00:5e:75:c9:3e" || c.Admin.Socket != "/run/shoal/n1.sock" || c.Dataplane.ReplyPath != "auto" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

// TestBadConfig: every problem is one line naming the field.
func TestBadConfig(t *testing.T) {
	for _, c := range []struct{ edit, old, want string }{
		{"  colour: blue\n  seed: 7", "  seed: 7", "field colour not found"},
		{"weight: -2}, {id: n2", "weight: 1}, {id: n2", "cluster.members[0].weight"},
		{"weight: .nan}, {id: n2", "weight: 1}, {id: n2", "cluster.members[0].weight"},
		{"vip: 198.18.0.300", "vip: 198.18.0.100", "cluster.vip"},
		{"address: 10.0.0.1/24", "address: 198.18.0.101/24", "does not contain the VIP"},
		{"address: 198.18.0.100/24", "address: 198.18.0.101/24", "is the VIP"},
		{"node_id: n9", "node_id: n1", "not among the members"},
		{"{id: n1, weight: 2}]", "{id: n2, weight: 2}]", `"n1" is listed twice`},
		{"device: ''", "device: net_af_packet0,iface=eth0", "interface.device"},
		{"seed: 7\n  mac: zz", "seed: 7", "cluster.mac"},
		{"iface=eth0\n  tap: this-name-is-far-too-long", "iface=eth0", "interface.tap"},
		{"address: 198.18.0.101/24\ndataplane:\n  extra_buckets: 9-3", "address: 198.18.0.101/24", "dataplane.extra_buckets"},
		{"address: 198.18.0.101/24\ndataplane:\n  max_half_open: 99999999", "address: 198.18.0.101/24", "dataplane.max_half_open"},
		{"address: 198.18.0.101/24\ndataplane:\n  reply_path: fast", "address: 198.18.0.101/24", "dataplane.reply_path"},
		{"address: 198.18.0.101/24\ndataplane:\n  prefilter: yes", "address: 198.18.0.101/24", "dataplane.prefilter"},
		{"address: 198.18.0.101/24\ndpdk:\n  hugepages: maybe", "address: 198.18.0.101/24", "dpdk.hugepages"},
		{"address: 198.18.0.101/24\ndataplane:\n  ports: []", "address: 198.18.0.101/24", "dataplane.ports"},
		{"address: 198.18.0.101/24\ndataplane:\n  ports: [80, 70000]", "address: 198.18.0.101/24", "dataplane.ports[1]"},
		{"address: 198.18.0.101/24\ndataplane:\n  ports: [80, 80]", "address: 198.18.0.101/24", "dataplane.ports[1]: 80 is listed twice"},
		{"seed: notanumber", "seed: 7", "line"},
	} {
		raw := strings.Replace(goodConfig, c.old, c.edit, 1)
		_, err := Parse([]byte(raw), "bad")
		if err == nil {
			t.Errorf("%q: accepted", c.edit)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %q, want one line containing %q", c.edit, err, c.want)
		}
	}
}

func TestParseBuckets(t *testing.T) {
	b, err := ParseBuckets("0-2, 9")
	if err != nil || len(b) != 4 || b[3] != 9 {
		t.Fatalf("%v %v", b, err)
	}
	for _, bad := range []string{"x", "5-1", "70000", "-1"} {
		if _, err := ParseBuckets(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestAdminTCPNeedsToken(t *testing.T) {
	raw := goodConfig + "admin:\n  listen: 127.0.0.1:9090\n"
	if _, err := Parse([]byte(raw), "x"); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Fatalf("err = %v", err)
	}
	dir := t.TempDir()
	short := dir + "/short"
	os.WriteFile(short, []byte("abc\n"), 0o600)
	if _, err := Parse([]byte(raw+"  token_file: "+short+"\n"), "x"); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("err = %v", err)
	}
	good := dir + "/good"
	os.WriteFile(good, []byte("0123456789abcdef0123\n"), 0o600)
	if _, err := Parse([]byte(raw+"  token_file: "+good+"\n"), "x"); err != nil {
		t.Fatal(err)
	}
}

// TestEveryProblemListed: an operator fixing a config sees all of its
// problems at once, one per line, each naming its field.
func TestEveryProblemListed(t *testing.T) {
	raw := strings.NewReplacer("vip: 198.18.0.100", "vip: nope", "seed: 7", "seed: 7\n  mac: zz",
		"address: 198.18.0.101/24", "address: x").Replace(goodConfig) + "dpdk:\n  hugepages: maybe\n"
	_, err := Parse([]byte(raw), "bad.yaml")
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *Error", err)
	}
	want := []string{"cluster.vip", "cluster.mac", "interface.address", "dpdk.hugepages"}
	if len(ce.Problems) != len(want) {
		t.Fatalf("problems = %q, want %d", ce.Problems, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(ce.Problems[i], w+":") {
			t.Errorf("problem %d = %q, want it to start with %s:", i, ce.Problems[i], w)
		}
	}
	if !strings.HasPrefix(err.Error(), "config bad.yaml: cluster.vip:") || strings.Contains(err.Error(), "\n") {
		t.Errorf("one-line form = %q", err.Error())
	}
}
