// Package sysctl reads and sets Linux network sysctls the way the kernel
// applies them. Pure Go, no cgo.
package sysctl

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// InForce reports whether the per-interface sysctl rel (under root,
// /proc/sys/net/) already has the value want in effect: the kernel applies
// the larger of conf/all and conf/<dev> for arp_ignore and arp_announce,
// and a new interface takes disable_ipv6 from conf/default.
func InForce(root, rel, want string) bool {
	read := func(p string) int {
		b, err := os.ReadFile(root + p)
		if err != nil {
			return -1
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return -1
		}
		return v
	}
	w, _ := strconv.Atoi(want)
	have := read(rel)
	if parts := strings.Split(rel, "/"); len(parts) == 4 && (parts[3] == "arp_ignore" || parts[3] == "arp_announce") {
		have = max(have, read(parts[0]+"/conf/all/"+parts[3]))
	}
	return have == w
}

// Root is where the network sysctls live.
const Root = "/proc/sys/net/"

// Set writes want to the network sysctl rel (under Root). A container
// runtime mounts /proc/sys read-only; where the write fails but the kernel
// already applies want (from conf/all or conf/default, set with --sysctl,
// see docker/README.md), Set reports written false and no error.
func Set(rel, want string) (written bool, err error) {
	if err := os.WriteFile(Root+rel, []byte(want), 0o644); err != nil {
		if InForce(Root, rel, want) {
			return false, nil
		}
		return false, fmt.Errorf("sysctl net.%s=%s: %w; where /proc/sys is read-only (a container), set it through conf/all (arp_ignore, arp_announce) or conf/default (disable_ipv6) instead",
			strings.ReplaceAll(rel, "/", "."), want, err)
	}
	return true, nil
}
