package local

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxProxyLine is the longest PROXY protocol v1 line, CRLF included (the
// protocol's own bound: "PROXY TCP6" with two full IPv6 addresses).
const MaxProxyLine = 107

// AppendProxyLine appends the PROXY protocol v1 line that tells the far end
// of a relay or a forwarded request who the client is: "PROXY TCP4 <client>
// <vip> <client port> <vip port>\r\n" (TCP6 for IPv6). IPv4-mapped IPv6
// addresses are written as IPv4. Client and vip must be of one family.
func AppendProxyLine(b []byte, client, vip netip.AddrPort) ([]byte, error) {
	c, v := client.Addr().Unmap(), vip.Addr().Unmap()
	if !c.IsValid() || !v.IsValid() || c.Is4() != v.Is4() || c.Zone() != "" || v.Zone() != "" {
		return b, fmt.Errorf("proxy line: client %v and vip %v are not two addresses of one family", client, vip)
	}
	proto := "TCP4"
	if !c.Is4() {
		proto = "TCP6"
	}
	return fmt.Appendf(b, "PROXY %s %s %s %d %d\r\n", proto, c, v, client.Port(), vip.Port()), nil
}

// errProxyLine is wrapped by every refusal of ParseProxyLine.
var errProxyLine = errors.New("bad PROXY v1 line")

// ParseProxyLine parses one PROXY protocol v1 line, CRLF included, as
// AppendProxyLine writes it. It is strict: one space between fields,
// TCP4 or TCP6 with addresses of that family in their canonical text form
// (RFC 5952 for IPv6, as shoal writes them), decimal ports without leading
// zeros, at most MaxProxyLine bytes. "PROXY UNKNOWN" (with anything
// after it, as the protocol allows) is accepted and returns two invalid
// AddrPorts: the sender did not know the client, and the receiver keeps the
// connection's own addresses (the front writes it for a client whose
// address family differs from the VIP's).
func ParseProxyLine(line []byte) (client, vip netip.AddrPort, err error) {
	bad := func(format string, a ...any) (netip.AddrPort, netip.AddrPort, error) {
		return netip.AddrPort{}, netip.AddrPort{}, fmt.Errorf("%w: %s", errProxyLine, fmt.Sprintf(format, a...))
	}
	if len(line) > MaxProxyLine {
		return bad("%d bytes, more than %d", len(line), MaxProxyLine)
	}
	s, ok := strings.CutSuffix(string(line), "\r\n")
	if !ok {
		return bad("no CRLF at the end")
	}
	if s == "PROXY UNKNOWN" || strings.HasPrefix(s, "PROXY UNKNOWN ") {
		return netip.AddrPort{}, netip.AddrPort{}, nil
	}
	f := strings.Split(s, " ")
	if len(f) != 6 || f[0] != "PROXY" {
		return bad("want \"PROXY TCP4|TCP6 <client> <vip> <client port> <vip port>\", got %q", s)
	}
	var v4 bool
	switch f[1] {
	case "TCP4":
		v4 = true
	case "TCP6":
	default:
		return bad("protocol %q is not TCP4 or TCP6", f[1])
	}
	addr := func(s, what string) (netip.Addr, error) {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Is4() != v4 || a.Zone() != "" || (!v4 && a.Is4In6()) || a.String() != s {
			return netip.Addr{}, fmt.Errorf("%w: %s address %q is not an %s address", errProxyLine, what, s, f[1])
		}
		return a, nil
	}
	port := func(s, what string) (uint16, error) {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil || s[0] == '+' || (len(s) > 1 && s[0] == '0') {
			return 0, fmt.Errorf("%w: %s port %q is not a port number", errProxyLine, what, s)
		}
		return uint16(n), nil
	}
	ca, err := addr(f[2], "client")
	if err != nil {
		return client, vip, err
	}
	va, err := addr(f[3], "vip")
	if err != nil {
		return client, vip, err
	}
	cp, err := port(f[4], "client")
	if err != nil {
		return client, vip, err
	}
	vp, err := port(f[5], "vip")
	if err != nil {
		return client, vip, err
	}
	return netip.AddrPortFrom(ca, cp), netip.AddrPortFrom(va, vp), nil
}
