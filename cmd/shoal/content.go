package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/api"
)

// The content distribution system's commands (docs/versions.md).

func init() {
	commands = append(commands, &cli.Command{
		Name:  "content",
		Usage: "publish versions of content and follow their rollout",
		Subcommands: []*cli.Command{
			{
				Name:      "publish",
				Usage:     "publish FILE as the next version of PATH to a group; the group updates batch members at a time",
				ArgsUsage: "PATH",
				Flags: adminFlags("the publication (an object: path, version, sha256, size, group, threshold, batch, publisher)",
					&cli.StringFlag{Name: "from", Usage: "the file holding the new version", Required: true},
					&cli.StringFlag{Name: "group", Usage: "the group that serves PATH", Required: true},
					&cli.IntFlag{Name: "threshold", Value: 50, Usage: "percent of the group (5-95) holding the new version after which older copies become unavailable"},
					&cli.IntFlag{Name: "batch", Value: 1, Usage: "members updating at once"}),
				Action: contentPublishCmd,
			},
			{
				Name:      "status",
				Usage:     "show every published path (or one): each node's version and state, and the threshold",
				ArgsUsage: "[PATH]",
				Flags:     adminFlags("the answer of GET /v1/content (an object: node_id, paths with version, group, threshold, threshold_reached, share, nodes, and fetch counters)"),
				Action:    contentStatusCmd,
			},
		},
	})
}

func contentPublishCmd(c *cli.Context) error {
	if c.NArg() != 1 {
		return badInput("content publish: give exactly one PATH (the URL path, e.g. /page.html), got %d arguments", c.NArg())
	}
	p := c.Args().First()
	if !strings.HasPrefix(p, "/") {
		return badInput("content publish: PATH %q must start with / (it is the URL path)", p)
	}
	if t := c.Int("threshold"); t < 5 || t > 95 {
		return badInput("content publish: --threshold %d must be between 5 and 95 (percent)", t)
	}
	if b := c.Int("batch"); b < 1 {
		return badInput("content publish: --batch %d must be at least 1", b)
	}
	if strings.TrimSpace(c.String("group")) == "" {
		return badInput("content publish: --group is empty")
	}
	f, err := os.Open(c.String("from"))
	if err != nil {
		return badInput("content publish: --from: %v", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return badInput("content publish: --from %s is not a regular file", c.String("from"))
	}
	sock, err := resolveSocket(c)
	if err != nil {
		return err
	}
	q := url.Values{"path": {p}, "group": {c.String("group")},
		"threshold": {strconv.Itoa(c.Int("threshold"))}, "batch": {strconv.Itoa(c.Int("batch"))}}
	var pub api.Publication
	if err := api.PostStream(sock, api.PathContentPublish+"?"+q.Encode(), f, 10*time.Minute, &pub); err != nil {
		var se *api.StatusError
		if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
			return badInput("content publish: %s", se.Message)
		}
		return err
	}
	if c.Bool("json") {
		return printJSON(pub)
	}
	fmt.Printf("published %s version %d (%d bytes, sha256 %s) to group %s: threshold %d%%, %d at a time\n",
		pub.Path, pub.Version, pub.Size, pub.SHA256, pub.Group, pub.Threshold, pub.Batch)
	return nil
}

func contentStatusCmd(c *cli.Context) error {
	if c.NArg() > 1 {
		return badInput("content status: give at most one PATH, got %d arguments", c.NArg())
	}
	path := api.PathContent
	if c.NArg() == 1 {
		path += "?" + url.Values{"path": {c.Args().First()}}.Encode()
	}
	var st api.Content
	if err := adminGet(c, path, &st); err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(st)
	}
	if len(st.Paths) == 0 {
		if c.NArg() == 1 {
			return badInput("content status: %s is not published", c.Args().First())
		}
		fmt.Println("nothing published (shoal content publish PATH --from FILE --group G)")
		return nil
	}
	for i, p := range st.Paths {
		if i > 0 {
			fmt.Println()
		}
		thr := "not reached"
		if p.ThresholdReached {
			thr = "reached: older copies unavailable"
		}
		fmt.Printf("%s  version %d  %d bytes  group %s  %d/%d members done (%.0f%%)  threshold %d%% %s  batch %d  published by %s\n",
			p.Path, p.Version, p.Size, p.Group, p.Done, p.Members, 100*p.Share, p.Threshold, thr, p.Batch, p.Publisher)
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NODE\tVERSION\tSTATE\tHOLDS\tALIVE\tROUND")
		for _, n := range p.Nodes {
			round := "-"
			if n.Round >= 0 {
				round = strconv.Itoa(n.Round)
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%v\t%v\t%s\n", n.Node, n.Version, n.State, n.Holds, n.Alive, round)
		}
		tw.Flush()
	}
	f := st.Fetch
	fmt.Printf("\nfetches on %s: %d fetched, %d failed, %d bytes, %.1f MB/s lately; failures %s\n",
		st.NodeID, f.Fetched, f.Failed, f.Bytes, f.BytesPerSec/1e6, countsLine(f.Failures))
	return nil
}
