#!/usr/bin/env bash
# Compares the gateway with OpenSSH's sshd on loopback, in one run so the
# ratios are fair on a shared machine: download and upload throughput through
# one session, and the wall time of a whole `ssh host true` (connect, auth,
# exec, exit). sshd runs the command on the host; the gateway runs it in a
# container, through the agent.
#
# usage: scripts/bench-vs-sshd.sh [SIZE_MB] [RUNS]   (root; after `make build`)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
size_mb=${1:-1024}
runs=${2:-10}
cipher=${BENCH_CIPHER:-aes128-gcm@openssh.com}
image=${DEV_IMAGE:-sygaldry/zephyr:dev}
sshd_port=${BENCH_SSHD_PORT:-22022}
gw_port=${BENCH_GATEWAY_PORT:-22023}

[ -x bin/sygaldry-gateway ] || { echo "run make build first" >&2; exit 1; }
command -v /usr/sbin/sshd >/dev/null || { echo "openssh-server is not installed" >&2; exit 1; }
bash test/image/build.sh "$image" >/dev/null

work=$(mktemp -d /tmp/sygbench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	docker rm -f "sygaldry-bench-bench" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

ssh-keygen -q -t ed25519 -N "" -f "$work/key"
ssh-keygen -q -t ed25519 -N "" -f "$work/hostkey"
cp "$work/key.pub" "$work/authorized_keys"
mkdir -p /run/sshd
cat >"$work/sshd_config" <<CFG
ListenAddress 127.0.0.1:$sshd_port
HostKey $work/hostkey
AuthorizedKeysFile $work/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# The key files live under /tmp (sticky, world-writable): fine for a bench.
StrictModes no
PidFile $work/sshd.pid
Subsystem sftp internal-sftp
CFG
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
pids+=($!)

mkdir -p "$work/state" "$work/storage"
cat >"$work/gateway.toml" <<CFG
[server]
listen = "127.0.0.1:$gw_port"
state_dir = "$work/state"
admin_socket = "$work/admin.sock"
agent_path = "$root/bin/sygaldry-agent"
idle_stop = "0"
[docker]
storage_root = "$work/storage"
[defaults]
image = "$image"
gpus = "none"
shm_size = "64m"
[projects.bench]
members = ["bench"]
[users.bench]
keys = ["$(cat "$work/key.pub")"]
CFG
bin/sygaldry-gateway --config "$work/gateway.toml" 2>"$work/gateway.log" &
pids+=($!)
sleep 1

opts=(-F /dev/null -i "$work/key" -o IdentitiesOnly=yes -o IdentityAgent=none -o BatchMode=yes
	-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -c "$cipher")
sshd_cmd=(ssh "${opts[@]}" -p "$sshd_port" root@127.0.0.1)
gw_cmd=(ssh "${opts[@]}" -p "$gw_port" bench@127.0.0.1)
"${gw_cmd[@]}" true # creates the container (not measured)
"${sshd_cmd[@]}" true

now() { date +%s.%N; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
bytes=$((size_mb * 1024 * 1024))

down() { # MB/s for SIZE of zeros, server -> client
	local t0 t1; t0=$(now)
	"$@" "head -c $bytes /dev/zero" >/dev/null
	t1=$(now); rate "$bytes" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}
up() { # MB/s, client -> server
	local t0 t1; t0=$(now)
	head -c "$bytes" /dev/zero | "$@" "cat >/dev/null"
	t1=$(now); rate "$bytes" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}
latency() { # mean ms of a whole `ssh host true`
	local t0 t1; t0=$(now)
	for _ in $(seq "$runs"); do "$@" true; done
	t1=$(now); awk -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" -v n="$runs" 'BEGIN { printf "%.0f", s / n * 1000 }'
}

echo "cipher $cipher, ${size_mb} MiB transfers, $runs logins; $(nproc) cores"
printf '%-28s %10s %10s %8s\n' "" "sshd" "gateway" "ratio"
row() {
	printf '%-28s %10s %10s %8s\n' "$1" "$2" "$3" "$(awk -v a="$2" -v b="$3" -v inv="${4:-0}" 'BEGIN { if (inv) printf "%.2f", a / b; else printf "%.2f", b / a }')"
}
row "download MB/s" "$(down "${sshd_cmd[@]}")" "$(down "${gw_cmd[@]}")"
row "upload MB/s" "$(up "${sshd_cmd[@]}")" "$(up "${gw_cmd[@]}")"
row "ssh host true, ms (lower)" "$(latency "${sshd_cmd[@]}")" "$(latency "${gw_cmd[@]}")" 1
echo "(ratio: gateway relative to sshd; above 1 means the gateway did better)"
