package peek

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func unhexs(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseClientHelloCaptured checks hellos captured from curl and
// openssl s_client on this machine (testdata/tls; see testdata/README). The
// session IDs and tickets were read from openssl's own session files
// (openssl sess_id -text), not from this parser.
func TestParseClientHelloCaptured(t *testing.T) {
	for _, tc := range []struct {
		file      string
		sni       string
		alpn      []string
		tls13     bool
		sessionID string
		ticket    string // hex; "-" for no extension, "" for an empty one
		psk       string // hex of the first PSK identity
	}{
		{file: "curl-tls.bin", sni: "www.example.test", alpn: []string{"h2", "http/1.1"}, tls13: true, ticket: "-"},
		{file: "openssl-s_client.bin", sni: "video.example.test", alpn: []string{"h2", "http/1.1"}, tls13: true, ticket: ""},
		{file: "openssl-tls12-nosni.bin", ticket: ""},
		{file: "openssl-resume-tls1_2.bin", sni: "lab.example.test",
			sessionID: "d58658e7439a110d636f78d9c53d3fbad5f104efb08ccde97aa2e1e7558998c1",
			ticket:    "a88ea40aa9bdb48167ec20a07353342b7b2b373f648949f1f7075f05aa849bf629d8753a76227b90c2cdba271eb8286a99632ac939d8e117ed828f6ffdd23d31d4da0ce266662bd8864dd4b5523cf157a307c71c93607913df6f52e35bfaf30dc3982de5c09c05a560512f1b5c83f455deafbb459710213787da9f20a3670274dc1a8a64723fa7bdbc8bc3c55c4cb1028ef8678d078ded7240fe5c555cb995176b70e85774623d2a01ff697d5b66b375"},
		{file: "openssl-resume-tls1_3.bin", sni: "lab.example.test", tls13: true, ticket: "",
			psk: "e0a6a491f47c9a9b98546eb18e4f11d77f78c0b412698ff1063688d200d7744a3ed800178fbbdf462beb61a823dbb701110e2e3f88e262dde0e0d2b229d4cfe779971dbc9d768d548def2bf924a40448e642af983e2d7e7f775ccb5d12ad6541904fcfb547b50ac50c1a3e0406c702f1e9be9c41f6f9c0c23cad3227dde1311facdd32378385371a49dc0c151ea8735fe79b6e9c6f30030d48be2084d1b17e18580bd93c29e4409bbac552f4fe97c361377bb58a1ba6f581cf51e97607ffe45baf2fc1dd1225d3dafa14c9bb84678b45"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "tls", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			ch, err := ParseClientHello(b)
			if err != nil {
				t.Fatal(err)
			}
			if ch.Len != len(b) {
				t.Errorf("Len %d, the capture has %d bytes", ch.Len, len(b))
			}
			if ch.SNI != tc.sni || !reflect.DeepEqual(ch.ALPN, tc.alpn) || ch.OffersTLS13() != tc.tls13 {
				t.Errorf("SNI %q ALPN %q TLS1.3 %v; want %q %q %v", ch.SNI, ch.ALPN, ch.OffersTLS13(), tc.sni, tc.alpn, tc.tls13)
			}
			if tc.sessionID != "" && !bytes.Equal(ch.SessionID, unhexs(t, tc.sessionID)) {
				t.Errorf("session ID %x, want %s", ch.SessionID, tc.sessionID)
			}
			if tc.ticket == "-" {
				if ch.HasTicket {
					t.Errorf("session_ticket extension present (%x), want none", ch.Ticket)
				}
			} else if !ch.HasTicket || !bytes.Equal(ch.Ticket, unhexs(t, tc.ticket)) {
				t.Errorf("ticket %v %x, want %s", ch.HasTicket, ch.Ticket, tc.ticket)
			}
			if tc.psk != "" && (len(ch.PSKIdentities) != 1 || !bytes.Equal(ch.PSKIdentities[0], unhexs(t, tc.psk))) {
				t.Errorf("PSK identities %x, want [%s]", ch.PSKIdentities, tc.psk)
			}
			for k := 0; k < len(b); k++ {
				if _, err := ParseClientHello(b[:k]); VerdictOf(err) != NeedMore {
					t.Fatalf("prefix of %d bytes: %v, want need_more", k, err)
				}
			}
		})
	}
}

// captureHello runs a crypto/tls client against one end of a net.Pipe and
// returns the ClientHello records it wrote.
func captureHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	go tls.Client(c, cfg).Handshake() // fails when s closes; only its hello matters
	var out []byte
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[3:]))
		if _, err := io.ReadFull(s, body); err != nil {
			t.Fatal(err)
		}
		out = append(append(out, hdr[:]...), body...)
		if _, err := ParseClientHello(out); VerdictOf(err) != NeedMore {
			return out
		}
	}
}

