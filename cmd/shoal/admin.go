package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/control/capacity"
	"github.com/shoal-lb/shoal/lab"
)

// The control commands talk to a node's admin API on its unix socket.

// adminFlags are the flags of every control command; the --json usage
// names what is printed (docs/operations.md shows the shapes).
func adminFlags(json string, extra ...cli.Flag) []cli.Flag {
	return append(extra,
		&cli.StringFlag{Name: "socket", Usage: "admin socket of the node (default: the lab node of this namespace, or the only socket in /run/shoal)"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON: " + json})
}

func init() {
	commands = append(commands,
		&cli.Command{Name: "status", Usage: "show the node's identity, table and members",
			Flags: adminFlags("the answer of GET /v1/status (an object: node_id, table_hash, epoch, owned_buckets, members, ...)"), Action: statusCmd},
		&cli.Command{Name: "stats", Usage: "show the data plane's counters",
			Flags: adminFlags("the answer of GET /v1/stats (an object: total, flows, workers, ports)"), Action: statsCmd},
		&cli.Command{Name: "drain", Usage: "give this node's share of new connections away (established ones stay)",
			Flags: adminFlags("the capacity state after the change (an object: capacity, availability, draining, ...)",
				&cli.BoolFlag{Name: "undo", Usage: "take the share back"}), Action: drainCmd},
		&cli.Command{Name: "weight", Usage: "override this node's advertised availability", ArgsUsage: "N | --reset",
			Flags: adminFlags("the capacity state after the change (an object: capacity, availability, override, ...)",
				&cli.BoolFlag{Name: "reset", Usage: "remove the override"}), Action: weightCmd},
		&cli.Command{Name: "ranges", Usage: "show the range table (or a group's) as owner intervals",
			Flags: adminFlags("the answer of GET /v1/ranges (an object: table_hash, intervals of {from, to, owner})",
				&cli.StringFlag{Name: "group", Usage: "a group's table instead of the cluster's"}), Action: rangesCmd},
		&cli.Command{Name: "flows", Usage: "list the flows in the workers' tables",
			Flags: adminFlags("the answer of GET /v1/flows (an array of {client, vip, state, bucket, expires_in_ms, worker})",
				&cli.IntFlag{Name: "max", Value: 100, Usage: "at most this many flows"}), Action: flowsCmd},
		&cli.Command{Name: "health", Usage: "show this node's checks and every member's health",
			Flags: adminFlags("the answer of GET /v1/health (an object: healthy, server_running, checks, slow_start_factor, members)"), Action: healthCmd},
		&cli.Command{Name: "groups", Usage: "show the server groups, their rules and members",
			Flags: adminFlags("the answer of GET /v1/groups (an array: name, paths, cookies, policy, table_hash, members, local)"), Action: groupsCmd},
		&cli.Command{Name: "handoffs", Usage: "show what the reading module did: connections served here, handed off, adopted, relayed, refused",
			Flags: adminFlags("the answer of GET /v1/handoffs (an object: accepted, refused, decisions, handed_off, failures, adopted, channel_refused, relayed, latency, served, ...)"), Action: handoffsCmd},
	)
}

// resolveSocket finds the admin socket: --socket, else the lab node whose
// namespace we run in, else the only socket in /run/shoal.
func resolveSocket(c *cli.Context) (string, error) {
	if s := c.String("socket"); s != "" {
		return s, nil
	}
	if out, err := exec.Command("ip", "netns", "identify", fmt.Sprint(os.Getpid())).Output(); err == nil {
		ns := strings.TrimSpace(string(out))
		if id, ok := strings.CutPrefix(ns, lab.NSPrefix); ok && id != "client" && id != "br" {
			return lab.SocketPath(id), nil
		}
	}
	socks, _ := filepath.Glob("/run/shoal/*.sock")
	if len(socks) == 1 {
		return socks[0], nil
	}
	return "", badInput("no admin socket found: give --socket (found %d in /run/shoal)", len(socks))
}

func adminGet(c *cli.Context, path string, v any) error {
	sock, err := resolveSocket(c)
	if err != nil {
		return err
	}
	return api.Get(sock, path, v)
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func statusCmd(c *cli.Context) error {
	var s api.Status
	if err := adminGet(c, api.PathStatus, &s); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(s)
	}
	fmt.Printf("node %s  vip %s  address %s  up %.0fs  hugepages %v\n", s.NodeID, s.VIP, s.Address, s.UptimeSec, s.Hugepages)
	fmt.Printf("reply path %s", s.ReplyPath.Mode)
	if s.ReplyPath.Netdev != "" {
		fmt.Printf(" via %s", s.ReplyPath.Netdev)
	}
	fmt.Printf(" (%s)\n", s.ReplyPath.Reason)
	fmt.Printf("prefilter %s (%s)\n", map[bool]string{true: "active", false: "inactive"}[s.Prefilter.Active], s.Prefilter.Reason)
	fmt.Printf("table %s (with the group tables %s)  algorithm %d  epoch %d  owned buckets %d (%.1f%%)  extra %d\n\n", s.TableHash,
		s.AgreementHash, s.TableAlgorithm, s.Epoch, s.OwnedBuckets, 100*float64(s.OwnedBuckets)/65536, s.ExtraBuckets)
	if s.Gossip {
		fmt.Printf("agreement %v", s.Agreement)
		if len(s.Disagree) > 0 {
			fmt.Printf(" (disagreeing: %v)", s.Disagree)
		}
		fmt.Printf("  table age %.1fs", s.TableAge)
		if s.Capacity != nil {
			fmt.Printf("  draining %v  load %.2f", s.Capacity.Draining, s.Capacity.Load)
		}
		fmt.Print("\n\n")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSTATE\tHEALTH\tCAPACITY\tAVAILABILITY\tBUCKETS\tSHARE\tTABLE\tAGREES")
	for _, m := range s.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%g\t%g\t%d\t%.2f%%\t%s\t%v\n", m.ID, dash(m.State), dash(m.Health),
			m.Capacity, m.Availability, m.Buckets, 100*m.Share, dash(m.TableHash), m.Agrees)
	}
	return tw.Flush()
}

func statsCmd(c *cli.Context) error {
	var s api.Stats
	if err := adminGet(c, api.PathStats, &s); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(s)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "COUNTER\tTOTAL")
	for _, w := range s.Workers {
		fmt.Fprintf(tw, "\tLCORE %d", w.Lcore)
	}
	fmt.Fprintln(tw)
	printStruct := func(total any, per func(i int) any) {
		for f, tf := range api.Fields(total) {
			fmt.Fprintf(tw, "%s\t%d", tf.Name, tf.Value)
			for i := range s.Workers {
				fmt.Fprintf(tw, "\t%d", api.Fields(per(i))[f].Value)
			}
			fmt.Fprintln(tw)
		}
	}
	printStruct(s.Total, func(i int) any { return s.Workers[i].Counters })
	// Frames the in-kernel prefilter dropped before any worker saw them.
	pf := s.Prefilter
	fmt.Fprintf(tw, "prefilter_foreign_dropped\t%d\nprefilter_syn_not_ours\t%d\nprefilter_syn_port_dropped\t%d\n",
		pf.ForeignDropped, pf.SynNotOurs, pf.SynPortDropped)
	printStruct(s.Flows, func(i int) any { return s.Workers[i].Flows })
	for name, p := range s.Ports {
		fmt.Fprintf(tw, "port %s\trx %d tx %d missed %d nombuf %d tx_errors %d\n", name, p.RxPackets, p.TxPackets, p.RxMissed, p.RxNoMbuf, p.TxErrors)
	}
	r := s.Reply
	fmt.Fprintf(tw, "reply path %s\tkernel packets %d bytes %d  tap_tx_dropped %d\n", r.Mode, r.KernelPackets, r.KernelBytes, r.TapTxDropped)
	return tw.Flush()
}

