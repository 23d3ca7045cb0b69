package local

import (
	"net/http"
	"reflect"
	"testing"
)

func TestStripSessionPrefix(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"shoal_session=n2~abc"}, []string{"shoal_session=abc"}},
		{[]string{"a=1; shoal_session=n-2_x~a~b; c=n1~d"}, []string{"a=1; shoal_session=a~b; c=n1~d"}},
		{[]string{`shoal_session="n1~abc"`}, []string{`shoal_session="abc"`}},
		{[]string{"shoal_session=abc"}, []string{"shoal_session=abc"}},              // no prefix: the app's own value
		{[]string{"shoal_session=n.1~abc"}, []string{"shoal_session=n.1~abc"}},      // not a node ID
		{[]string{"xshoal_session=n1~abc"}, []string{"xshoal_session=n1~abc"}},      // another cookie
		{[]string{"a=1", "shoal_session=n1~z"}, []string{"a=1", "shoal_session=z"}}, // two Cookie lines
	} {
		h := http.Header{"Cookie": append([]string(nil), c.in...)}
		stripSessionPrefix(h, "shoal_session")
		if !reflect.DeepEqual(h["Cookie"], c.want) {
			t.Errorf("%q: got %q, want %q", c.in, h["Cookie"], c.want)
		}
	}
}

func TestPrefixSetCookie(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"shoal_session=abc; Path=/; HttpOnly", "shoal_session=n2~abc; Path=/; HttpOnly"},
		{"shoal_session=abc", "shoal_session=n2~abc"},
		{`shoal_session="abc"; Secure`, `shoal_session="n2~abc"; Secure`},
		{"shoal_session=; Max-Age=0", "shoal_session=; Max-Age=0"}, // a deletion stays one
		{"other=abc; Path=/", "other=abc; Path=/"},
	} {
		h := http.Header{"Set-Cookie": {c.in}}
		prefixSetCookie(h, "shoal_session", "n2")
		if got := h.Get("Set-Cookie"); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}
