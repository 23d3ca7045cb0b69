// Package lab builds and tears down the network-namespace cluster that the
// tests, the demo and the benchmarks run shoal in (DESIGN §8).
//
// Layout, all inside 198.18.0.0/15 and nothing routed anywhere else:
//
//	shoal-br       a Linux bridge br0 with multicast snooping off, so frames
//	               for the cluster MAC 01:00:5e:75:c9:3e flood to every port;
//	               one port per other namespace (named "client", "n1", ...).
//	shoal-client   eth0 at 198.18.0.10/24 (ClientIP), transmit checksum
//	               offload off so it never emits partial checksums.
//	shoal-nK       eth0 up with no address, driven by the node's DPDK data
//	               plane through net_af_packet; an nftables netdev ingress
//	               chain drops every frame before the node kernel's IP stack
//	               sees it (packet sockets, and so DPDK, still see them). The
//	               node itself creates the tap shoal0 holding the VIP
//	               198.18.0.100/32 and its own address 198.18.0.(100+K)/24.
//
// IPv6 is disabled in every lab namespace. The client resolves the VIP by ARP
// through the nodes unless Options.StaticNeighbor pins it to the cluster MAC.
//
// State lives in StateDir (/run/shoal-lab): nK.yaml (node config), nK.pid,
// nK.log, nK.sock (admin API), admin.token (TokenPath: the bearer token of
// every node's TCP admin API and status page on NodeIP:AdminPort) and
// content/ (ContentDir), the deterministic files every node serves (see
// Objects, ContentBytes, ContentSHA256). The groups preset (PresetGroups)
// adds nodes/nK/content (NodeContentDir: the common files hard-linked, plus
// page.html on the members of group html), nK-app.{sock,pid,log} (the lab
// app of group cgi, package lab/app) and lab-cert.pem/lab-key.pem (the lab
// certificate, kept across Ups like content/).
//
// Contract:
//   - Up first removes any previous lab (a crashed run leaves one behind),
//     then builds the network, writes configs, starts one `shoal node` per
//     node namespace in its own session and returns once every node answers
//     GET / from the client with X-Shoal-Node: nK. On failure it tears down
//     everything it made and reports the tail of the failing node's log.
//   - Down stops every node (SIGTERM, SIGKILL after 5 s) and every other
//     process inside a lab namespace, deletes the shoal-* namespaces and
//     StateDir. It is idempotent and leaves nothing behind.
//   - One lab exists per machine. Within and across processes Up serialises
//     on a lock (an abstract unix socket, so a crash never leaves it held)
//     that is released by Down or when the holding process exits; tests that
//     use the lab must not run in parallel with each other.
//   - Everything is done by shelling out to ip, nft, ethtool and sysctl; a
//     failing command's error names the command line and carries its stderr.
//     Up needs root and fails naming any missing command.
package lab
