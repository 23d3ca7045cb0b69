// Package sysctl reads Linux network sysctls the way the kernel applies
// them. Pure Go, no cgo.
package sysctl

import (
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
