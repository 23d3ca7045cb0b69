// Package node wires one shoal node together and runs it: the DPDK data
// plane between the NIC and a tap, the tap's addresses, the health checks,
// gossip and the loop that steps the cluster controller (control/cluster),
// the node's HTTP content server and the admin server (whose wire types
// are package api). It holds no decisions of its own: the config is
// package config, the tables and their publication are the controller's.
//
// Contract: Run returns only after everything it started is stopped and
// released (workers, ports and their kernel tap, EAL memory, the admin
// socket), whether it ends by a signal or by an error. Errors caused by the
// operator's input (config, a missing device, no hugepages when they are
// required) are of type *InputError, which the CLI maps to exit status 2.
package node
