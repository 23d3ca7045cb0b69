// Package docker holds the container image and compose files of shoal:
// Dockerfile and entrypoint.sh (the image, built by scripts/image.sh from
// a debootstrapped Debian 12 base), compose.yaml (three nodes and a client
// on one Docker network, each node driving its container's interface with
// DPDK's af_packet PMD) and README.md (what a node container needs, and
// why). Its test builds the image and runs the compose cluster; it needs
// root and Docker, and skips with the reason where Docker cannot run.
package docker