func rangesCmd(c *cli.Context) error {
	var r api.Ranges
	p := api.PathRanges
	if g := c.String("group"); g != "" {
		p += "?group=" + url.QueryEscape(g)
	}
	if err := adminGet(c, p, &r); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(r)
	}
	fmt.Printf("table %s: %d intervals\n", r.TableHash, len(r.Intervals))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tOWNER")
	for _, iv := range r.Intervals {
		fmt.Fprintf(tw, "%d\t%d\t%s\n", iv.From, iv.To, iv.Owner)
	}
	return tw.Flush()
}

// printJSONLine prints v as one line of JSON.
func printJSONLine(v any) error { return json.NewEncoder(os.Stdout).Encode(v) }

func drainCmd(c *cli.Context) error {
	if c.NArg() > 0 {
		return badInput("drain takes no arguments (use --undo to lift a drain)")
	}
	var st capacity.State
	if err := adminPost(c, api.PathDrain, map[string]bool{"on": !c.Bool("undo")}, &st); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(st)
	}
	fmt.Printf("draining %v: advertised availability %g of capacity %g\n", st.Draining, st.Availability, st.Capacity)
	return nil
}

func weightCmd(c *cli.Context) error {
	var body any
	switch {
	case c.Bool("reset") && c.NArg() == 0:
		body = map[string]bool{"reset": true}
	case !c.Bool("reset") && c.NArg() == 1:
		w, err := strconv.ParseFloat(c.Args().First(), 64)
		if err != nil || math.IsNaN(w) || w < 0 || w > capacity.MaxCapacity {
			return badInput("weight: %q is not a number between 0 and %g", c.Args().First(), capacity.MaxCapacity)
		}
		body = map[string]float64{"weight": w}
	default:
		return badInput("weight: give one number, or --reset")
	}
	var st capacity.State
	if err := adminPost(c, api.PathWeight, body, &st); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(st)
	}
	fmt.Printf("advertised availability %g (capacity %g)\n", st.Availability, st.Capacity)
	return nil
}

