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
//
// Go changes and reads a worker's flow table only through the worker's
// command ring (cmd.h): Runtime.Install, Remove and Withdraw (what
// connection handoff uses to adopt or let go of a flow) and Runtime.Flows
// (a dump in chunks). The worker runs at most CommandsPerIteration
// commands and scans at most DumpScanSlots slots per loop iteration, so
// no command holds up the packets for long. Each call waits for its
// completion until its context's deadline; a call that gives up leaves the
// command to run later, and the ring, which owns all command memory, is
// freed only by Runtime.Free after the workers stopped.
//
// Runtime.Stats reports each worker's counters, flows by state and its
// longest loop iteration (ResetMaxIter starts a new measurement).
package dataplane
