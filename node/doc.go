// Package node runs one shoal node: it loads and validates the config,
// brings up the DPDK data plane between the NIC and a tap, gives the tap the
// VIP and the node's own address, publishes this node's share of the range
// table to the workers, serves HTTP content on the VIP, and answers the
// admin API on a unix socket.
//
// Contract: Run returns only after everything it started is stopped and
// released (workers, ports and their kernel tap, EAL memory, the admin
// socket), whether it ends by a signal or by an error. Errors caused by the
// operator's input (config, a missing device, no hugepages when they are
// required) are of type *InputError, which the CLI maps to exit status 2.
package node
