#!/usr/bin/env bash
# deps.sh HUGEPAGES PKG...: install missing Debian packages and reserve
# hugepages. Idempotent; quiet when everything is in place.
set -euo pipefail
pages=$1
shift
missing=()
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "deps: missing packages ${missing[*]}; run make deps as root" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null && [[ ! -x /usr/local/go/bin/go ]]; then
	echo "deps: no Go toolchain found (need Go >= 1.22 in PATH or /usr/local/go)" >&2
	exit 1
fi
if [[ $(id -u) -eq 0 && -w /proc/sys/vm/nr_hugepages ]]; then
	have=$(cat /proc/sys/vm/nr_hugepages)
	if ((have < pages)); then
		echo "$pages" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
		have=$(cat /proc/sys/vm/nr_hugepages)
		if ((have < pages)); then
			echo "deps: warning: only $have of $pages hugepages reserved; DPDK will fall back to --no-huge (about half speed)" >&2
		fi
	fi
else
	echo "deps: warning: not root, hugepages not reserved; DPDK will use --no-huge" >&2
fi
