// Package replypath chooses and installs the way a node's replies leave its
// kernel.
//
// Every frame from a client crosses the data plane (the worker decides which
// node keeps it), and the node's kernel answers through the tap. Two modes
// carry the answer from there:
//
//   - tap: every reply segment crosses tap → worker → NIC. It works with
//     every device, including vfio-pci, where the kernel has no netdev to
//     transmit on; it costs one system call and one copy per MTU-sized
//     segment, and the tap's queue overflows under large downloads.
//   - kernel: TCP segments from the VIP that carry none of SYN, FIN and RST
//     (data and pure ACKs) are moved, at the tap's egress and before
//     segmentation, to the NIC's own kernel netdev (the veth of af_packet or
//     af_xdp, the netdev of a bifurcated driver) with one nftables netdev
//     egress rule ("fwd to"). They leave as GSO super-packets with the
//     netdev's offloads and never touch the worker. Segments with SYN, FIN
//     or RST, everything not from the VIP (ARP, the node address, gossip)
//     still cross the worker, which keeps learning ISNs and closes and keeps
//     policing ARP.
//
// Contract:
//
//   - Resolve maps the configured mode (auto, kernel, tap) and the DPDK
//     devargs to a Decision; kernel on a device without a kernel netdev is
//     an error naming dataplane.reply_path. It reads sysfs only for PCI
//     devices (to tell a bifurcated driver from vfio-pci).
//   - Ruleset and Sysctls are pure functions of Params; golden files pin
//     them (testdata/).
//   - Apply installs them (nft -f, /proc/sys writes) in the current network
//     namespace and returns an undo that removes the table and restores the
//     sysctls; Apply first removes a table left by a crashed run.
//
// See docs/replypath.md for why an egress redirect and not policy routing.
package replypath
