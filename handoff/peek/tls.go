package peek

import (
	"encoding/binary"
	"slices"
)

// TLS constants from RFC 8446 and the extension registry.
const (
	recordHandshake     = 22
	handshakeClientHelo = 1
	maxRecordPlaintext  = 1 << 14

	extServerName        = 0
	extALPN              = 16
	extSessionTicket     = 35
	extPreSharedKey      = 41
	extSupportedVersions = 43
)

// ClientHello is what routing needs from a TLS ClientHello.
type ClientHello struct {
	// Version is the legacy_version field (0x0303 for TLS 1.2 and 1.3).
	Version uint16
	// SNI is the host_name of the server_name extension, "" when absent.
	// Hosts compare case-insensitively.
	SNI string
	// SessionID is the legacy session ID, 0..32 bytes. A TLS 1.2 client
	// resuming a session sends the ID the server issued.
	SessionID []byte
	// HasTicket is true when the session_ticket extension is present;
	// Ticket is its content: empty asks for a ticket, non-empty resumes.
	HasTicket bool
	Ticket    []byte
	// PSKIdentities are the identities of the pre_shared_key extension: a
	// TLS 1.3 client resuming a session sends its ticket here.
	PSKIdentities [][]byte
	// SupportedVersions lists the supported_versions extension (TLS 1.3
	// clients send it; 0x0304 is TLS 1.3).
	SupportedVersions []uint16
	// ALPN lists the offered application protocols in order.
	ALPN []string
	// Len is the number of bytes of the records that carry the
	// ClientHello; what follows (early data) is not looked at.
	Len int
}

// OffersTLS13 reports whether the client offers TLS 1.3.
func (c *ClientHello) OffersTLS13() bool { return slices.Contains(c.SupportedVersions, 0x0304) }

// ParseClientHello parses the TLS ClientHello at the start of b, reassembling
// it from consecutive handshake records. It returns the hello and nil when b
// holds all of it, or an *Error (see the package contract).
func ParseClientHello(b []byte) (ClientHello, error) {
	var hs []byte
	need, pos := -1, 0
	for need < 0 || len(hs) < need {
		if len(b)-pos < 5 {
			if e := checkRecordPrefix(b[pos:], pos == 0); e != nil {
				return ClientHello{}, e
			}
			if len(b) >= MaxHead {
				return ClientHello{}, tooLarge("ClientHello records", len(b))
			}
			return ClientHello{}, errNeedMore
		}
		if e := checkRecordPrefix(b[pos:pos+5], pos == 0); e != nil {
			return ClientHello{}, e
		}
		n := int(binary.BigEndian.Uint16(b[pos+3:]))
		if n == 0 || n > maxRecordPlaintext {
			return ClientHello{}, bad(ReasonRecord, "record at %d: length %d outside 1..%d", pos, n, maxRecordPlaintext)
		}
		if pos+5+n > MaxHead {
			return ClientHello{}, tooLarge("ClientHello records", pos+5+n)
		}
		frag := b[pos+5 : min(len(b), pos+5+n)]
		if e := checkHandshakePrefix(append(hs[:len(hs):len(hs)], frag...)); e != nil {
			return ClientHello{}, e
		}
		if len(frag) < n {
			return ClientHello{}, errNeedMore
		}
		hs = append(hs, frag...)
		pos += 5 + n
		if need < 0 && len(hs) >= 4 {
			need = 4 + int(uint32(hs[1])<<16|uint32(hs[2])<<8|uint32(hs[3]))
		}
	}
	if len(hs) > need {
		return ClientHello{}, bad(ReasonHandshake, "%d bytes follow the ClientHello in its record", len(hs)-need)
	}
	ch, e := parseHelloBody(hs[4:need])
	if e != nil {
		return ClientHello{}, e
	}
	ch.Len = pos
	return ch, nil
}

// checkRecordPrefix checks the first bytes of a record header (up to 5).
func checkRecordPrefix(p []byte, first bool) *Error {
	if len(p) >= 1 && p[0] != recordHandshake {
		if first && p[0]&0x80 != 0 {
			// SSL 2.0 records start with a length whose high bit is set;
			// no TLS record type has it, so one byte decides.
			return bad(ReasonSSLv2, "an SSL 2.0 style record (first byte 0x%02x)", p[0])
		}
		return bad(ReasonRecord, "record type %d, want 22 (handshake)", p[0])
	}
	if len(p) >= 2 && p[1] != 3 {
		return bad(ReasonRecord, "record version major %d, want 3", p[1])
	}
	if len(p) >= 3 && p[2] > 4 {
		return bad(ReasonRecord, "record version 3.%d, want 3.0..3.4", p[2])
	}
	return nil
}

// checkHandshakePrefix checks the handshake header as soon as its bytes
// arrive, so that a wrong message or a hello too long for MaxHead is refused
// before the rest is waited for.
func checkHandshakePrefix(hs []byte) *Error {
	if len(hs) >= 1 && hs[0] != handshakeClientHelo {
		return bad(ReasonHandshake, "handshake type %d, want 1 (client_hello)", hs[0])
	}
	if len(hs) >= 4 {
		n := int(uint32(hs[1])<<16 | uint32(hs[2])<<8 | uint32(hs[3]))
		if n < 38 {
			return bad(ReasonClientHello, "ClientHello length %d, shorter than its fixed fields", n)
		}
		// Each record adds a 5-byte header; a hello that cannot fit in
		// MaxHead even in one record is too large now.
		if 5+4+n > MaxHead {
			return tooLarge("ClientHello", 5+4+n)
		}
	}
	return nil
}