// testCert makes a throwaway self-signed certificate for name.
func testCert(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// handshake runs a full client/server handshake over loopback TCP (a
// net.Pipe has no buffer, and both TLS 1.3 ends write at once) and moves
// one byte each way, so that a TLS 1.3 client receives its tickets.
func handshake(t *testing.T, ccfg, scfg *tls.Config) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() {
		srv := tls.Server(s, scfg)
		var b [1]byte
		if _, err := srv.Read(b[:]); err != nil {
			done <- err
			return
		}
		_, err := srv.Write(b[:])
		done <- err
	}()
	cl := tls.Client(c, ccfg)
	if _, err := cl.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := cl.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestParseClientHelloGoClient checks hellos from crypto/tls: SNI, ALPN, and
// resumption, where the expected ticket comes from the client's own
// session cache.
func TestParseClientHelloGoClient(t *testing.T) {
	t.Run("SNI and ALPN", func(t *testing.T) {
		ch, err := ParseClientHello(captureHello(t, &tls.Config{ServerName: "Shop.Example.test", NextProtos: []string{"h2", "http/1.1"}}))
		if err != nil {
			t.Fatal(err)
		}
		if ch.SNI != "Shop.Example.test" || !reflect.DeepEqual(ch.ALPN, []string{"h2", "http/1.1"}) || !ch.OffersTLS13() {
			t.Errorf("got SNI %q ALPN %q tls13 %v", ch.SNI, ch.ALPN, ch.OffersTLS13())
		}
	})
	t.Run("an IP address sends no SNI", func(t *testing.T) {
		ch, err := ParseClientHello(captureHello(t, &tls.Config{ServerName: "198.18.0.100", InsecureSkipVerify: true}))
		if err != nil || ch.SNI != "" || ch.ALPN != nil {
			t.Errorf("got SNI %q ALPN %q, %v; want none", ch.SNI, ch.ALPN, err)
		}
	})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run("resumption "+tls.VersionName(v), func(t *testing.T) {
			cert := testCert(t, "lab.example.test")
			cache := tls.NewLRUClientSessionCache(4)
			ccfg := &tls.Config{ServerName: "lab.example.test", InsecureSkipVerify: true, ClientSessionCache: cache, MaxVersion: v}
			handshake(t, ccfg, &tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: v})
			st, ok := cache.Get("lab.example.test")
			if !ok {
				t.Fatal("no session cached after the first handshake")
			}
			ticket, _, err := st.ResumptionState()
			if err != nil || len(ticket) == 0 {
				t.Fatalf("ResumptionState: %d bytes, %v", len(ticket), err)
			}
			ch, err := ParseClientHello(captureHello(t, ccfg))
			if err != nil {
				t.Fatal(err)
			}
			if v == tls.VersionTLS12 {
				if !ch.HasTicket || !bytes.Equal(ch.Ticket, ticket) {
					t.Errorf("session_ticket %v %x, want the cached ticket %x", ch.HasTicket, ch.Ticket, ticket)
				}
			} else if len(ch.PSKIdentities) != 1 || !bytes.Equal(ch.PSKIdentities[0], ticket) {
				t.Errorf("PSK identities %x, want the cached ticket %x", ch.PSKIdentities, ticket)
			}
		})
	}
}

// fragment re-splits the handshake bytes of hello into records of at most
// n bytes each, as a client may.
func fragment(t *testing.T, hello []byte, n int) []byte {
	t.Helper()
	var hs []byte
	for p := 0; p < len(hello); {
		l := int(binary.BigEndian.Uint16(hello[p+3:]))
		hs = append(hs, hello[p+5:p+5+l]...)
		p += 5 + l
	}
	var out []byte
	for len(hs) > 0 {
		k := min(n, len(hs))
		out = append(out, 22, 3, 1, byte(k>>8), byte(k))
		out = append(out, hs[:k]...)
		hs = hs[k:]
	}
	return out
}

func TestParseClientHelloFragmented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "tls", "openssl-s_client.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseClientHello(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 7, 100, 300} {
		f := fragment(t, b, n)
		got, err := ParseClientHello(append(f, 23, 3, 3, 0, 1, 0)) // early data after it is left alone
		if err != nil {
			t.Fatalf("records of %d: %v", n, err)
		}
		want.Len = len(f)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("records of %d: got %+v\nwant %+v", n, got, want)
		}
	}
}

// ext is one extension for buildHello.
type ext struct {
	typ  uint16
	data []byte
}

func u16(v int) []byte { return []byte{byte(v >> 8), byte(v)} }

func vec16(b ...[]byte) []byte {
	body := bytes.Join(b, nil)
	return append(u16(len(body)), body...)
}

