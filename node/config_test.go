package node

import (
	"net/http"
	"net/http/httptest"
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
	c, err := ParseConfig([]byte(goodConfig), "good")
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface.Tap != "shoal0" || c.Cluster.MAC != "01:00:5e:75:c9:3e" || c.Admin.Socket != "/run/shoal/n1.sock" {
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
		{"address: 198.18.0.101/24\ndpdk:\n  hugepages: maybe", "address: 198.18.0.101/24", "dpdk.hugepages"},
		{"address: 198.18.0.101/24\ndataplane:\n  ports: []", "address: 198.18.0.101/24", "dataplane.ports"},
		{"address: 198.18.0.101/24\ndataplane:\n  ports: [80, 70000]", "address: 198.18.0.101/24", "dataplane.ports[1]"},
		{"address: 198.18.0.101/24\ndataplane:\n  ports: [80, 80]", "address: 198.18.0.101/24", "dataplane.ports[1]: 80 is listed twice"},
		{"seed: notanumber", "seed: 7", "line"},
	} {
		raw := strings.Replace(goodConfig, c.old, c.edit, 1)
		_, err := ParseConfig([]byte(raw), "bad")
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

func TestLooksLikePCI(t *testing.T) {
	for dev, want := range map[string]bool{"0000:03:00.0": true, "03:00.0": true, "pci:0000:03:00.1,x=1": true,
		"net_af_packet0,iface=eth0": false, "net_tap0": false} {
		if looksLikePCI(dev) != want {
			t.Errorf("%s: %v", dev, !want)
		}
	}
}

func TestAdminTCPNeedsToken(t *testing.T) {
	raw := goodConfig + "admin:\n  listen: 127.0.0.1:9090\n"
	if _, err := ParseConfig([]byte(raw), "x"); err == nil || !strings.Contains(err.Error(), "admin.token_file") {
		t.Fatalf("err = %v", err)
	}
	dir := t.TempDir()
	short := dir + "/short"
	os.WriteFile(short, []byte("abc\n"), 0o600)
	if _, err := ParseConfig([]byte(raw+"  token_file: "+short+"\n"), "x"); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("err = %v", err)
	}
	good := dir + "/good"
	os.WriteFile(good, []byte("0123456789abcdef0123\n"), 0o600)
	if _, err := ParseConfig([]byte(raw+"  token_file: "+good+"\n"), "x"); err != nil {
		t.Fatal(err)
	}
}

func TestBearer(t *testing.T) {
	h := bearer("0123456789abcdef", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	for auth, want := range map[string]int{"": 401, "Bearer nope": 401, "Bearer 0123456789abcdef": 204} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/status", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("%q: %d, want %d", auth, rec.Code, want)
		}
	}
}
