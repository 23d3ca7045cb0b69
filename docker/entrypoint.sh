#!/bin/sh
# shoal-entrypoint: run a shoal node in a container, configured from the
# environment, or any other command (the client in compose.yaml).
#
#   NODE_ID      n1, n2, ...                 (required for "node")
#   VIP          the cluster address          (required)
#   SEEDS        gossip seeds, "ip:port,..."  (required)
#   GOSSIP_KEY   cluster key, hex or base64 of 16/24/32 bytes (required)
#   WEIGHT       this node's capacity, default 1
#   SEED         connection hash seed, default 1
#   DEVICE       DPDK devargs of the container's interface,
#                default net_af_packet0,iface=eth0
#   ADMIN_TOKEN  bearer token for the admin API on :8080 (optional)
set -eu

if [ "${1:-node}" != node ]; then
	exec "$@"
fi
: "${NODE_ID:?set NODE_ID}" "${VIP:?set VIP}" "${SEEDS:?set SEEDS}" "${GOSSIP_KEY:?set GOSSIP_KEY}"
DEVICE=${DEVICE:-net_af_packet0,iface=eth0}
iface=$(echo "$DEVICE" | sed -n 's/.*iface=\([^,]*\).*/\1/p')
iface=${iface:-eth0}

# The container runtime gave the interface the node's address; the node
# puts it on its tap instead (the data plane owns the interface), so take
# it off, keeping its prefix.
addr=$(ip -4 -o addr show dev "$iface" | awk '{print $4; exit}')
: "${addr:?no IPv4 address on $iface}"
ip addr flush dev "$iface"

# With af_packet the container's kernel still sees every frame; it holds
# the VIP on the tap and would answer the other nodes' connections with
# resets. Drop everything at the interface's ingress: packet sockets (the
# data plane) see frames before this hook. af_xdp needs no such rule.
case "$DEVICE" in
net_af_packet*)
	nft -f - <<NFT
table netdev shoal {
	chain ingress {
		type filter hook ingress device "$iface" priority 0; policy drop;
		counter drop
	}
}
NFT
	;;
esac

seeds=""
for s in $(echo "$SEEDS" | tr ',' ' '); do seeds="$seeds\"$s\", "; done
admin=""
if [ -n "${ADMIN_TOKEN:-}" ]; then
	printf '%s\n' "$ADMIN_TOKEN" >/etc/shoal/admin.token
	chmod 600 /etc/shoal/admin.token
	admin="listen: \"${addr%/*}:8080\", token_file: /etc/shoal/admin.token, "
fi
printf '<!doctype html><title>shoal %s</title><p>served by %s\n' "$NODE_ID" "$NODE_ID" >/srv/www/index.html
cat >/etc/shoal/"$NODE_ID".yaml <<YAML
node_id: $NODE_ID
cluster: {vip: "$VIP", seed: ${SEED:-1}}
interface: {device: "$DEVICE", tap: shoal0, address: "$addr"}
dpdk: {memory_mb: ${MEMORY_MB:-128}, hugepages: ${HUGEPAGES:-auto}}
http: {content: /srv/www}
admin: {${admin}socket: /run/shoal/$NODE_ID.sock}
gossip: {seeds: [${seeds%, }], key: "$GOSSIP_KEY"}
capacity: {weight: ${WEIGHT:-1}}
health:
  checks: [{name: web, kind: http, port: 80, path: /, interval_ms: 200, timeout_ms: 500, fall: 2, rise: 2}]
  slow_start: {window_sec: 0}
YAML
exec /usr/local/bin/shoal node --config /etc/shoal/"$NODE_ID".yaml
