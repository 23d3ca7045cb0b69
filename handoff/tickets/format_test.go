package tickets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goldenKey is the key of period 498828 (t0 / 1 h) under clusterKey, from
// OpenSSL, not from this package:
//
//	openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:5a5a..5a (32 bytes) \
//	  -kdfopt hexinfo:73686f616c20746c73207469636b65742076310000000000079c8c HKDF
const goldenKey = "11e13918f4058f5c79190c239b5c39587b7bf6647915674de04cf623a00c0494"

// TestTicketFormat reads a ticket crypto/tls stored in a real client by
// the documented layout and opens it with AES-256-GCM under the OpenSSL
// key, the tag as additional data.
func TestTicketFormat(t *testing.T) {
	clk := newClock(t0)
	n1 := startNode(t, "n1", clusterKey, clk)
	for _, ver := range versions {
		c := &cache{}
		connect(t, n1, c, ver.v)
		ticket, _, err := c.get().ResumptionState()
		if err != nil {
			t.Fatal(err)
		}
		if string(ticket[:3]) != "SHT" || ticket[3] != 1 || ticket[4] != 2 || string(ticket[5:7]) != "n1" {
			t.Fatalf("%s: tag % x", ver.name, ticket[:7])
		}
		if p := binary.BigEndian.Uint32(ticket[7:11]); p != 498828 {
			t.Fatalf("%s: period %d, want 498828", ver.name, p)
		}
		key, _ := hex.DecodeString(goldenKey)
		b, _ := aes.NewCipher(key)
		g, _ := cipher.NewGCM(b)
		state, err := g.Open(nil, ticket[11:23], ticket[23:], ticket[:23])
		if err != nil {
			t.Fatalf("%s: the OpenSSL-derived key does not open the ticket: %v", ver.name, err)
		}
		ss, err := tls.ParseSessionState(state)
		if err != nil {
			t.Fatalf("%s: state: %v", ver.name, err)
		}
		if ss.EarlyData {
			t.Fatalf("%s: early data was never enabled", ver.name)
		}
	}
}

func TestNodeOf(t *testing.T) {
	body := make([]byte, 4+nonceLen+overhead)
	tag := func(s string) []byte { return append([]byte(s), body...) }
	long := strings.Repeat("a", 32)
	for _, c := range []struct {
		name string
		b    []byte
		node string
	}{
		{"n1", tag("SHT\x01\x02n1"), "n1"},
		{"32 bytes", tag("SHT\x01\x20" + long), long},
		{"33 bytes", tag("SHT\x01\x21" + long + "a"), ""},
		{"empty node", tag("SHT\x01\x00"), ""},
		{"version 2", tag("SHT\x02\x02n1"), ""},
		{"magic", tag("SHX\x01\x02n1"), ""},
		{"not a node ID", tag("SHT\x01\x02n."), ""},
		{"no body", []byte("SHT\x01\x02n1"), ""},
		{"one byte short", tag("SHT\x01\x02n1")[:5+2+len(body)-1], ""},
		{"Go's own ticket format", bytes.Repeat([]byte{7}, 120), ""},
		{"nil", nil, ""},
	} {
		node, ok := NodeOf(c.b)
		if node != c.node || ok != (c.node != "") {
			t.Errorf("%s: %q %v, want %q", c.name, node, ok, c.node)
		}
	}
}

// TestUnwrapRefusals: every refusal is a nil state (a full handshake) and
// a counter, never a panic.
func TestUnwrapRefusals(t *testing.T) {
	clk := newClock(t0)
	n1 := startNode(t, "n1", clusterKey, clk)
	c := &cache{}
	connect(t, n1, c, tls.VersionTLS13)
	ticket, _, _ := c.get().ResumptionState()
	k := NewKeys(clusterKey, rotation, clk.now)
	if k.Unwrap(ticket) == nil {
		t.Fatal("a fresh Keys of the same cluster key does not open the ticket")
	}
	for i := range ticket {
		b := bytes.Clone(ticket)
		b[i] ^= 0x01
		if k.Unwrap(b) != nil {
			t.Fatalf("byte %d altered: still opens", i)
		}
	}
	for n := 0; n < len(ticket); n++ {
		if k.Unwrap(ticket[:n]) != nil {
			t.Fatalf("truncated to %d: opens", n)
		}
	}
	s := k.Stats()
	if s.Accepted != 1 || s.Foreign == 0 || s.Auth == 0 || s.Expired == 0 || s.Foreign+s.Auth+s.Expired != uint64(2*len(ticket)) {
		t.Fatalf("stats %+v after %d refusals", s, 2*len(ticket))
	}
}

// FuzzUnwrap: arbitrary identities never panic and never open.
func FuzzUnwrap(f *testing.F) {
	k := NewKeys(clusterKey, rotation, func() time.Time { return t0 })
	hdr := append([]byte("SHT\x01\x02n1"), 0, 7, 0x9c, 0x8c)
	f.Add(append(hdr, make([]byte, 40)...))
	f.Add([]byte("SHT"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		node, ok := NodeOf(b)
		if ok && !validNode(node) {
			t.Fatalf("NodeOf gave %q", node)
		}
		if k.Unwrap(b) != nil {
			t.Fatalf("% x opened", b)
		}
	})
}

// TestOpenSSLResumes: openssl s_client saves the session n1 issued
// (-sess_out) and resumes it on n2 (-sess_in), TLS 1.3 and 1.2, as the
// lab check does; its ClientHello names n1.
func TestOpenSSLResumes(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	clk := newClock(time.Now())
	n1, n2 := startNode(t, "n1", clusterKey, clk), startNode(t, "n2", clusterKey, clk)
	for _, ver := range []string{"-tls1_3", "-tls1_2"} {
		sess := filepath.Join(t.TempDir(), "sess.pem")
		run := func(n *node, sessFlag string) (string, handshake) {
			cmd := exec.Command(bin, "s_client", "-connect", n.addr, "-servername", serverName, ver, "-ign_eof", sessFlag, sess)
			cmd.Stdin = strings.NewReader("")
			out, err := cmd.CombinedOutput()
			h := <-n.seen
			if err != nil || h.err != nil {
				t.Fatalf("openssl %s %s on %s: %v, server %v\n%s", ver, sessFlag, n.id, err, h.err, out)
			}
			if !strings.Contains(string(out), "served by "+n.id) {
				t.Fatalf("openssl on %s did not get the answer:\n%s", n.id, out)
			}
			return string(out), h
		}
		out, h := run(n1, "-sess_out")
		if h.resumed || !strings.Contains(out, "\nNew, ") {
			t.Fatalf("%s: first connection resumed %v:\n%s", ver, h.resumed, out)
		}
		if st, err := os.Stat(sess); err != nil || st.Size() == 0 {
			t.Fatalf("%s: no session saved: %v", ver, err)
		}
		out, h = run(n2, "-sess_in")
		if !h.resumed || !strings.Contains(out, "\nReused, ") {
			t.Fatalf("%s: n2 did not resume (server %v):\n%s", ver, h.resumed, out)
		}
		if node, ok := NodeOf(presented(h)); !ok || node != "n1" {
			t.Fatalf("%s: openssl's ClientHello names %q %v", ver, node, ok)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "Reused, ") {
				t.Logf("openssl s_client %s -sess_in on n2: %s (ticket tag names n1)", ver, line)
			}
		}
	}
}
