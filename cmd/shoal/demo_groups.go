package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/lab"
)

// demoGroups is the reading-module part: the groups preset, where content
// lives on some nodes only, and every kind of request lands on a node that
// holds it, moved there with its TCP connection when it arrived elsewhere.
func demoGroups(ctx context.Context, n int) error {
	fmt.Println("\nContent groups and connection handoff: a new 3-node lab with the groups preset.")
	fmt.Println("  html = {n1, n2} serves *.html (/page.html exists only there); cgi = {n2, n3} serves *.cgi and /upload")
	fmt.Println("  (a dynamic app on n2 and n3); everything else is on every node. The node whose buckets accept a")
	fmt.Println("  connection reads its first request and, if another node should serve it, moves the established")
	fmt.Println("  TCP connection there (TCP_REPAIR): the client sees one connection and the answer of the right node.")
	l, err := lab.Up(ctx, lab.Options{Nodes: 3, Preset: lab.PresetGroups, Log: os.Stderr})
	if err != nil {
		return err
	}
	defer func() {
		fmt.Println("\nlab down: stopping nodes and apps, deleting namespaces")
		if err := lab.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: lab down:", err)
		}
	}()
	if _, err := lab.WaitConverged(ctx, l.NodeIDs(), 3); err != nil {
		return err
	}
	url := "http://" + lab.VIP
	// One session first, to show a cookie pinning later requests.
	var cookie string
	{
		var so bytes.Buffer
		cmd := lab.Exec(ctx, "client", "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-D", "-", url+"/app.cgi")
		cmd.Stdout = &so
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("demo: first /app.cgi: %v", err)
		}
		for _, line := range strings.Split(so.String(), "\n") {
			if strings.HasPrefix(strings.ToLower(line), "set-cookie: ") {
				cookie, _, _ = strings.Cut(strings.TrimSpace(line[len("set-cookie: "):]), ";")
			}
		}
	}
	kinds := []struct {
		what string
		argv []string
	}{
		{"GET /obj/1k (every node)", []string{url + "/obj/1k"}},
		{"GET /page.html (html)", []string{url + "/page.html"}},
		{"GET /app.cgi (cgi)", []string{url + "/app.cgi"}},
		{"GET /app.cgi with cookie " + shorten(cookie), []string{"-H", "Cookie: " + cookie, url + "/app.cgi"}},
		{"POST /upload 64 KiB (cgi)", []string{"-H", "Content-Type: application/octet-stream", "--data-binary", "@" + demoUploadFile(), url + "/upload"}},
		{"HTTPS, SNI cgi.shoal.lab: /app.cgi", []string{"-k", "--resolve", lab.CGIHost + ":443:" + lab.VIP, "https://" + lab.CGIHost + "/app.cgi"}},
	}
	fmt.Printf("\n%d requests of each kind, one fresh connection each:\n\n", n)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "request\tserved by\thanded off\tfrom\tfailed")
	failed := 0
	for _, k := range kinds {
		answers := demoCurl(ctx, n, k.argv)
		served, from := map[string]int{}, map[string]int{}
		moved, bad := 0, 0
		for _, a := range answers {
			if a.node == "" {
				bad++
				continue
			}
			served[a.node]++
			if a.origin != "" {
				moved++
				from[a.origin]++
			}
		}
		failed += bad
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\n", k.what, countsLine(served), moved, countsLine(from), bad)
	}
	tw.Flush()
	fmt.Println("\nWhat each node's reading module did (shoal handoffs):")
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "node\taccepted\tserved here\thanded off\tadopted\tlatency p50/p99")
	for _, id := range l.NodeIDs() {
		var h api.Handoffs
		if err := api.Get(lab.SocketPath(id), api.PathHandoffs, &h); err != nil {
			fmt.Fprintf(tw, "%s\tdown\n", id)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%.0f/%.0f µs\n", id, h.Accepted["http"]+h.Accepted["https"], h.Decisions["local"],
			countsLine(h.HandedOff), countsLine(h.Adopted), h.Latency.P50US, h.Latency.P99US)
	}
	tw.Flush()
	if failed > 0 {
		return fmt.Errorf("demo: %d requests failed", failed)
	}
	fmt.Println("\nEvery request reached a node holding its content; handed-off connections carried X-Shoal-Handoff: <origin>.")
	return demoRollout(ctx, l)
}

type demoHop struct{ node, origin string }

// demoCurl runs curl n times in the client namespace, four at a time, and
// reads X-Shoal-Node and X-Shoal-Handoff.
func demoCurl(ctx context.Context, n int, args []string) []demoHop {
	out := make([]demoHop, n)
	fourAtATime(n, func(i int) {
		argv := append([]string{"curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w",
			"%{http_code} %header{x-shoal-node} %header{x-shoal-handoff}"}, args...)
		var so bytes.Buffer
		cmd := lab.Exec(ctx, "client", argv...)
		cmd.Stdout = &so
		var code int
		var h demoHop
		if cmd.Run() == nil {
			fmt.Sscanf(so.String(), "%d %s %s", &code, &h.node, &h.origin)
		}
		if code != 200 {
			h = demoHop{}
		}
		out[i] = h
	})
	return out
}

// demoUploadFile writes 64 KiB of lab content for the uploads.
func demoUploadFile() string {
	f := lab.StateDir + "/demo-upload"
	var b bytes.Buffer
	b.ReadFrom(lab.ContentBytes("demo-upload", 64<<10))
	os.WriteFile(f, b.Bytes(), 0o644)
	return f
}

func shorten(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}
