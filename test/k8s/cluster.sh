#!/usr/bin/env bash
# A real single-node Kubernetes 1.34 on loopback for the tests, with no
# registry: etcd, kube-apiserver, kube-scheduler, kube-controller-manager and
# the kubelet built from upstream sources by the wrapper module beside this
# script, a containerd instance of its own (never Docker's), Debian's CNI
# bridge plugin, a locally built pause image and the debootstrap test image.
#
# usage: test/k8s/cluster.sh up|down|env|build
#   up     build (from Go's cache after the first time), start, wait for a Ready node
#   down   stop everything by recorded PID, unmount, delete the bridge and the state
#   env    print KUBECONFIG=... (and where the binaries are) for the tests
#   build  only build the binaries
#
# Environment:
#   SYGALDRY_K8S_DIR    state (configs, keys, logs, PIDs, etcd, containerd, kubelet);
#                       default /tmp/sygaldry-k8s
#   SYGALDRY_K8S_BIN    the built binaries; default ~/.cache/sygaldry-k8s/bin
#   SYGALDRY_K8S_AUTHZ  the apiserver's --authorization-mode; default RBAC
#                       (the admin token is in system:masters), AlwaysAllow also works
#   SYGALDRY_K8S_IMAGES images imported from Docker; default sygaldry/testbase:bookworm
#                       (built by test/image/build.sh when missing)
#   SYGALDRY_K8S_BUILD_JOBS  packages compiled at once by the build; default 1, so a
#                       first build (5-30 minutes) leaves the machine usable
#   GOCACHE             Go's build cache, as usual; keep it between runs
#
# Needs root, Docker, Debian's containerd, runc and containernetworking-plugins.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
S=${SYGALDRY_K8S_DIR:-/tmp/sygaldry-k8s}
BIN=${SYGALDRY_K8S_BIN:-$HOME/.cache/sygaldry-k8s/bin}
AUTHZ=${SYGALDRY_K8S_AUTHZ:-RBAC}
IMAGES=${SYGALDRY_K8S_IMAGES:-sygaldry/testbase:bookworm}
K8S_VERSION=v1.34.2

# Loopback ports, chosen away from the defaults so a stray etcd or apiserver
# on the machine does not collide; the kubelet keeps its well-known ones.
ETCD_PORT=23790
ETCD_PEER_PORT=23800
API_PORT=16443
SCHED_PORT=10259
KCM_PORT=10257
KUBELET_PORT=10250
KUBELET_HEALTHZ_PORT=10248

BRIDGE=sygk8s0
POD_SUBNET=10.217.0.0/24
SERVICE_RANGE=10.218.0.0/24
PAUSE_IMAGE=docker.io/sygaldry/k8s-pause:$K8S_VERSION
CTR_SOCK=$S/containerd/containerd.sock

log() { printf '%s cluster.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	log "$*"
	exit 1
}

need() {
	local cmd=$1 pkg=$2
	command -v "$cmd" >/dev/null || die "$cmd not found (apt-get install $pkg)"
}

prereqs() {
	[ "$(id -u)" = 0 ] || die "needs root (mounts, network namespaces, containerd)"
	need containerd containerd
	need ctr containerd
	need runc runc
	need containerd-shim-runc-v2 containerd
	need docker docker.io
	need openssl openssl
	need curl curl
	need ip iproute2
	if ! { [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ]; }; then
		die "CNI plugins missing in /usr/lib/cni (apt-get install containernetworking-plugins)"
	fi
	command -v go >/dev/null || die "go not found"
	docker info >/dev/null 2>&1 || die "the Docker engine is not running (images are imported from it)"
}

# build compiles every binary of the wrapper module into $BIN, one package at
# a time and at the lowest priority: the machine is shared. Go's build cache
# makes every build after the first a matter of linking.
build() {
	local ld="-s -w"
	local v
	for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=34"
	done
	mkdir -p "$BIN"
	local t0=$SECONDS
	(cd "$here" && CGO_ENABLED=0 nice -n 19 go build -p "${SYGALDRY_K8S_BUILD_JOBS:-1}" -trimpath -ldflags "$ld" -o "$BIN/" ./cmd/...) ||
		die "go build of test/k8s/cmd/... failed"
	log "binaries built in $((SECONDS - t0))s into $BIN"
}

pidfile() { echo "$S/pids/$1.pid"; }

# ours tells whether PID is still a process of this cluster: every component's
# command line names the state directory, so a recycled PID is never taken.
ours() {
	local cmd
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
	case $cmd in *"$S/"*) return 0 ;; esac
	return 1
}

