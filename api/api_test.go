package api

import (
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/shoal-lb/shoal/dataplane/report"
)

var snake = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// TestWireIsSnakeCase walks every wire type: each exported field has a
// snake_case JSON name (embedded structs are flattened by encoding/json and
// walked in place), so no Go field name leaks into the API.
func TestWireIsSnakeCase(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(path string, ty reflect.Type)
	walk = func(path string, ty reflect.Type) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] || ty.PkgPath() == "time" {
			return
		}
		seen[ty] = true
		for i := 0; i < ty.NumField(); i++ {
			f := ty.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Anonymous && name == "" {
				walk(path, f.Type)
				continue
			}
			if name == "-" {
				continue
			}
			if !snake.MatchString(name) {
				t.Errorf("%s.%s: JSON name %q is not snake_case", path, f.Name, name)
			}
			walk(path+"."+name, f.Type)
		}
	}
	for _, v := range []any{Status{}, Stats{}, Ranges{}, []GroupStatus{}, Health{}, []Flow{}, Handoffs{}, Content{}, Publication{}} {
		ty := reflect.TypeOf(v)
		walk(ty.String(), ty)
	}
}

func TestFieldsInDeclarationOrder(t *testing.T) {
	fs := Fields(report.FlowCounts{SynRcvd: 1, Established: 2, Closing: 3, Withdrawn: 4})
	want := []Field{{"syn_rcvd", 1}, {"established", 2}, {"closing", 3}, {"withdrawn", 4}}
	if !reflect.DeepEqual(fs, want) {
		t.Fatalf("Fields = %v, want %v", fs, want)
	}
}

// TestClient talks to a server on a real unix socket.
func TestClient(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"node_id":"n1","owned_buckets":42}`))
	})
	mux.HandleFunc("POST "+PathDrain, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "drain needs gossip mode (gossip.key)", http.StatusConflict)
	})
	mux.HandleFunc("GET "+PathMetrics, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("x 1\n")) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	var s Status
	if err := Get(sock, PathStatus, &s); err != nil || s.NodeID != "n1" || s.OwnedBuckets != 42 {
		t.Fatalf("Get status: %+v %v", s, err)
	}
	var raw []byte
	if err := Get(sock, PathMetrics, &raw); err != nil || string(raw) != "x 1\n" {
		t.Fatalf("Get metrics: %q %v", raw, err)
	}
	err = Post(sock, PathDrain, map[string]bool{"on": true}, &struct{}{})
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "drain needs gossip mode") {
		t.Fatalf("Post drain error = %v, want the server's status and message", err)
	}
	if err := Get(filepath.Join(t.TempDir(), "none.sock"), PathStatus, &s); err == nil || !strings.Contains(err.Error(), "none.sock") {
		t.Fatalf("missing socket: %v", err)
	}
}