// buildHello builds a ClientHello record from parts, for the cases no
// client would send.
func buildHello(sessionID []byte, exts ...ext) []byte {
	body := append([]byte{3, 3}, make([]byte, 32)...)
	body = append(body, byte(len(sessionID)))
	body = append(body, sessionID...)
	body = append(body, vec16([]byte{0x13, 0x01})...)
	body = append(body, 1, 0)
	var eb []byte
	for _, e := range exts {
		eb = append(eb, u16(int(e.typ))...)
		eb = append(eb, vec16(e.data)...)
	}
	body = append(body, vec16(eb)...)
	hs := append([]byte{1, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{22, 3, 1, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

func sni(name string) ext {
	return ext{extServerName, vec16(append([]byte{0}, vec16([]byte(name))...))}
}

// helloRefusals are hellos that are not (yet) complete; they also seed
// testdata/fuzz/FuzzClientHello.
var helloRefusals = func() []refusal {
	trailing := buildHello(nil)
	trailing = append(trailing, 2, 0, 0, 0) // a ServerHello header inside the same record
	binary.BigEndian.PutUint16(trailing[3:], uint16(len(trailing)-5))
	return []refusal{
		{"HTTP on the TLS port", []byte("GET / HTTP/1.1\r\n"), Bad, ReasonRecord},
		{"SSL 2.0 hello", []byte{0x80, 0x2e, 0x01, 0x00, 0x02}, Bad, ReasonSSLv2},
		{"application data first", []byte{23, 3, 3, 0, 5}, Bad, ReasonRecord},
		{"record version 2.0", []byte{22, 2, 0}, Bad, ReasonRecord},
		{"record version 3.9", []byte{22, 3, 9}, Bad, ReasonRecord},
		{"empty record", []byte{22, 3, 1, 0, 0}, Bad, ReasonRecord},
		{"record over 2^14", []byte{22, 3, 1, 0x40, 0x01}, Bad, ReasonRecord},
		{"server hello", []byte{22, 3, 3, 0, 4, 2, 0, 0, 0}, Bad, ReasonHandshake},
		{"hello shorter than its fixed fields", []byte{22, 3, 1, 0, 4, 1, 0, 0, 10}, Bad, ReasonClientHello},
		{"trailing handshake bytes", trailing, Bad, ReasonHandshake},
		{"session ID of 33 bytes", buildHello(make([]byte, 33)), Bad, ReasonClientHello},
		{"duplicate extension", buildHello(nil, sni("a"), sni("b")), Bad, ReasonExtension},
		{"SNI with a NUL", buildHello(nil, sni("a\x00b")), Bad, ReasonSNI},
		{"SNI with a slash", buildHello(nil, sni("a/b")), Bad, ReasonSNI},
		{"empty SNI", buildHello(nil, sni("")), Bad, ReasonSNI},
		{"SNI list length off", buildHello(nil, ext{extServerName, []byte{0, 9, 0, 0, 1, 'a'}}), Bad, ReasonSNI},
		{"empty ALPN name", buildHello(nil, ext{extALPN, vec16([]byte{2, 'h', '2', 0})}), Bad, ReasonALPN},
		{"empty ALPN list", buildHello(nil, ext{extALPN, vec16(nil)}), Bad, ReasonALPN},
		{"odd supported_versions", buildHello(nil, ext{extSupportedVersions, []byte{3, 3, 4, 3}}), Bad, ReasonExtension},
		{"pre_shared_key not last", buildHello(nil, psk, sni("a")), Bad, ReasonExtension},
		{"nothing yet", nil, NeedMore, ReasonNeedMore},
		{"record header only", []byte{22, 3, 1, 2, 0}, NeedMore, ReasonNeedMore},
		{"hello longer than MaxHead, refused on its header", []byte{22, 3, 1, 0x40, 0x00, 1, 0, 0x40, 0}, TooLarge, ReasonTooLarge},
	}
}()

var psk = ext{extPreSharedKey, append(vec16(append(vec16([]byte("id")), 0, 0, 0, 0)), vec16(make([]byte, 33))...)}

func TestParseClientHelloRefuses(t *testing.T) {
	ok := buildHello(nil, sni("a.example"))
	if ch, err := ParseClientHello(ok); err != nil || ch.SNI != "a.example" {
		t.Fatalf("the builder's own hello: %+v, %v", ch, err)
	}
	for _, tc := range helloRefusals {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseClientHello(tc.in)
			if VerdictOf(err) != tc.verdict || ReasonOf(err) != tc.reason {
				t.Fatalf("got %v (reason %q), want %v (reason %q)", err, ReasonOf(err), tc.verdict, tc.reason)
			}
		})
	}
	if ch, err := ParseClientHello(buildHello(nil, psk)); err != nil || len(ch.PSKIdentities) != 1 || string(ch.PSKIdentities[0]) != "id" {
		t.Errorf("pre_shared_key last: %x, %v", ch.PSKIdentities, err)
	}
}

// TestParseClientHelloSizeLimit: records carrying a hello may total
// MaxHead bytes; one byte more is too large.
func TestParseClientHelloSizeLimit(t *testing.T) {
	pad := func(total int) []byte {
		// buildHello with a padding extension (21) sized so that the
		// records total exactly total bytes, split into two records.
		base := len(buildHello(nil, ext{21, nil}))
		hello := buildHello(nil, ext{21, make([]byte, total-5-base)})
		return fragment(t, hello, 9000)
	}
	if ch, err := ParseClientHello(pad(MaxHead)); err != nil || ch.Len != MaxHead {
		t.Fatalf("records of exactly MaxHead bytes: Len %d, %v", ch.Len, err)
	}
	if _, err := ParseClientHello(pad(MaxHead + 1)); VerdictOf(err) != TooLarge {
		t.Fatalf("MaxHead+1: %v, want too_large", err)
	}
}
