package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

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
				if _, err := node.LoadConfig(c.Args().First()); err != nil {
					return usageError{err}
				}
				return nil
			},
		}},
	})
}

func runNode(c *cli.Context) error {
	cfg, err := node.LoadConfig(c.String("config"))
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
