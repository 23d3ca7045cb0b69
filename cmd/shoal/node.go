package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/shoal-lb/shoal/config"
	"github.com/shoal-lb/shoal/node"
)

func init() {
	commands = append(commands, &cli.Command{
		Name:  "node",
		Usage: "run one cluster node (data plane, tap, HTTP server, admin API)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "node config file (YAML)", Required: true},
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err} },
		Action:       runNode,
	}, &cli.Command{
		Name:  "config",
		Usage: "config file tools",
		Subcommands: []*cli.Command{{
			Name:      "check",
			Usage:     "validate a node config file",
			ArgsUsage: "FILE",
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return badInput("config check: give exactly one config file")
				}
				name := c.Args().First()
				_, err := config.Load(name)
				var ce *config.Error
				if errors.As(err, &ce) {
					// Every problem on a line of its own, each naming its field.
					fmt.Fprintf(os.Stderr, "config %s: %d problem(s)\n", name, len(ce.Problems))
					for _, p := range ce.Problems {
						fmt.Fprintf(os.Stderr, "  %s\n", p)
					}
					return usageError{fmt.Errorf("config %s is not usable", name)}
				}
				if err != nil {
					return usageError{err}
				}
				fmt.Printf("config %s: ok\n", name)
				return nil
			},
		}},
	})
}

func runNode(c *cli.Context) error {
	cfg, err := config.Load(c.String("config"))
	if err != nil {
		return usageError{err}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", cfg.NodeID)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = node.Run(ctx, cfg, log)
	var in *node.InputError
	if errors.As(err, &in) {
		return usageError{err}
	}
	return err
}
