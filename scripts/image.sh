#!/usr/bin/env bash
# image.sh [TAG]: build the shoal container image (default shoal:latest)
# from bin/shoal (or $SHOAL_BIN), on a Debian 12 base made here with debootstrap: no base
# image is pulled from any registry, only Debian packages are fetched.
#
# The base holds the DPDK runtime libraries the binary links and the PMDs
# it loads (no -dev package), iproute2 and nftables (the node calls ip; the
# entrypoint installs an ingress drop for af_packet), ethtool and curl (the
# compose client). It is built once per package list (about 2 minutes) and
# kept as shoal-base:bookworm-<hash of the list>; later builds only copy
# the binary on top (seconds). Extra PMDs for bare-metal NICs:
#   PMDS="librte-net-i40e23 librte-net-ice23" make image
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-shoal:latest}
docker=${DOCKER:-docker}
export DOCKER_BUILDKIT=0 # the classic builder needs no buildx plugin

pkgs="iproute2 nftables ethtool curl ca-certificates
librte-eal23 librte-ethdev23 librte-mbuf23 librte-mempool23 librte-ring23
librte-bus-vdev23 librte-bus-pci23 librte-mempool-ring23
librte-net-af-packet23 librte-net-af-xdp23 librte-net-tap23 ${PMDS:-}"
pkgs=$(echo $pkgs | tr ' ' '\n' | sort -u | tr '\n' ' ')
key=$(echo "$pkgs" | sha256sum | cut -c1-12)
base="shoal-base:bookworm-$key"

bin=${SHOAL_BIN:-bin/shoal}
if [[ ! -x $bin ]]; then
	echo "image: $bin is missing: run make build first" >&2
	exit 1
fi
if ! $docker image inspect "$base" >/dev/null 2>&1; then
	mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
	mirror=${mirror:-http://deb.debian.org/debian}
	root=$(mktemp -d /var/tmp/shoal-rootfs.XXXXXX)
	trap 'rm -rf "$root"' EXIT
	echo "image: debootstrap bookworm from $mirror into $root (a few minutes, once)"
	start=$SECONDS
	debootstrap --variant=minbase --include="$(echo $pkgs | tr ' ' ',')" bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
		{ tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
	rm -f "$root.log"
	# What only a build needs, and what would go stale.
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
	tar -C "$root" -c . | $docker import -c 'CMD ["/bin/bash"]' -m "debootstrap --variant=minbase bookworm + $pkgs" - "$base" >/dev/null
	rm -rf "$root"
	echo "image: base $base built in $((SECONDS - start)) s"
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx"/shoal
cp docker/entrypoint.sh docker/Dockerfile "$ctx"/
out=$($docker build -q --build-arg BASE="$base" -t "$tag" "$ctx" 2>&1) || { echo "$out" >&2; exit 1; }
echo "image: $tag ($($docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')) on $base"
