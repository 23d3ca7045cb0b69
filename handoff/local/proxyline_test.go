package local

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func TestProxyLine(t *testing.T) {
	for _, c := range []struct{ client, vip, line string }{
		{"198.18.0.9:40000", "198.18.0.1:80", "PROXY TCP4 198.18.0.9 198.18.0.1 40000 80\r\n"},
		{"[::ffff:198.18.0.9]:1", "198.18.0.1:443", "PROXY TCP4 198.18.0.9 198.18.0.1 1 443\r\n"},
		{"[2001:db8::1]:65535", "[2001:db8::2]:0", "PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n"},
		{"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
			"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"}, // the longest: 104 bytes
	} {
		b, err := AppendProxyLine(nil, netip.MustParseAddrPort(c.client), netip.MustParseAddrPort(c.vip))
		if err != nil || string(b) != c.line {
			t.Fatalf("AppendProxyLine(%s, %s) = %q, %v; want %q", c.client, c.vip, b, err, c.line)
		}
		cl, vip, err := ParseProxyLine(b)
		if err != nil || cl != unmap(c.client) || vip != unmap(c.vip) {
			t.Fatalf("ParseProxyLine(%q) = %v %v %v", b, cl, vip, err)
		}
	}
	if _, err := AppendProxyLine(nil, netip.MustParseAddrPort("198.18.0.9:1"), netip.MustParseAddrPort("[2001:db8::2]:80")); err == nil {
		t.Fatal("mixed families accepted")
	}
	for _, unknown := range []string{"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"} {
		if c, v, err := ParseProxyLine([]byte(unknown)); err != nil || c.IsValid() || v.IsValid() {
			t.Errorf("ParseProxyLine(%q) = %v %v %v, want two invalid addresses", unknown, c, v, err)
		}
	}
	for _, bad := range []string{"PROXY UNKNOWNX\r\n",
		"", "PROXY TCP4 198.18.0.9 198.18.0.1 40000 80\n", "PROXY TCP4 198.18.0.9 198.18.0.1 40000 80",
		"proxy TCP4 198.18.0.9 198.18.0.1 40000 80\r\n", "PROXY TCP4  198.18.0.9 198.18.0.1 40000 80\r\n",
		"PROXY UDP4 198.18.0.9 198.18.0.1 40000 80\r\n",
		"PROXY TCP4 2001:db8::1 198.18.0.1 40000 80\r\n", "PROXY TCP6 198.18.0.9 2001:db8::1 40000 80\r\n",
		"PROXY TCP6 ::ffff:198.18.0.9 2001:db8::1 40000 80\r\n", "PROXY TCP6 fe80::1%eth0 2001:db8::1 40000 80\r\n",
		"PROXY TCP4 198.18.0.9 198.18.0.1 65536 80\r\n", "PROXY TCP4 198.18.0.9 198.18.0.1 040000 80\r\n",
		"PROXY TCP4 198.18.0.9 198.18.0.1 +4000 80\r\n", "PROXY TCP4 198.18.0.9 198.18.0.1 -1 80\r\n",
		"PROXY TCP4 198.18.0.09 198.18.0.1 40000 80\r\n", "PROXY TCP4 198.18.0.9 198.18.0.1 40000 80 \r\n",
		"PROXY TCP4 198.18.0.9 198.18.0.1 40000 80" + strings.Repeat(" ", 70) + "\r\n",
	} {
		if _, _, err := ParseProxyLine([]byte(bad)); err == nil {
			t.Errorf("ParseProxyLine(%q) accepted", bad)
		}
	}
}

// A line ParseProxyLine accepts is canonical: AppendProxyLine writes it back
// byte for byte, and never beyond MaxProxyLine.
func FuzzParseProxyLine(f *testing.F) {
	f.Add([]byte("PROXY TCP4 198.18.0.9 198.18.0.1 40000 80\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		client, vip, err := ParseProxyLine(b)
		if err != nil || !client.IsValid() { // refused, or UNKNOWN
			return
		}
		again, err := AppendProxyLine(nil, client, vip)
		if err != nil {
			t.Fatalf("%q parsed to %v %v, which do not encode: %v", b, client, vip, err)
		}
		if !bytes.Equal(again, b) || len(b) > MaxProxyLine {
			t.Fatalf("%q re-encodes as %q", b, again)
		}
	})
}

func unmap(s string) netip.AddrPort {
	a := netip.MustParseAddrPort(s)
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
