package replypath

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/shoal-lb/shoal/sysctl"
)

// Installed is a kernel reply path in place in this network namespace.
type Installed struct {
	p     Params
	saved []Sysctl // the values Sysctls replaced
}

// Apply installs the kernel reply path for p: it checks that both
// interfaces exist and that the netdev's MTU can carry what the tap's
// route allows, sets Sysctls, and loads Ruleset (replacing a table a
// crashed run left behind). Remove undoes it.
func Apply(p Params) (*Installed, error) {
	rules, err := Ruleset(p)
	if err != nil {
		return nil, err
	}
	tapMTU, err := mtu(p.Tap)
	if err != nil {
		return nil, err
	}
	devMTU, err := mtu(p.Netdev)
	if err != nil {
		return nil, fmt.Errorf("%w (interface.device names it; is it in this network namespace?)", err)
	}
	if devMTU < tapMTU {
		return nil, fmt.Errorf("replypath: %s has MTU %d, below the tap %s's %d: segments sized for the tap would not fit; raise it or use dataplane.reply_path: tap", p.Netdev, devMTU, p.Tap, tapMTU)
	}
	in := &Installed{p: p}
	for _, s := range Sysctls(p) {
		old, err := os.ReadFile(s.Path())
		if err != nil {
			in.restore()
			return nil, fmt.Errorf("replypath: %w", err)
		}
		written, err := sysctl.Set(s.Key, s.Value)
		if err != nil {
			in.restore()
			return nil, fmt.Errorf("replypath: %w", err)
		}
		if !written {
			continue // in force already; nothing of ours to restore
		}
		in.saved = append(in.saved, Sysctl{s.Key, strings.TrimSpace(string(old))})
	}
	deleteTable(p.Table()) // a table left by a crashed run
	if err := nft(rules, "-f", "-"); err != nil {
		in.restore()
		return nil, err
	}
	return in, nil
}

// Remove deletes the table and restores the sysctls. The table also
// vanishes with the tap, but the netdev outlives the node.
func (in *Installed) Remove() error {
	err := deleteTable(in.p.Table())
	in.restore()
	return err
}

func (in *Installed) restore() {
	for _, s := range in.saved {
		os.WriteFile(s.Path(), []byte(s.Value), 0o644)
	}
	in.saved = nil
}

// Moved reads the rule's counter: segments (GSO super-packets count once)
// and bytes moved to the netdev since Apply.
func (in *Installed) Moved() (packets, bytes uint64, err error) {
	out, err := exec.Command("nft", "-j", "list", "table", "netdev", in.p.Table()).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("replypath: nft list table netdev %s: %v", in.p.Table(), err)
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Expr []map[string]json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, 0, fmt.Errorf("replypath: nft JSON: %v", err)
	}
	for _, o := range doc.Nftables {
		if o.Rule == nil {
			continue
		}
		for _, e := range o.Rule.Expr {
			if raw, ok := e["counter"]; ok {
				var c struct{ Packets, Bytes uint64 }
				if err := json.Unmarshal(raw, &c); err != nil {
					return 0, 0, fmt.Errorf("replypath: nft counter: %v", err)
				}
				return c.Packets, c.Bytes, nil
			}
		}
	}
	return 0, 0, errors.New("replypath: no counter in the table")
}

// KernelTxDropped is a netdev's tx_dropped: for the tap, the frames the
// kernel dropped because the worker did not read the tap's queue in time.
func KernelTxDropped(dev string) (uint64, error) {
	return readUint("/sys/class/net/" + dev + "/statistics/tx_dropped")
}

func mtu(dev string) (int, error) {
	v, err := readUint("/sys/class/net/" + dev + "/mtu")
	if err != nil {
		return 0, fmt.Errorf("replypath: interface %s: %w", dev, err)
	}
	return int(v), nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

func deleteTable(name string) error {
	if err := nft("", "delete", "table", "netdev", name); err != nil {
		if strings.Contains(err.Error(), "No such file") {
			return nil
		}
		return err
	}
	return nil
}

func nft(stdin string, args ...string) error {
	cmd := exec.Command("nft", args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("replypath: nft %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return nil
}