func adminPost(c *cli.Context, path string, body, v any) error {
	sock, err := resolveSocket(c)
	if err != nil {
		return err
	}
	return api.Post(sock, path, body, v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func groupsCmd(c *cli.Context) error {
	var gs []api.GroupStatus
	if err := adminGet(c, api.PathGroups, &gs); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(gs)
	}
	if len(gs) == 0 {
		fmt.Println("no groups defined (config: groups, member_of)")
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tPOLICY\tPATHS\tCOOKIES\tHOSTS\tTABLE\tMEMBERS (share)\tLOCAL")
	for _, g := range gs {
		var ms []string
		for _, m := range g.Members {
			ms = append(ms, fmt.Sprintf("%s (%.1f%%)", m.ID, 100*m.Share))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\n", g.Name, g.Policy, dash(strings.Join(g.Paths, " ")),
			dash(strings.Join(g.Cookies, " ")), dash(strings.Join(g.Hosts, " ")), g.TableHash, dash(strings.Join(ms, ", ")), g.Local)
	}
	return tw.Flush()
}

func flowsCmd(c *cli.Context) error {
	if m := c.Int("max"); m < 1 || m > 1000000 {
		return badInput("flows: --max %d must be between 1 and 1000000", m)
	}
	var fs []api.Flow
	if err := adminGet(c, fmt.Sprintf("%s?max=%d", api.PathFlows, c.Int("max")), &fs); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(fs)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tVIP\tSTATE\tBUCKET\tEXPIRES IN\tWORKER")
	for _, f := range fs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.1fs\t%d\n", f.Client, f.VIP, f.State, f.Bucket, float64(f.ExpireMS)/1000, f.Worker)
	}
	tw.Flush()
	fmt.Printf("%d flows\n", len(fs))
	return nil
}

func healthCmd(c *cli.Context) error {
	var h api.Health
	if err := adminGet(c, api.PathHealth, &h); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(h)
	}
	fmt.Printf("node %s: healthy %v, web server running %v, slow-start factor %.2f\n", h.NodeID, h.Healthy, h.ServerRunning, h.SlowStart)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	if len(h.Checks) > 0 {
		fmt.Fprintln(tw, "CHECK\tTARGET\tHEALTHY\tSINCE\tLATENCY\tTRANSITIONS\tLAST FAILURE")
		for _, s := range h.Checks {
			fmt.Fprintf(tw, "%s\t%s:%d%s\t%v\t%s\t%.1fms\t%d\t%s\n", s.Check.Name, s.Check.Host, s.Check.Port, s.Check.Path,
				s.Healthy, s.Since.Format("15:04:05.000"), s.LatencyMS, s.Transitions, dash(s.Reason))
		}
		tw.Flush()
		fmt.Println()
	}
	fmt.Fprintln(tw, "MEMBER\tHEALTH\tCAPACITY\tAVAILABILITY\tBUCKETS")
	for _, m := range h.Members {
		fmt.Fprintf(tw, "%s\t%s\t%g\t%g\t%d\n", m.ID, m.Health, m.Capacity, m.Availability, m.Buckets)
	}
	return tw.Flush()
}

func handoffsCmd(c *cli.Context) error {
	var h api.Handoffs
	if err := adminGet(c, api.PathHandoffs, &h); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(h)
	}
	moves := "yes"
	if !h.Moves {
		moves = "no (no cluster key: remote requests are relayed)"
	}
	fmt.Printf("node %s, moves connections: %s\n", h.NodeID, moves)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	for _, row := range []struct {
		what string
		m    map[string]uint64
	}{
		{"accepted", h.Accepted}, {"refused", h.Refused}, {"decisions", h.Decisions},
		{"handed off", h.HandedOff}, {"failures", h.Failures}, {"adopted", h.Adopted},
		{"channel refused", h.ChannelRefused}, {"served", h.Served},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row.what, countsLine(row.m))
	}
	fmt.Fprintf(tw, "relayed\t%d (failed %d, active %d, %d bytes up, %d down)\n",
		h.Relayed, h.RelayFailed, h.RelayActive, h.RelayBytesUp, h.RelayBytesDown)
	fmt.Fprintf(tw, "fallback local\t%d\nlost\t%d\n", h.FallbackLocal, h.Lost)
	if h.Latency.Count > 0 {
		fmt.Fprintf(tw, "latency\tp50 %.0f µs, p99 %.0f µs, max %.0f µs over %d handoffs\n",
			h.Latency.P50US, h.Latency.P99US, h.Latency.MaxUS, h.Latency.Count)
	} else {
		fmt.Fprintf(tw, "latency\t-\n")
	}
	return tw.Flush()
}

// countsLine prints a map of counters as "a 3, b 1", sorted by label.
func countsLine[N int | uint64](m map[string]N) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
