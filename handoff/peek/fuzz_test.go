package peek

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var reasons = []string{ReasonNeedMore, ReasonTooLarge, ReasonRequestLine, ReasonMethod, ReasonTarget, ReasonVersion,
	ReasonHeaderLine, ReasonHeaderValue, ReasonHost, ReasonContentLength, ReasonTransferEncoding,
	ReasonRecord, ReasonSSLv2, ReasonHandshake, ReasonClientHello, ReasonExtension, ReasonSNI, ReasonALPN}

// addFiles seeds f with every file under testdata/dir; the committed corpus
// in testdata/fuzz adds the table cases.
func addFiles(f *testing.F, dir string) {
	names, _ := filepath.Glob(filepath.Join("testdata", dir, "*"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// checkFinal holds the property the Peeker relies on: a verdict other than
// NeedMore, reached on a prefix, is the verdict on everything after it too.
func checkFinal[T any](t *testing.T, b []byte, parse func([]byte) (T, error)) {
	full, errFull := parse(b)
	for _, k := range []int{len(b) / 3, len(b) / 2, len(b) - 1} {
		if k < 0 {
			continue
		}
		part, err := parse(b[:k])
		if VerdictOf(err) == NeedMore {
			continue
		}
		if VerdictOf(err) != VerdictOf(errFull) || ReasonOf(err) != ReasonOf(errFull) {
			t.Fatalf("prefix of %d bytes decided %v (%s), all %d bytes %v (%s)", k, err, ReasonOf(err), len(b), errFull, ReasonOf(errFull))
		}
		if err == nil && !reflect.DeepEqual(part, full) {
			t.Fatalf("prefix of %d bytes parsed %+v, all of it %+v", k, part, full)
		}
	}
}

func FuzzHTTPHead(f *testing.F) {
	addFiles(f, "http")
	f.Add(chromeGET)
	f.Add(firefoxPOST)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHTTP(b)
		v := VerdictOf(err)
		if err != nil && !slices.Contains(reasons, ReasonOf(err)) {
			t.Fatalf("reason %q is not in the documented set", ReasonOf(err))
		}
		switch v {
		case Complete:
			if h.Len <= 0 || h.Len > min(len(b), MaxHead) {
				t.Fatalf("Len %d of %d bytes", h.Len, len(b))
			}
			again, err := ParseHTTP(b[:h.Len])
			if err != nil || !reflect.DeepEqual(again, h) {
				t.Fatalf("the head alone parses differently: %+v, %v", again, err)
			}
			// Differential: net/http must read the same request from the
			// head, so that a server behind us sees what we routed.
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:h.Len])))
			if err != nil {
				t.Fatalf("we accepted a head net/http refuses: %v\n%q", err, b[:h.Len])
			}
			if req.Method != h.Method || req.RequestURI != h.Target || req.ProtoMinor != h.ProtoMinor && h.ProtoMinor != 1 {
				t.Fatalf("net/http read %s %s 1.%d, we %s %s 1.%d", req.Method, req.RequestURI, req.ProtoMinor, h.Method, h.Target, h.ProtoMinor)
			}
			if h.ContentLength >= 0 && req.ContentLength != h.ContentLength {
				t.Fatalf("Content-Length: net/http %d, we %d", req.ContentLength, h.ContentLength)
			}
			if h.Chunked != slices.Contains(req.TransferEncoding, "chunked") {
				t.Fatalf("chunked: net/http %v, we %v", req.TransferEncoding, h.Chunked)
			}
		case NeedMore:
			if len(b) >= MaxHead {
				t.Fatalf("need_more after %d bytes, MaxHead is %d", len(b), MaxHead)
			}
		case TooLarge:
			if len(b) < MaxHead {
				t.Fatalf("too_large after only %d bytes", len(b))
			}
		case Bad:
		default:
			t.Fatalf("verdict %v from a parser", v)
		}
		checkFinal(t, b, ParseHTTP)
	})
}

func FuzzClientHello(f *testing.F) {
	addFiles(f, "tls")
	f.Add(buildHello([]byte{1, 2, 3}, sni("a.example"), ext{extALPN, vec16([]byte{2, 'h', '2'})}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := ParseClientHello(b)
		if err != nil && !slices.Contains(reasons, ReasonOf(err)) {
			t.Fatalf("reason %q is not in the documented set", ReasonOf(err))
		}
		switch v := VerdictOf(err); v {
		case Complete:
			if ch.Len <= 0 || ch.Len > min(len(b), MaxHead) || len(ch.SessionID) > 32 {
				t.Fatalf("Len %d of %d bytes, session ID %d bytes", ch.Len, len(b), len(ch.SessionID))
			}
			again, err := ParseClientHello(b[:ch.Len])
			if err != nil || !reflect.DeepEqual(again, ch) {
				t.Fatalf("the records alone parse differently: %+v, %v", again, err)
			}
		case NeedMore, Bad, TooLarge:
		default:
			t.Fatalf("verdict %v from a parser", v)
		}
		checkFinal(t, b, ParseClientHello)
	})
}

var writeCorpus = flag.Bool("write-corpus", false, "rewrite the seed files in testdata/fuzz from the test tables")

// TestSeedCorpus keeps the committed seed corpus in step with the tables:
// every table case has its seed file (run with -write-corpus to refresh).
func TestSeedCorpus(t *testing.T) {
	nonWord := regexp.MustCompile(`[^a-z0-9]+`)
	for target, cases := range map[string][]refusal{"FuzzHTTPHead": httpRefusals, "FuzzClientHello": helloRefusals} {
		for _, c := range cases {
			name := filepath.Join("testdata", "fuzz", target, "seed-"+strings.Trim(nonWord.ReplaceAllString(strings.ToLower(c.name), "-"), "-"))
			want := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(c.in)))
			if *writeCorpus {
				if err := os.WriteFile(name, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if got, err := os.ReadFile(name); err != nil || string(got) != want {
				t.Errorf("%s is missing or stale (go test -run SeedCorpus -write-corpus): %v", name, err)
			}
		}
	}
}