// parseHelloBody parses the ClientHello after its 4-byte handshake header.
func parseHelloBody(body []byte) (ClientHello, *Error) {
	var ch ClientHello
	r := reader{b: body}
	ch.Version = r.u16()
	r.skip(32) // random
	sid := r.vec8()
	if r.bad {
		return ch, bad(ReasonClientHello, "truncated before the session ID")
	}
	if len(sid) > 32 {
		return ch, bad(ReasonClientHello, "session ID of %d bytes, at most 32", len(sid))
	}
	if ch.Version>>8 != 3 {
		return ch, bad(ReasonClientHello, "legacy_version 0x%04x, want 0x03xx", ch.Version)
	}
	ch.SessionID = slices.Clone(sid)
	suites := r.vec16()
	if r.bad || len(suites) < 2 || len(suites)%2 != 0 {
		return ch, bad(ReasonClientHello, "cipher_suites: %d bytes, want a non-empty even number", len(suites))
	}
	if comp := r.vec8(); r.bad || len(comp) == 0 {
		return ch, bad(ReasonClientHello, "compression_methods missing or empty")
	}
	if len(r.b) == 0 {
		return ch, nil // a hello without extensions (SSL 3.0 style) is valid
	}
	exts := r.vec16()
	if r.bad || len(r.b) != 0 {
		return ch, bad(ReasonClientHello, "extensions length does not match the %d bytes left", len(body))
	}
	seen := map[uint16]bool{}
	x := reader{b: exts}
	for len(x.b) > 0 {
		typ := x.u16()
		data := x.vec16()
		if x.bad {
			return ch, bad(ReasonExtension, "extension block truncated")
		}
		if seen[typ] {
			return ch, bad(ReasonExtension, "extension %d appears twice", typ)
		}
		seen[typ] = true
		var e *Error
		switch typ {
		case extServerName:
			ch.SNI, e = parseSNI(data)
		case extALPN:
			ch.ALPN, e = parseALPN(data)
		case extSessionTicket:
			ch.HasTicket, ch.Ticket = true, slices.Clone(data)
		case extSupportedVersions:
			ch.SupportedVersions, e = parseVersions(data)
		case extPreSharedKey:
			if len(x.b) != 0 {
				return ch, bad(ReasonExtension, "pre_shared_key is not the last extension")
			}
			ch.PSKIdentities, e = parsePSK(data)
		}
		if e != nil {
			return ch, e
		}
	}
	return ch, nil
}

// parseSNI reads a ServerNameList (RFC 6066 §3) and returns its host_name.
func parseSNI(data []byte) (string, *Error) {
	r := reader{b: data}
	list := r.vec16()
	if r.bad || len(r.b) != 0 || len(list) == 0 {
		return "", bad(ReasonSNI, "server_name list length does not match its extension")
	}
	l := reader{b: list}
	host := ""
	for len(l.b) > 0 {
		typ := l.u8()
		name := l.vec16()
		if l.bad {
			return "", bad(ReasonSNI, "server_name entry truncated")
		}
		if typ != 0 {
			continue // unknown name types are skipped (none is defined)
		}
		if host != "" {
			return "", bad(ReasonSNI, "two host_name entries")
		}
		if len(name) == 0 || len(name) > 255 {
			return "", bad(ReasonSNI, "host_name of %d bytes, want 1..255", len(name))
		}
		for _, c := range name {
			if !isAlnum(c) && c != '-' && c != '.' && c != '_' {
				return "", bad(ReasonSNI, "host_name %q: byte 0x%02x is not allowed", clip(name), c)
			}
		}
		host = string(name)
	}
	return host, nil
}

// parseALPN reads a ProtocolNameList (RFC 7301 §3.1).
func parseALPN(data []byte) ([]string, *Error) {
	r := reader{b: data}
	list := r.vec16()
	if r.bad || len(r.b) != 0 || len(list) == 0 {
		return nil, bad(ReasonALPN, "protocol list length does not match its extension")
	}
	l := reader{b: list}
	var protos []string
	for len(l.b) > 0 {
		p := l.vec8()
		if l.bad || len(p) == 0 {
			return nil, bad(ReasonALPN, "protocol name empty or truncated")
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}

func parseVersions(data []byte) ([]uint16, *Error) {
	r := reader{b: data}
	list := r.vec8()
	if r.bad || len(r.b) != 0 || len(list) < 2 || len(list)%2 != 0 {
		return nil, bad(ReasonExtension, "supported_versions: list of %d bytes", len(list))
	}
	var vs []uint16
	for i := 0; i < len(list); i += 2 {
		vs = append(vs, binary.BigEndian.Uint16(list[i:]))
	}
	return vs, nil
}

// parsePSK reads OfferedPsks (RFC 8446 §4.2.11): identities, then binders.
func parsePSK(data []byte) ([][]byte, *Error) {
	r := reader{b: data}
	ids := r.vec16()
	binders := r.vec16()
	if r.bad || len(r.b) != 0 || len(ids) == 0 || len(binders) == 0 {
		return nil, bad(ReasonExtension, "pre_shared_key: identities or binders malformed")
	}
	var out [][]byte
	l := reader{b: ids}
	for len(l.b) > 0 {
		id := l.vec16()
		l.skip(4) // obfuscated_ticket_age
		if l.bad || len(id) == 0 {
			return nil, bad(ReasonExtension, "pre_shared_key: identity empty or truncated")
		}
		out = append(out, slices.Clone(id))
	}
	return out, nil
}

// reader reads big-endian fields; once a read runs past the end, bad is
// set and every later read returns zero values.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n > len(r.b) {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) skip(n int) { r.take(n) }

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) vec8() []byte  { return r.take(int(r.u8())) }
func (r *reader) vec16() []byte { return r.take(int(r.u16())) }
