package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestMain lets the test binary act as shoal when SHOAL_TEST_MAIN is set,
// so the completion script can call "shoal" without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("SHOAL_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runApp(t *testing.T, args ...string) string {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	if err := app.Run(append([]string{"shoal"}, args...)); err != nil {
		t.Fatalf("shoal %v: %v", args, err)
	}
	return out.String()
}

// runSelf runs this test binary as shoal: urfave/cli reads os.Args when it
// completes, so completion needs a process of its own.
func runSelf(t *testing.T, args ...string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), "SHOAL_TEST_MAIN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("shoal %v: %v", args, err)
	}
	return string(out)
}

// TestCompletionCandidates: the binary lists the subcommands, and with a
// word starting with "-" the flags, of the command line so far.
func TestCompletionCandidates(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--generate-bash-completion"}, []string{"status", "stats", "drain", "lab", "node", "docs", "completion"}},
		{[]string{"lab", "--generate-bash-completion"}, []string{"up", "down", "exec", "kill", "status", "start", "server"}},
		{[]string{"status", "-", "--generate-bash-completion"}, []string{"--socket", "--json"}},
		{[]string{"drain", "-", "--generate-bash-completion"}, []string{"--undo", "--json", "--socket"}},
		{[]string{"node", "-", "--generate-bash-completion"}, []string{"--config"}},
	} {
		got := strings.Fields(runSelf(t, c.args...))
		for _, w := range c.want {
			if !slices.Contains(got, w) {
				t.Errorf("shoal %v: %q missing from %q", c.args, w, got)
			}
		}
	}
}

// TestBashCompletionScript sources the shipped script in bash and asks it
// to complete as a person pressing TAB would.
func TestBashCompletionScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(self, filepath.Join(dir, "shoal")); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "shoal.bash")
	if err := os.WriteFile(script, []byte(runApp(t, "completion", "bash")), 0o644); err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"shoal la":          "lab",
		"shoal lab ki":      "kill",
		"shoal status --js": "--json",
		"shoal docs m":      "man markdown",
	} {
		prog := `source "$1"; COMP_WORDS=($2); [[ $2 == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _shoal; echo "${COMPREPLY[*]}"`
		cmd := exec.Command(bash, "-c", prog, "bash", script, line)
		cmd.Env = append(os.Environ(), "SHOAL_TEST_MAIN=1", "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v: %s", line, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("completing %q: %q, want %q", line, got, want)
		}
	}
}

// TestDocsUpToDate: docs/shoal.1 and docs/cli.md are what the command
// definitions generate (`make docs` rewrites them).
func TestDocsUpToDate(t *testing.T) {
	for file, args := range map[string][]string{"../../docs/shoal.1": {"docs", "man"}, "../../docs/cli.md": {"docs", "markdown"}} {
		have, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run make docs)", err)
		}
		if want := runApp(t, args...); string(have) != want {
			t.Errorf("%s is not what `shoal %s` prints: run make docs", file, strings.Join(args, " "))
		}
	}
}

// TestJSONDocumented: every command with a --json flag has its output
// described in docs/operations.md.
func TestJSONDocumented(t *testing.T) {
	raw, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	_, doc, ok := bytes.Cut(raw, []byte("\n## `--json` output\n"))
	if !ok {
		t.Fatal("docs/operations.md has no section ## `--json` output")
	}
	doc, _, _ = bytes.Cut(doc, []byte("\n## "))
	var walk func(path string, cs []*cli.Command)
	n := 0
	walk = func(path string, cs []*cli.Command) {
		for _, c := range cs {
			p := strings.TrimSpace(path + " " + c.Name)
			for _, f := range c.Flags {
				if slices.Contains(f.Names(), "json") {
					n++
					if !regexp.MustCompile("`shoal " + regexp.QuoteMeta(p) + `[^` + "`" + `]*--json`).Match(doc) {
						t.Errorf("shoal %s --json is not described in docs/operations.md, section --json output", p)
					}
				}
			}
			walk(p, c.Subcommands)
		}
	}
	walk("", commands)
	if n < 10 {
		t.Fatalf("only %d commands with --json found", n)
	}
}

// TestInterspersed: a leaf command's flags may follow its positional
// arguments (the issue's `shoal content publish PATH --from F --group G`);
// words after "--" stay positional; other words are left alone.
func TestInterspersed(t *testing.T) {
	app := newApp()
	for _, c := range []struct{ in, want string }{
		{"shoal content publish /p.html --from f --group all --threshold 60", "shoal content publish --from f --group all --threshold 60 -- /p.html"},
		{"shoal content publish --from=f /p.html --json --group g", "shoal content publish --from=f --json --group g -- /p.html"},
		{"shoal content publish /p.html -- --from", "shoal content publish -- /p.html --from"},
		{"shoal status --json", "shoal status --json"},
		{"shoal content", "shoal content"},
		{"shoal status - --generate-bash-completion", "shoal status - --generate-bash-completion"},
	} {
		if got := strings.Join(interspersed(app.Commands, strings.Fields(c.in)), " "); got != c.want {
			t.Errorf("%q\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}
