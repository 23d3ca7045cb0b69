package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/lab"
	"github.com/shoal-lb/shoal/lab/app"
)

func init() {
	commands = append(commands, labCommand())
}

func labCommand() *cli.Command {
	return &cli.Command{
		Name:  "lab",
		Usage: "run a shoal cluster in network namespaces on this machine (needs root)",
		Subcommands: []*cli.Command{
			{
				Name:      "up",
				Usage:     "replace any lab with a new one and wait until every node answers",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "nodes", Value: lab.DefaultNodes, Usage: fmt.Sprintf("number of nodes, 1..%d", lab.MaxNodes)},
					&cli.StringFlag{Name: "weights", Usage: "comma-separated capacity per node, each > 0 (default all 1)"},
					&cli.BoolFlag{Name: "static-neighbor", Usage: "give the client a static neighbour entry VIP → cluster MAC instead of ARP"},
					&cli.UintFlag{Name: "seed", Usage: "connection hash seed (cluster.seed)"},
					&cli.StringFlag{Name: "binary", Usage: "shoal binary that runs the nodes (default: this one)"},
					&cli.BoolFlag{Name: "static", Usage: "static member lists instead of gossip"},
					&cli.StringFlag{Name: "reply-path", Value: "auto", Usage: "dataplane.reply_path of every node (auto, kernel, tap), or one per node: kernel,tap,kernel"},
					&cli.StringFlag{Name: "preset", Usage: "\"groups\": content groups html={n1,n2} (*.html) and cgi={n2,n3} (*.cgi, /upload, served by the lab app), session cookie shoal_session, HTTPS on VIP:443 (needs --nodes 3 or more; docs/lab.md)"},
					&cli.BoolFlag{Name: "network-only", Usage: "build namespaces and content but start no node"},
					&cli.DurationFlag{Name: "timeout", Value: lab.DefaultReadyTimeout, Usage: "how long to wait for the nodes to answer"},
				},
				Action: labUp,
			},
			{
				Name:      "down",
				Usage:     "stop every node, delete the lab namespaces and " + lab.StateDir,
				ArgsUsage: " ",
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return badInput("lab down takes no arguments, got %q", c.Args().Slice())
					}
					return lab.Down()
				},
			},
			{
				Name:      "server",
				Usage:     "stop or start a node's web server while the node runs (a dead application on a live node)",
				ArgsUsage: "nK stop|start",
				Action: func(c *cli.Context) error {
					id, verb := c.Args().Get(0), c.Args().Get(1)
					if c.NArg() != 2 || (verb != "stop" && verb != "start") {
						return badInput("lab server: usage: shoal lab server nK stop|start")
					}
					if err := lab.CheckWhere(id); err != nil || id == "client" || id == "br" {
						return badInput("lab server: %q is not a node", id)
					}
					var h api.Health
					if err := api.Post(lab.SocketPath(id), api.PathServer, map[string]bool{"running": verb == "start"}, &h); err != nil {
						return err
					}
					fmt.Printf("%s: web server running %v\n", id, h.ServerRunning)
					return nil
				},
			},
			{
				Name:      "start",
				Usage:     "start a killed node again from its config and wait until it answers",
				ArgsUsage: "nK",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return badInput("lab start: give one node, e.g. n2")
					}
					if err := lab.CheckWhere(c.Args().First()); err != nil || c.Args().First() == "client" || c.Args().First() == "br" {
						return badInput("lab start: %q is not a node", c.Args().First())
					}
					ctx, cancel := context.WithTimeout(c.Context, time.Minute)
					defer cancel()
					return lab.Restart(ctx, c.Args().First(), "")
				},
			},
			{
				Name:      "exec",
				Usage:     "run a command in a lab namespace and exit with its status",
				ArgsUsage: "<client|br|nK> -- CMD [ARG...]",
				Action:    labExec,
			},
			{
				Name:      "kill",
				Usage:     "kill a node with SIGKILL, as a crash would",
				ArgsUsage: "nK",
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return badInput("lab kill takes one node name (n1, n2, ...), got %q", c.Args().Slice())
					}
					err := lab.Kill(c.Args().First())
					if errors.Is(err, lab.ErrUnknownPlace) {
						return badInput("%v", err)
					}
					return err
				},
			},
			{
				// Hidden: the lab starts it (docs/lab.md documents it).
				Name:      "app",
				Usage:     "serve the lab app (GET /app.cgi, POST /upload) that the groups preset proxies to",
				ArgsUsage: " ",
				Hidden:    true,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "listen", Required: true, Usage: "unix:/path or host:port"},
					&cli.StringFlag{Name: "node", Required: true, Usage: "node name put in the answers"},
				},
				Action: labApp,
			},
			{
				Name:      "status",
				Usage:     "list the lab namespaces and whether each node process is alive",
				ArgsUsage: " ",
				Action:    labStatus,
			},
		},
	}
}

