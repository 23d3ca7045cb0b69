// Package e2e holds the end-to-end tests of shoal: real `shoal node`
// processes with their DPDK data planes in the namespace lab, driven by real
// clients (curl) from the client namespace. They need root, hugepages or
// --no-huge, and the lab's tools; elsewhere they skip with the reason.
package e2e
