package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/api"
	"github.com/shoal-lb/shoal/lab"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:  "demo",
		Usage: "bring up a 3-node lab, send requests from the client, show who answered, tear down (needs root)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "requests", Value: 300, Usage: "fresh-connection requests to send"},
			&cli.StringFlag{Name: "weights", Value: "1,2,1", Usage: "capacities of the 3 nodes"},
			&cli.IntFlag{Name: "handoff-requests", Value: 30, Usage: "requests of each kind in the content-groups part"},
		},
		Action: runDemo,
	})
}

func runDemo(c *cli.Context) error {
	if os.Geteuid() != 0 {
		return badInput("demo: needs root (network namespaces, DPDK)")
	}
	n := c.Int("requests")
	if n < 1 || n > 100000 {
		return badInput("demo: --requests %d must be between 1 and 100000", n)
	}
	if h := c.Int("handoff-requests"); h < 1 || h > 10000 {
		return badInput("demo: --handoff-requests %d must be between 1 and 10000", h)
	}
	weights, err := lab.ParseWeights(c.String("weights"), 3)
	if err != nil {
		return usageError{err}
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Minute)
	defer cancel()
	if err := demoCluster(ctx, n, weights, c.String("weights")); err != nil {
		return err
	}
	return demoGroups(ctx, c.Int("handoff-requests"))
}

// demoCluster is the L4 part: shares by capacity, a crash, a return.
func demoCluster(ctx context.Context, n int, weights []float64, weightsFlag string) error {
	fmt.Printf("shoal demo: 3 nodes with capacities %s share VIP %s; every node sees every packet.\n\n", weightsFlag, lab.VIP)
	l, err := lab.Up(ctx, lab.Options{Nodes: 3, Weights: weights, Log: os.Stderr})
	if err != nil {
		return err
	}
	if _, err := lab.WaitConverged(ctx, l.NodeIDs(), 3); err != nil {
		lab.Down()
		return err
	}
	defer func() {
		fmt.Println("\nlab down: stopping nodes, deleting namespaces")
		if err := lab.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: lab down:", err)
		}
	}()

	fmt.Printf("\n%d requests from the client (curl, one fresh connection each):\n", n)
	if err := demoRound(ctx, l, weights, n, true); err != nil {
		return err
	}

	fmt.Println("\nn2 crashes (SIGKILL). The survivors detect it by gossip and share its buckets:")
	killed := time.Now()
	if err := lab.Kill("n2"); err != nil {
		return err
	}
	if _, err := lab.WaitConverged(ctx, []string{"n1", "n3"}, 2); err != nil {
		return err
	}
	fmt.Printf("  n1 and n3 agree on a 2-member table %v after the crash (Windows NLB: about 10 s)\n", time.Since(killed).Round(time.Millisecond))
	if err := demoRound(ctx, l, weights, n, false); err != nil {
		return err
	}

	fmt.Println("\nn2 comes back, rejoins and takes back its share:")
	back := time.Now()
	if err := l.Start(ctx, "n2"); err != nil {
		return err
	}
	if _, err := lab.WaitConverged(ctx, l.NodeIDs(), 3); err != nil {
		return err
	}
	fmt.Printf("  all 3 agree again %v after the restart\n", time.Since(back).Round(time.Millisecond))
	if err := demoRound(ctx, l, weights, n, false); err != nil {
		return err
	}
	fmt.Println("\nEvery request was answered by exactly one node, straight from that node (direct server return).")
	return nil
}

type demoAnswer struct {
	code int
	node string
	err  string
}

func (a demoAnswer) String() string {
	if a.node == "" {
		return "FAILED: " + a.err
	}
	return fmt.Sprintf("HTTP %d from %s", a.code, a.node)
}

// demoRequests runs curl in the client namespace, four at a time.
func demoRequests(ctx context.Context, n int) []demoAnswer {
	out := make([]demoAnswer, n)
	fourAtATime(n, func(i int) {
		var so, se bytes.Buffer
		cmd := lab.Exec(ctx, "client", "curl", "-sS", "--max-time", "10", "-H", "Connection: close",
			"-o", "/dev/null", "-w", "%{http_code} %header{x-shoal-node}", "http://"+lab.VIP+"/obj/1k")
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		var a demoAnswer
		fmt.Sscanf(so.String(), "%d %s", &a.code, &a.node)
		if err != nil || a.code != 200 {
			a.node, a.err = "", strings.TrimSpace(se.String()+" "+so.String())
		}
		out[i] = a
	})
	return out
}

// fourAtATime runs f(0..n-1) on four goroutines and waits.
func fourAtATime(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// demoRound sends n requests and prints who answered beside the table.
func demoRound(ctx context.Context, l *lab.Lab, weights []float64, n int, showEach bool) error {
	answers := demoRequests(ctx, n)
	if showEach {
		for i, a := range answers[:min(12, n)] {
			fmt.Printf("  request %3d  %s\n", i+1, a)
		}
		if n > 12 {
			fmt.Printf("  ... %d more\n", n-12)
		}
		fmt.Println()
	}
	served := map[string]int{}
	failed := 0
	for _, a := range answers {
		if a.node == "" {
			failed++
			continue
		}
		served[a.node]++
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tcapacity\ttable share\tserved\tshare of requests\tSYNs accepted\tSYNs not ours\t")
	for k, id := range l.NodeIDs() {
		var st api.Status
		var sx api.Stats
		if api.Get(lab.SocketPath(id), api.PathStatus, &st) != nil || api.Get(lab.SocketPath(id), api.PathStats, &sx) != nil {
			fmt.Fprintf(tw, "%s\t%g\t-\t%d\t%.1f%%\tdown\tdown\t\n", id, weights[k], served[id], 100*float64(served[id])/float64(n))
			continue
		}
		fmt.Fprintf(tw, "%s\t%g\t%.1f%%\t%d\t%.1f%%\t%d\t%d\t\n", id, weights[k],
			100*float64(st.OwnedBuckets)/65536, served[id], 100*float64(served[id])/float64(n),
			sx.Total.SynAccepted, sx.Whole().SynNotOurs)
	}
	tw.Flush()
	if failed > 0 {
		return fmt.Errorf("demo: %d of %d requests failed", failed, n)
	}
	return nil
}