func labUp(c *cli.Context) error {
	if c.NArg() > 0 {
		return badInput("lab up takes no arguments, got %q", c.Args().Slice())
	}
	opts := lab.Options{
		Nodes:          c.Int("nodes"),
		StaticNeighbor: c.Bool("static-neighbor"),
		Static:         c.Bool("static"),
		Binary:         c.String("binary"),
		NetworkOnly:    c.Bool("network-only"),
		Preset:         c.String("preset"),
		ReadyTimeout:   c.Duration("timeout"),
		Log:            os.Stderr,
	}
	if opts.Nodes < 1 || opts.Nodes > lab.MaxNodes {
		return badInput("--nodes %d: must be between 1 and %d", opts.Nodes, lab.MaxNodes)
	}
	seed := c.Uint("seed")
	if seed > 1<<32-1 {
		return badInput("--seed %d: must fit in 32 bits", seed)
	}
	opts.Seed = uint32(seed)
	if err := lab.ParseReplyPaths(c.String("reply-path"), opts.Nodes, &opts); err != nil {
		return badInput("--reply-path: %v", err)
	}
	if c.IsSet("weights") {
		w, err := lab.ParseWeights(c.String("weights"), opts.Nodes)
		if err != nil {
			return badInput("--%v", err)
		}
		opts.Weights = w
	}
	if opts.Preset != "" && opts.Preset != lab.PresetGroups {
		return badInput("--preset %q: the only preset is %q", opts.Preset, lab.PresetGroups)
	}
	if opts.Preset == lab.PresetGroups && opts.Nodes < lab.PresetGroupsMinNodes {
		return badInput("--preset %s needs --nodes %d or more (groups html = {n1, n2}, cgi = {n2, n3}), got --nodes %d", opts.Preset, lab.PresetGroupsMinNodes, opts.Nodes)
	}
	if opts.ReadyTimeout <= 0 {
		return badInput("--timeout %v: must be positive", opts.ReadyTimeout)
	}
	if err := opts.Validate(); err != nil {
		return badInput("%v", err)
	}
	// The lock wait and the node start both fit inside this bound; ^C
	// cancels, and Up then tears down what it made.
	ctx, cancel := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, opts.ReadyTimeout+2*time.Minute)
	defer cancel2()
	l, err := lab.Up(ctx, opts)
	if err != nil {
		return err
	}
	if !opts.NetworkOnly && !opts.Static {
		hash, err := lab.WaitConverged(ctx, l.NodeIDs(), opts.Nodes)
		if err != nil {
			return err
		}
		fmt.Printf("lab up: %d nodes agree on range table %s\n", opts.Nodes, hash)
	}
	fmt.Printf("lab up: VIP %s, client %s (shoal lab exec client -- CMD)\n", lab.VIP, lab.ClientIP)
	for i, id := range l.NodeIDs() {
		fmt.Printf("  %s  %s  weight %g  status page %s  log %s\n", id, lab.NodeIP(i+1), l.Options().Weights[i], lab.AdminURL(i+1), lab.LogPath(id))
	}
	if opts.Preset == lab.PresetGroups {
		fmt.Printf("preset groups: html = {n1, n2} (*.html; /page.html only there), cgi = {n2, n3} (*.cgi, /upload: the lab app)\n")
		fmt.Printf("  session cookie %s; HTTPS on %s:443 with %s (names %s, *.%s)\n", lab.SessionCookie, lab.VIP, lab.CertPath, lab.LabDomain, lab.LabDomain)
		for i, id := range l.NodeIDs() {
			dir := l.ContentDirOf(i + 1)
			if lab.HasApp(opts.Preset, i+1) {
				fmt.Printf("  %s  content %s  app %s (log %s)\n", id, dir, lab.AppSocket(id), lab.AppLogPath(id))
			} else {
				fmt.Printf("  %s  content %s\n", id, dir)
			}
		}
	}
	return nil
}

// labApp is the lab's application upstream (package lab/app), which `lab
// up --preset groups` runs in the namespaces of n2 and n3.
func labApp(c *cli.Context) error {
	if c.NArg() > 0 {
		return badInput("lab app takes no arguments, got %q", c.Args().Slice())
	}
	node := c.String("node")
	if node == "" {
		return badInput("lab app: --node is required (the name the app puts in its answers)")
	}
	ln, err := app.Listen(c.String("listen"))
	if err != nil {
		return badInput("lab app: --%v", err)
	}
	ctx, cancel := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	fmt.Fprintf(os.Stderr, "lab app %s: serving on %s\n", node, ln.Addr())
	return app.Serve(ctx, ln, node)
}

func labExec(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) == 0 {
		return badInput("lab exec needs a place and a command: shoal lab exec <client|br|nK> -- CMD [ARG...]")
	}
	where, rest := args[0], args[1:]
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return badInput("lab exec %s: no command given (shoal lab exec %s -- CMD [ARG...])", where, where)
	}
	if err := lab.CheckWhere(where); err != nil {
		return badInput("%v", err)
	}
	cmd := lab.Exec(context.Background(), where, rest...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The child shares the terminal and gets ^C itself; this process only
	// waits for it and passes on its status.
	signal.Ignore(os.Interrupt, syscall.SIGQUIT)
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			os.Exit(128 + int(ws.Signal()))
		}
		os.Exit(ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("lab exec %s: %w", where, err)
	}
	return nil
}

func labStatus(c *cli.Context) error {
	if c.NArg() > 0 {
		return badInput("lab status takes no arguments, got %q", c.Args().Slice())
	}
	s, err := lab.Inspect()
	if err != nil {
		return err
	}
	if len(s.Namespaces) == 0 && len(s.Nodes) == 0 {
		fmt.Println("no lab (no shoal-* namespace)")
		return nil
	}
	fmt.Printf("namespaces: %s\n", strings.Join(s.Namespaces, " "))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAMESPACE\tPID\tSTATE\tSTATUS PAGE (from the client namespace)")
	for _, n := range s.Nodes {
		ns, pid, state, url := "missing", "-", "down", "-"
		if n.Namespace {
			ns = lab.Namespace(n.ID)
		}
		if n.PID != 0 {
			pid, state = fmt.Sprint(n.PID), "running"
			k, _ := strconv.Atoi(strings.TrimPrefix(n.ID, "n"))
			url = lab.AdminURL(k)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.ID, ns, pid, state, url)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Printf("status pages are read-only; changes need the token in %s\n", lab.TokenPath)
	fmt.Printf("e.g. shoal lab exec client -- chromium --headless --no-sandbox --screenshot=/tmp/n1.png %s\n", lab.AdminURL(1))
	return nil
}
