package httpbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shoal-lb/shoal/lab"
)

// Lab hosts of the peers (lab.AddHost): HAProxy on h1, its origins on
// h2..h4, the plain nginx on h5.
const (
	hostHAProxy = 1
	hostPlain   = 5
)

var originHosts = []int{2, 3, 4}

// NginxConfig is an origin server: one worker, files from root, keep-alive
// without a request limit (the client decides when a connection ends), no
// access log.
func NginxConfig(listen, root, dir string) string {
	return fmt.Sprintf(`# Written by shoal bench http.
daemon off;
master_process on;
worker_processes 1;
user root;
pid %[3]s/nginx.pid;
error_log %[3]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	keepalive_timeout 60s;
	default_type application/octet-stream;
	client_body_temp_path %[3]s/tmp;
	server {
		listen %[1]s:80 backlog=4096;
		root %[2]s;
		location / { }
	}
}
`, listen, root, dir)
}

// HAProxyConfig is the central balancer: two threads, HTTP mode,
// round-robin over the origins, keep-alive on both sides with idle server
// connections reused, and kernel splicing (zero copy) where it pays, as a
// deployment tuned for large objects would run it.
func HAProxyConfig(listen string, origins []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by shoal bench http.
global
	nbthread 2
	maxconn 4000
defaults
	mode http
	timeout connect 5s
	timeout client 60s
	timeout server 60s
	option http-keep-alive
	http-reuse always
	option splice-auto
frontend web
	bind %s:80
	default_backend origins
backend origins
	balance roundrobin
`, listen)
	for i, o := range origins {
		fmt.Fprintf(&b, "\tserver o%d %s:80\n", i+1, o)
	}
	return b.String()
}

// peer is a process this package started in a lab namespace.
type peer struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func startPeer(name, where string, argv ...string) (*peer, error) {
	cmd := lab.Exec(context.Background(), where, argv...)
	logf, err := os.Create(filepath.Join(lab.StateDir, "bench-"+name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: starting %s: %w", name, err)
	}
	p := &peer{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	return p, nil
}

// stop ends the peer's process (nginx's master takes its worker along).
func (p *peer) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *peer) exited() error {
	select {
	case <-p.done:
		b, _ := os.ReadFile(filepath.Join(lab.StateDir, "bench-"+p.name+".log"))
		return fmt.Errorf("bench: %s exited: %v: %s", p.name, p.cmd.ProcessState, strings.TrimSpace(string(b)))
	default:
		return nil
	}
}

// startNginx writes an origin's config under the lab's state directory
// and runs it in host k's namespace.
func startNginx(k int) (*peer, error) {
	name := "nginx-" + lab.HostID(k)
	dir := filepath.Join(lab.StateDir, name)
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(NginxConfig(lab.HostIP(k), lab.ContentDir, dir)), 0o644); err != nil {
		return nil, err
	}
	return startPeer(name, lab.HostID(k), "nginx", "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
}

func startHAProxy(origins []string) (*peer, error) {
	conf := filepath.Join(lab.StateDir, "haproxy.cfg")
	if err := os.WriteFile(conf, []byte(HAProxyConfig(lab.HostIP(hostHAProxy), origins)), 0o644); err != nil {
		return nil, err
	}
	return startPeer("haproxy", lab.HostID(hostHAProxy), "haproxy", "-db", "-f", conf)
}
