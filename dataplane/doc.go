// Package dataplane is shoal's per-packet code and its Go wrapper.
//
// The decisions are pure C over frames in memory (classify.c, flows.c):
// answer ARP for the VIP with the cluster MAC, accept a SYN only when its
// bucket (the low 16 bits of the frozen connection value, see ConnValue) is
// owned by this node, keep accepted flows in a per-worker table for their
// whole life, give up a flow whose client acknowledged another node's
// SYN-ACK without letting the kernel reset it, and drop everything else to
// the VIP. worker.c wraps them in a DPDK poll loop between the NIC and a
// tap; the workers never call Go and never lock.
//
// The same rules are written a second time in Go (Reference). The fixture
// set, a differential test and a fuzz target hold C and Go equal, frame by
// frame and counter by counter; docs/dataplane.md states the rules.
//
// Go publishes this node's ownership bitmap with Runtime.Publish: a new
// table is swapped in by pointer and the old one freed once every running
// worker has reported the new epoch (its quiescent point, once per loop).
package dataplane
