package peek

import (
	"errors"
	"fmt"
)

// MaxHead is the largest head accepted: an HTTP request head (request line,
// header fields and the empty line) or the TLS records carrying a
// ClientHello. A longer one is TooLarge (HTTP 431).
const MaxHead = 16 << 10

// Verdict is what a parser or a Peeker concluded about the bytes so far.
type Verdict uint8

const (
	Complete Verdict = iota // a whole head was parsed
	NeedMore                // valid so far: wait for more bytes
	Bad                     // malformed: 400 for HTTP, close for TLS
	TooLarge                // longer than MaxHead: 431 for HTTP
	Timeout                 // Peeker only: not complete in time: 408 for HTTP
	Closed                  // Peeker only: the peer closed or reset first
)

var verdictNames = [...]string{"complete", "need_more", "bad", "too_large", "timeout", "closed"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", v)
}

// HTTPStatus is the status a front server answers an HTTP client with
// before closing the connection, or 0 when there is nothing to answer.
func (v Verdict) HTTPStatus() int {
	switch v {
	case Bad:
		return 400
	case TooLarge:
		return 431
	case Timeout:
		return 408
	}
	return 0
}

// Error is the error the parsers and the Peeker return for anything but a
// complete head.
type Error struct {
	Verdict Verdict
	// Reason is a snake_case label from a small fixed set (the Reason*
	// constants), meant for counters.
	Reason string
	// Detail names the field and the problem, for logs.
	Detail string
}

func (e *Error) Error() string { return "peek: " + e.Verdict.String() + ": " + e.Detail }

// Reasons, for counters. HTTP:
const (
	ReasonNeedMore         = "need_more"
	ReasonTooLarge         = "too_large"
	ReasonRequestLine      = "request_line"      // not METHOD SP TARGET SP VERSION
	ReasonMethod           = "method"            // method is not a token
	ReasonTarget           = "target"            // request-target malformed
	ReasonVersion          = "version"           // not HTTP/1.x
	ReasonHeaderLine       = "header_line"       // no colon, bad name, space before colon, obs-fold
	ReasonHeaderValue      = "header_value"      // control byte in a field value
	ReasonHost             = "host"              // missing, repeated or malformed Host
	ReasonContentLength    = "content_length"    // not a number, or conflicting values
	ReasonTransferEncoding = "transfer_encoding" // with Content-Length, in HTTP/1.0, or not ending in chunked
)

// Reasons, for counters. TLS:
const (
	ReasonRecord      = "record"       // not a handshake record, bad version or length
	ReasonSSLv2       = "sslv2"        // an SSL 2.0 style ClientHello
	ReasonHandshake   = "handshake"    // not a ClientHello, or trailing handshake bytes
	ReasonClientHello = "client_hello" // a ClientHello field is truncated or out of range
	ReasonExtension   = "extension"    // malformed or duplicate extension
	ReasonSNI         = "sni"          // server_name malformed
	ReasonALPN        = "alpn"         // ALPN list malformed
)

// Reasons, for counters. Peeker:
const (
	ReasonFirstBytesTimeout = "first_bytes_timeout" // nothing arrived within FirstBytes
	ReasonHeadTimeout       = "head_timeout"        // the head did not complete within Head
	ReasonPeerClosed        = "peer_closed"         // FIN before the head completed
	ReasonPeerReset         = "peer_reset"          // RST or another socket error
)

// errNeedMore is returned, shared, for every incomplete but valid head.
var errNeedMore = &Error{Verdict: NeedMore, Reason: ReasonNeedMore, Detail: "head incomplete"}

func bad(reason, format string, a ...any) *Error {
	return &Error{Verdict: Bad, Reason: reason, Detail: fmt.Sprintf(format, a...)}
}

func tooLarge(what string, n int) *Error {
	return &Error{Verdict: TooLarge, Reason: ReasonTooLarge,
		Detail: fmt.Sprintf("%s longer than %d bytes (%d seen)", what, MaxHead, n)}
}

// VerdictOf maps a parser's or Peeker's error to its Verdict: nil is
// Complete, an *Error its own Verdict, anything else Bad.
func VerdictOf(err error) Verdict {
	if err == nil {
		return Complete
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Verdict
	}
	return Bad
}

// ReasonOf returns the counter label of err ("" for nil).
func ReasonOf(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return "error"
}