alive() {
	local f
	f=$(pidfile "$1")
	[ -f "$f" ] && ours "$(cat "$f")"
}

# start runs NAME in the background with its output in logs/NAME.log and its
# PID in pids/NAME.pid. setsid: a Ctrl-C in the caller's terminal does not
# reach it, only down does.
start() {
	local name=$1
	shift
	setsid "$@" >"$S/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$(pidfile "$name")"
	log "$name started (pid $!)"
}

# wait_for NAME SECONDS CMD...: polls CMD until it succeeds, failing with the
# tail of NAME's log when NAME dies or the time is up.
wait_for() {
	local name=$1 secs=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ! alive "$name"; then
			tail -n 40 "$S/logs/$name.log" >&2
			die "$name exited during start (log: $S/logs/$name.log)"
		fi
		if [ $SECONDS -ge $deadline ]; then
			tail -n 40 "$S/logs/$name.log" >&2
			die "$name not ready after ${secs}s (log: $S/logs/$name.log)"
		fi
		sleep 0.5
	done
}

kctl() { "$BIN/kubectl" --kubeconfig "$S/admin.kubeconfig" "$@"; }
ctr_() { ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }

# pki writes a CA, the apiserver's serving certificate (loopback, localhost and
# the in-cluster names), the service-account key pair, the admin token and
# the kubeconfig every component and the tests use.
pki() {
	local p=$S/pki
	mkdir -p "$p"
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=sygaldry-k8s-ca \
		-keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
	cat >"$p/apiserver.ext" <<EOF
subjectAltName=IP:127.0.0.1,IP:${SERVICE_RANGE%.0/24}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOF
	openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
		-keyout "$p/apiserver.key" -out "$p/apiserver.csr" 2>/dev/null
	openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
		-days 30 -extfile "$p/apiserver.ext" -out "$p/apiserver.crt" 2>/dev/null
	openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
	openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
	local token
	token=$(openssl rand -hex 24)
	echo "$token,admin,admin,system:masters" >"$p/tokens.csv"
	chmod 600 "$p"/*.key "$p/tokens.csv"
	cat >"$S/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sygaldry-k8s
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 "$p/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: sygaldry-k8s
  context:
    cluster: sygaldry-k8s
    user: admin
    namespace: default
current-context: sygaldry-k8s
EOF
	chmod 600 "$S/admin.kubeconfig"
}

configs() {
	mkdir -p "$S/containerd" "$S/cni/net.d" "$S/cni/ipam" "$S/kubelet"
	# The native snapshotter: overlayfs is not dependable on every machine
	# of this kind. restrict_oom_score_adj: without it runc fails here with
	# "can't get final child's PID from pipe" (rlimits are restricted).
	# runc's state lives under $S too, so down leaves nothing in /run.
	cat >"$S/containerd/config.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CTR_SOCK"

[ttrpc]
  address = "$CTR_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$S/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$S/cni/net.d"
EOF
	# ipMasq off: the bridge adds no iptables rules; pods need no way out.
	cat >"$S/cni/net.d/10-sygaldry.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "sygaldry-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$S/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
	# Tests only: anonymous requests to the kubelet are allowed (the
	# apiserver does not present a client certificate to it).
	cat >"$S/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
containerRuntimeEndpoint: unix://$CTR_SOCK
cgroupDriver: cgroupfs
cgroupsPerQOS: false
featureGates:
  InPlacePodVerticalScaling: false
enforceNodeAllocatable: []
failSwapOn: false
evictionHard: {}
localStorageCapacityIsolation: false
podLogsDir: $S/kubelet/pod-logs
volumePluginDir: $S/kubelet/volume-plugins
registerNode: true
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
clusterDomain: cluster.local
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
EOF
}

import_image() {
	local ref=$1
	docker image inspect "$ref" >/dev/null 2>&1 || die "image $ref is not in Docker: build or load it first"
	log "importing $ref"
	docker save "$ref" | ctr_ images import --snapshotter native - >/dev/null ||
		die "importing $ref into the cluster's containerd failed"
}

# pause_image builds the pod sandbox image FROM scratch around the static
# pause binary and imports it: no registry is ever asked for it.
pause_image() {
	local ctx
	ctx=$(mktemp -d)
	cp "$BIN/pause" "$ctx/pause"
	printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
	docker build -q -t "${PAUSE_IMAGE#docker.io/}" "$ctx" >"$S/logs/pause-build.log" 2>&1 || {
		cat "$S/logs/pause-build.log" >&2
		die "docker build of the pause image failed"
	}
	rm -rf "$ctx"
	import_image "${PAUSE_IMAGE#docker.io/}"
}

up() {
	prereqs
	if alive kube-apiserver || alive containerd; then
		die "a cluster is already running from $S (cluster.sh down first)"
	fi
	local t0=$SECONDS
	build
	local tb=$SECONDS
	# A previous run that died half-way is cleaned before starting anew.
	if [ -d "$S" ]; then
		down
	fi
	mkdir -p "$S/pids" "$S/logs"
	# An up that fails half-way leaves nothing running: its logs are kept
	# in $S.failed and the rest is taken down.
	trap up_failed EXIT
	pki
	configs

	start containerd containerd --config "$S/containerd/config.toml"
	wait_for containerd 30 ctr --address "$CTR_SOCK" version
	pause_image
	local img
	for img in $IMAGES; do
		if [ "$img" = sygaldry/testbase:bookworm ]; then
			bash "$repo/test/image/build.sh" "$img" >&2 || die "test/image/build.sh $img failed"
		fi
		import_image "$img"
	done

	start etcd "$BIN/etcd" --name default --data-dir "$S/etcd" \
		--listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync
	wait_for etcd 60 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

	local p=$S/pki
	start kube-apiserver "$BIN/kube-apiserver" --bind-address 127.0.0.1 --secure-port "$API_PORT" \
		--etcd-servers "http://127.0.0.1:$ETCD_PORT" \
		--tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" --client-ca-file "$p/ca.crt" \
		--token-auth-file "$p/tokens.csv" --authorization-mode "$AUTHZ" \
		--service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
		--service-account-issuer https://kubernetes.default.svc.cluster.local \
		--service-cluster-ip-range "$SERVICE_RANGE" --endpoint-reconciler-type none \
		--kubelet-preferred-address-types Hostname --allow-privileged --profiling=false
	wait_for kube-apiserver 120 curl -sf --cacert "$p/ca.crt" "https://127.0.0.1:$API_PORT/readyz" \
		-H "Authorization: Bearer $(cut -d, -f1 "$p/tokens.csv")"

	local kc=$S/admin.kubeconfig
	start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$kc" \
		--authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
		--bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
		--service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
		--cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
		--use-service-account-credentials=false \
		--controllers '*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route'
	start kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$kc" \
		--authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" --authentication-skip-lookup \
		--bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false
	host_before
	# The node's IP cannot be loopback, so the apiserver reaches the kubelet
	# by its name (--kubelet-preferred-address-types Hostname): localhost.
	start kubelet "$BIN/kubelet" --config "$S/kubelet/config.yaml" --kubeconfig "$kc" \
		--root-dir "$S/kubelet/root" --cert-dir "$S/kubelet/pki" --hostname-override localhost
	wait_for kubelet 120 kctl get node localhost
	wait_for kubelet 120 kctl wait --for=condition=Ready node/localhost --timeout=2s
	wait_for kube-controller-manager 60 kctl -n default get serviceaccount default
	wait_for kube-scheduler 60 curl -sfk "https://127.0.0.1:$SCHED_PORT/healthz"
	trap - EXIT
	log "node Ready $((SECONDS - tb))s after the build ($((SECONDS - t0))s in all)"
	env_
}

up_failed() {
	local rc=$?
	trap - EXIT
	rm -rf "$S.failed"
	cp -r "$S/logs" "$S.failed" 2>/dev/null || true
	log "up failed: logs kept in $S.failed; taking down what started"
	down || true
	exit "$rc"
}

# The kubelet and containerd write a few things outside the state directory
# whatever their configuration says: /var/lib/kubelet/device-plugins (the
# kubelet's device plugin socket), /var/log/containers, /run/netns (the pods'
# network namespaces) and iptables chains (KUBE-IPTABLES-HINT,
# KUBE-KUBELET-CANARY, and KUBE-FIREWALL, jumped to from INPUT and OUTPUT).
# host_before records which of them were already there, so that down removes
# only what this cluster made.
HOST_DIRS=(/var/lib/kubelet/device-plugins /var/lib/kubelet /var/log/containers /var/log/pods /run/netns)
IPTABLES=(iptables ip6tables)

host_before() {
	local d ipt
	: >"$S/host-made"
	for d in "${HOST_DIRS[@]}"; do
		[ -e "$d" ] || echo "dir $d" >>"$S/host-made"
	done
	for ipt in "${IPTABLES[@]}"; do
		command -v "$ipt" >/dev/null || continue
		"$ipt" -t mangle -n -L KUBE-IPTABLES-HINT >/dev/null 2>&1 || echo "iptables $ipt" >>"$S/host-made"
	done
}

host_clean() {
	[ -f "$S/host-made" ] || return 0
	local kind what t
	while read -r kind what; do
		case $kind in
		iptables)
			"$what" -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
			"$what" -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
			"$what" -t filter -F KUBE-FIREWALL 2>/dev/null || true
			"$what" -t filter -X KUBE-FIREWALL 2>/dev/null || true
			for t in mangle nat filter; do
				"$what" -t "$t" -X KUBE-KUBELET-CANARY 2>/dev/null || true
			done
			"$what" -t mangle -X KUBE-IPTABLES-HINT 2>/dev/null || true
			;;
		dir)
			# Only the kubelet's own files: a directory that holds anything
			# else by now is left as it is.
			rm -f "$what/kubelet.sock" "$what/kubelet_internal_checkpoint"
			rmdir "$what" 2>/dev/null || true
			;;
		esac
	done <"$S/host-made"
}

# ourpids prints the PIDs of processes that use this cluster's containerd
# socket on their command line (the shims containerd leaves to run the pods).
ourpids() {
	local d cmd
	for d in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
		case $cmd in *"$CTR_SOCK"*) echo "${d#/proc/}" ;; esac
	done
}

stop_pid() {
	local name=$1 pid=$2 _
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 40); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.25
	done
	log "$name (pid $pid) ignored SIGTERM for 10s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
}

stop() {
	local name=$1 f
	f=$(pidfile "$name")
	[ -f "$f" ] || return 0
	if ours "$(cat "$f")"; then
		stop_pid "$name" "$(cat "$f")"
	fi
	rm -f "$f"
}

down() {
	[ -d "$S" ] || {
		log "nothing at $S"
		return 0
	}
	# Pods are deleted through the kubelet while it still runs, so that
	# their sandboxes are torn down by CNI: netns and veth go with them.
	if alive kube-apiserver && alive kubelet && [ -x "$BIN/kubectl" ]; then
		kctl delete pods --all --all-namespaces --grace-period=0 --wait --timeout=60s >/dev/null 2>&1 ||
			log "not every pod was deleted in 60s; their tasks are killed below"
	fi
	stop kube-scheduler
	stop kube-controller-manager
	stop kubelet
	stop kube-apiserver
	stop etcd
	# What the kubelet left: kill the tasks and remember the sandboxes'
	# network namespaces (containerd creates them under /run/netns).
	local netns="" id
	if alive containerd; then
		for id in $(ctr_ containers ls -q 2>/dev/null); do
			netns+=" $(ctr_ containers info "$id" 2>/dev/null |
				jq -r '.Spec.linux.namespaces[]? | select(.type=="network") | .path // empty' 2>/dev/null || true)"
			ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
		done
		sleep 1
		for id in $(ctr_ containers ls -q 2>/dev/null); do
			ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true
		done
	fi
	stop containerd
	# A shim that has to be killed leaves its socket in /run/containerd/s
	# (shared with Docker's containerd): note each one's sockets first.
	local pid socks=""
	for pid in $(ourpids); do
		socks+=" $(ss -xlpH 2>/dev/null | awk -v p="pid=$pid," 'index($0, p) {print $5}')"
		stop_pid "shim" "$pid"
	done
	for id in $socks; do
		case $id in /run/containerd/s/*) rm -f "$id" ;; esac
	done
	for id in $netns; do
		case $id in /run/netns/cni-* | /var/run/netns/cni-*)
			umount "$id" 2>/dev/null || true
			rm -f "$id"
			;;
		esac
	done
	# Every mount under the state directory, deepest first.
	local m
	# shellcheck disable=SC2013 # the state directory's paths have no blanks
	for m in $(awk -v s="$S/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"
	done
	ip link del "$BRIDGE" 2>/dev/null || true
	# The kubelet links each container's log into /var/log/containers.
	if [ -d /var/log/containers ]; then
		find /var/log/containers -maxdepth 1 -type l -lname "$S/*" -delete 2>/dev/null || true
	fi
	host_clean
	if awk -v s="$S/" 'index($5, s) == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
		die "mounts left under $S; state kept"
	fi
	rm -rf "$S"
	log "down: $S removed"
}

env_() {
	[ -f "$S/admin.kubeconfig" ] || die "no cluster at $S (cluster.sh up first)"
	echo "KUBECONFIG=$S/admin.kubeconfig"
	echo "SYGALDRY_K8S_BIN=$BIN"
}

case ${1:-} in
up) up ;;
down) down ;;
env) env_ ;;
build) build ;;
*)
	echo "usage: $0 up|down|env|build" >&2
	exit 2
	;;
esac
