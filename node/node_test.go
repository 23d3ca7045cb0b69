package node

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shoal-lb/shoal/api"
)

func TestLooksLikePCI(t *testing.T) {
	for dev, want := range map[string]bool{"0000:03:00.0": true, "03:00.0": true, "pci:0000:03:00.1,x=1": true,
		"net_af_packet0,iface=eth0": false, "net_tap0": false} {
		if looksLikePCI(dev) != want {
			t.Errorf("%s: %v", dev, !want)
		}
	}
}

// TestBearer: on the TCP listener reads are open (the status page, its
// events, /v1/* but the flow list, /metrics); every change, the flow list,
// the profiler and any other method need the right token.
func TestBearer(t *testing.T) {
	h := bearer("0123456789abcdef", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	const good, bad = "Bearer 0123456789abcdef", "Bearer 0123456789abcdeX"
	for _, c := range []struct {
		method, path, auth string
		want               int
	}{
		{"GET", "/", "", 204},
		{"GET", "/ui/app.js", "", 204},
		{"GET", api.PathEvents, "", 204},
		{"GET", api.PathStatus, "", 204},
		{"HEAD", api.PathStatus, "", 204},
		{"GET", api.PathMetrics, "", 204},
		{"GET", api.PathFlows, "", 401},
		{"GET", api.PathFlows, bad, 401},
		{"GET", api.PathFlows, good, 204},
		{"GET", "/debug/pprof/", "", 401},
		{"GET", "/debug/pprof/profile", bad, 401},
		{"GET", "/debug/pprof/profile", good, 204},
		{"POST", api.PathDrain, "", 401},
		{"POST", api.PathDrain, bad, 401},
		{"POST", api.PathDrain, "0123456789abcdef", 401},
		{"POST", api.PathDrain, good, 204},
		{"POST", api.PathWeight, "", 401},
		{"POST", api.PathServer, "", 401},
		{"PUT", api.PathStatus, "", 401},
		{"DELETE", "/", "", 401},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(c.method, c.path, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.path, c.auth, rec.Code, c.want)
		}
		if rec.Code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", c.method, c.path)
		}
	}
}
