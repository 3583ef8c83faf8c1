#!/usr/bin/env bash
# "cond && ok ... || fail ..." is this script's idiom: ok only prints, so
# fail runs exactly when cond is false. Network namespace names are plain.
# shellcheck disable=SC2015,SC2012
# The test cluster's proof, rerunnable: cluster.sh up, a pod of the
# debootstrap test image runs, kubectl exec works (output, exit code, stdin),
# the node advertises nvidia.com/gpu: 2, two pods asking for one GPU each run
# and a third stays Pending with the scheduler's "Insufficient nvidia.com/gpu";
# then cluster.sh down leaves no process, mount, bridge, network namespace or
# containerd state behind.
#
# usage: test/k8s/smoke.sh   (root; the same environment as cluster.sh)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
S=${SYGALDRY_K8S_DIR:-/tmp/sygaldry-k8s}
BRIDGE=sygk8s0
IMAGE=sygaldry/testbase:bookworm

passed=0 failed=0
ok() {
	passed=$((passed + 1))
	echo "ok   $*"
}
fail() {
	failed=$((failed + 1))
	echo "FAIL $*"
}

# cluster_procs prints the processes whose command line names the state
# directory: the cluster's own.
cluster_procs() {
	local d cmd
	for d in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
		case $cmd in *"$S/"*) printf ' %s:%s' "${d#/proc/}" "${cmd%% *}" ;; esac
	done
}
# A cluster someone is using is not taken down by this script.
if [ -n "$(cluster_procs)" ]; then
	echo "smoke.sh: a cluster is running from $S (cluster.sh down first)" >&2
	exit 1
fi

# What exists before, so that down is judged only on what the cluster made.
netns_before=$(ls /run/netns 2>/dev/null | sort || true)
# Shim sockets in /run/containerd/s that no process listens on: Docker's
# shims use that directory too, so only a dead one's socket counts.
stale_shim_sockets() {
	local listening f
	listening=$(ss -xlH 2>/dev/null | awk '{print $5}')
	for f in /run/containerd/s/*; do
		[ -S "$f" ] || continue
		grep -qxF "$f" <<<"$listening" || echo "$f"
	done
}
stale_before=$(stale_shim_sockets)
# The kubelet's marks outside its root directory: host directories and
# iptables chains.
host_state() {
	ls -d /var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /var/log/pods /run/netns 2>/dev/null || true
	iptables-save 2>/dev/null | grep -c KUBE || true
	ip6tables-save 2>/dev/null | grep -c KUBE || true
}
host_before=$(host_state)

downed=""
down_once() {
	downed=1
	"$here/cluster.sh" down || fail "cluster.sh down"
}
# However the script ends, the cluster goes down and the count is printed.
on_exit() {
	local rc=$?
	[ -n "$downed" ] || down_once
	[ "$rc" = 0 ] || fail "smoke.sh stopped early (exit $rc)"
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ] || exit 1
	exit 0
}
trap on_exit EXIT

t0=$SECONDS
"$here/cluster.sh" up
ok "cluster up and node Ready in $((SECONDS - t0))s"
eval "$("$here/cluster.sh" env)"
export KUBECONFIG
k() { "$SYGALDRY_K8S_BIN/kubectl" "$@"; }

pod() { # NAME [GPUS]
	local limits=""
	if [ -n "${2:-}" ]; then
		limits="
    resources:
      limits:
        nvidia.com/gpu: $2"
	fi
	k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {app.kubernetes.io/part-of: sygaldry-smoke}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: Never
    command: [sleep, infinity]$limits
EOF
}

pod smoke
if k wait --for=condition=Ready pod/smoke --timeout=120s >/dev/null; then
	ok "a pod of $IMAGE runs"
else
	k describe pod smoke | tail -n 20
	fail "a pod of $IMAGE runs"
fi

out=$(k exec smoke -- cat /etc/debian_version 2>&1 || true)
case $out in 12.*) ok "kubectl exec runs a command in the pod (debian $out)" ;; *) fail "kubectl exec: $out" ;; esac
rc=0
k exec smoke -- sh -c 'exit 7' || rc=$?
[ "$rc" = 7 ] && ok "kubectl exec carries the exit code" || fail "kubectl exec exit code: $rc, want 7"
out=$(printf 'round trip\n' | k exec -i smoke -- sh -c 'cat; id -un' 2>&1 || true)
[ "$out" = "$(printf 'round trip\nroot')" ] && ok "kubectl exec -i carries stdin" || fail "kubectl exec -i: $out"

# GPUs without a GPU: an extended resource in the node's status is all the
# scheduler looks at.
k patch node localhost --subresource=status --type=json \
	-p '[{"op":"add","path":"/status/capacity/nvidia.com~1gpu","value":"2"}]' >/dev/null
alloc=""
for _ in $(seq 1 20); do
	alloc=$(k get node localhost -o jsonpath='{.status.allocatable.nvidia\.com/gpu}')
	[ "$alloc" = 2 ] && break
	sleep 0.5
done
[ "$alloc" = 2 ] && ok "the node advertises nvidia.com/gpu: 2" || fail "node allocatable nvidia.com/gpu: '$alloc'"

pod gpu-1 1
pod gpu-2 1
if k wait --for=condition=Ready pod/gpu-1 pod/gpu-2 --timeout=120s >/dev/null; then
	ok "two pods asking for one GPU each run"
else
	fail "two pods asking for one GPU each run"
fi
pod gpu-3 1
msg=""
for _ in $(seq 1 60); do
	msg=$(k get pod gpu-3 -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')
	[ -n "$msg" ] && break
	sleep 0.5
done
phase=$(k get pod gpu-3 -o jsonpath='{.status.phase}')
case $msg in
*"Insufficient nvidia.com/gpu"*)
	[ "$phase" = Pending ] && ok "the third stays Pending: $msg" || fail "gpu-3 phase $phase, want Pending"
	;;
*) fail "gpu-3 not held for want of a GPU: phase $phase, '$msg'" ;;
esac
k get pods -o wide

down_once
t1=$SECONDS
left=$(cluster_procs)
[ -z "$left" ] && ok "down: no process of the cluster left" || fail "down: processes left:$left"
mounts=$(awk -v s="$S/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo)
[ -z "$mounts" ] && ok "down: no mount left under $S" || fail "down: mounts left: $mounts"
ip link show "$BRIDGE" >/dev/null 2>&1 && fail "down: bridge $BRIDGE left" || ok "down: bridge $BRIDGE deleted"
[ "$(ls /run/netns 2>/dev/null | sort || true)" = "$netns_before" ] && ok "down: no network namespace left" ||
	fail "down: network namespaces left: $(ls /run/netns)"
[ "$(stale_shim_sockets)" = "$stale_before" ] && ok "down: no shim socket left" ||
	fail "down: shim sockets left: $(stale_shim_sockets)"
[ "$(host_state)" = "$host_before" ] && ok "down: no kubelet directory or iptables chain left on the host" ||
	fail "down: host state changed: $(host_state)"
[ ! -e "$S" ] && ok "down: containerd, etcd and kubelet state removed ($S)" || fail "down: $S left"
echo "down checked in $((SECONDS - t1))s"
