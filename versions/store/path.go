package store

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"
)

// MaxPathLen bounds a content path in bytes.
const MaxPathLen = 1024

// ValidatePath checks that p can be published: an absolute, cleaned URL
// path of at most MaxPathLen bytes, valid UTF-8, without ".." elements or
// control characters. The error names the problem.
func ValidatePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("store: content path is empty")
	case len(p) > MaxPathLen:
		return fmt.Errorf("store: content path %.40q...: %d bytes, longer than %d", p, len(p), MaxPathLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("store: content path %q is not valid UTF-8", p)
	case p[0] != '/':
		return fmt.Errorf("store: content path %q is not absolute (must start with /)", p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("store: content path %q holds a control character", p)
		}
	}
	for _, el := range strings.Split(p[1:], "/") {
		if el == ".." {
			return fmt.Errorf("store: content path %q holds a \"..\" element", p)
		}
	}
	if c := path.Clean(p); c != p {
		return fmt.Errorf("store: content path %q is not clean (it would be %q)", p, c)
	}
	return nil
}
