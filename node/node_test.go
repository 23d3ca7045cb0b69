package node

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestLooksLikePCI(t *testing.T) {
	for dev, want := range map[string]bool{"0000:03:00.0": true, "03:00.0": true, "pci:0000:03:00.1,x=1": true,
		"net_af_packet0,iface=eth0": false, "net_tap0": false} {
		if looksLikePCI(dev) != want {
			t.Errorf("%s: %v", dev, !want)
		}
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
