package main

import (
	_ "embed"
	"fmt"

	"github.com/urfave/cli/v2"
)

// The CLI documents itself: a man page and a Markdown reference generated
// from the command definitions (docs/shoal.1 and docs/cli.md are their
// output, kept current by TestDocsUpToDate and `make docs`), and shell
// completion.

//go:embed completion/shoal.bash
var bashCompletion string

func init() {
	commands = append(commands, &cli.Command{
		Name:  "docs",
		Usage: "print the CLI reference generated from the command definitions",
		Subcommands: []*cli.Command{
			{Name: "man", Usage: "print the man page (roff, section 1)", ArgsUsage: " ", Action: func(c *cli.Context) error {
				s, err := c.App.ToManWithSection(1)
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(c.App.Writer, s)
				return err
			}},
			{Name: "markdown", Usage: "print the reference in Markdown", ArgsUsage: " ", Action: func(c *cli.Context) error {
				s, err := c.App.ToMarkdown()
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(c.App.Writer, s)
				return err
			}},
		},
	}, &cli.Command{
		Name:  "completion",
		Usage: "print a shell completion script",
		Subcommands: []*cli.Command{
			{Name: "bash", Usage: "bash (and zsh with bashcompinit): shoal completion bash > /etc/bash_completion.d/shoal", ArgsUsage: " ",
				Action: func(c *cli.Context) error {
					_, err := fmt.Fprint(c.App.Writer, bashCompletion)
					return err
				}},
			{Name: "fish", Usage: "fish: shoal completion fish > ~/.config/fish/completions/shoal.fish", ArgsUsage: " ",
				Action: func(c *cli.Context) error {
					s, err := c.App.ToFishCompletion()
					if err != nil {
						return err
					}
					_, err = fmt.Fprint(c.App.Writer, s)
					return err
				}},
		},
	})
}
