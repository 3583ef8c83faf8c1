#!/usr/bin/env bash
# Measures, on the test cluster, the two design choices of the Kubernetes
# backend (README.md, "Measured: agent delivery and the link"):
#
#  1. delivery of the agent by streaming it through the exec API into an
#     emptyDir of a pod of the project image, once per pod start: the cost of
#     an exec, of streaming the binary, and the cold start pod create ->
#     Running -> binary in place -> the agent answering on its socket;
#     beside it, delivery (b) in its node-local form (an init container of
#     the same image copies the binary from a hostPath) and the floor (the
#     binary mounted read-only from the node, no copy at all);
#  2. the link: throughput of a 256 MiB download from a pod fetched from its
#     IP on the bridge (a gateway inside the cluster), through kubectl
#     port-forward and through an exec stream (a gateway outside it);
#  3. the RBAC verbs exec and port-forward need: a service account with a
#     Role that grants only get, or only create, on pods/exec and
#     pods/portforward, and which protocol (WebSocket or SPDY) got through.
#
# Rerunnable. Uses the running cluster and leaves it up if there is one;
# otherwise brings one up (cluster.sh up) and takes it down at the end.
# Everything it makes lives in the namespace sygaldry-measure, deleted at the
# end. Prints medians (and every sample) as it goes, then a summary.
#
# usage: test/k8s/measure.sh   (root; the same environment as cluster.sh)
#   SYGALDRY_AGENT  the agent binary; default bin/sygaldry-agent, built here
#                   (as `make build` does) into a temporary directory if missing
#   COLD_RUNS       cold starts measured (default 5)
#   LINK_RUNS       downloads per path (default 3)
#   BLOB_MIB        size of the download (default 256)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
S=${SYGALDRY_K8S_DIR:-/tmp/sygaldry-k8s}
IMAGE=sygaldry/testbase:bookworm
NS=sygaldry-measure
COLD_RUNS=${COLD_RUNS:-5}
LINK_RUNS=${LINK_RUNS:-3}
BLOB_MIB=${BLOB_MIB:-256}
AGENT=${SYGALDRY_AGENT:-$repo/bin/sygaldry-agent}

tmp=$(mktemp -d)
started="" # set when this script brought the cluster up
pids=()    # background port-forwards, ended by PID
cleanup() {
	local rc=$? p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ -n "${K:-}" ] && [ -f "${KUBECONFIG:-/nonexistent}" ]; then
		"$K" delete namespace "$NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	fi
	[ -z "$started" ] || "$here/cluster.sh" down || rc=1
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }
# now_ms prints the wall clock in milliseconds.
now_ms() {
	local t=${EPOCHREALTIME/[.,]/}
	echo $((t / 1000))
}
# median prints the median of its arguments (the lower middle for an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# secs prints milliseconds as seconds.
secs() { awk -v m="$1" 'BEGIN {printf "%.2f", m / 1000}'; }
# mibps prints the rate of BYTES in MS milliseconds, in MiB/s.
mibps() { awk -v b="$1" -v m="$2" 'BEGIN {printf "%.0f", b / 1048576 / (m / 1000)}'; }

# The cluster: the running one, or one of our own.
if [ -f "$S/admin.kubeconfig" ] && [ -n "$(pgrep -f "$S/" 2>/dev/null || true)" ]; then
	say "using the running cluster in $S (left up)"
else
	"$here/cluster.sh" up
	started=1
fi
eval "$("$here/cluster.sh" env)"
export KUBECONFIG
K=$SYGALDRY_K8S_BIN/kubectl
"$K" get --raw /readyz >/dev/null || {
	echo "measure.sh: the apiserver in $S is not ready" >&2
	exit 1
}

# The agent, as `make build` makes it.
if [ ! -x "$AGENT" ]; then
	say "building the agent into $tmp (no $AGENT)"
	(cd "$repo" && CGO_ENABLED=0 nice -n 19 go build -p 1 -trimpath -ldflags='-s -w' \
		-o "$tmp/sygaldry-agent" ./cmd/agent)
	AGENT=$tmp/sygaldry-agent
fi
agent_bytes=$(stat -c %s "$AGENT")
agent_sum=$(sha256sum "$AGENT" | cut -d" " -f1)
say "agent: $AGENT, $agent_bytes bytes"

"$K" delete namespace "$NS" --ignore-not-found --wait=true >/dev/null
"$K" create namespace "$NS" >/dev/null
# The default service account appears shortly after the namespace.
for _ in $(seq 1 100); do
	"$K" -n "$NS" get serviceaccount default >/dev/null 2>&1 && break
	sleep 0.1
done
k() { "$K" -n "$NS" "$@"; }

# agent_pod NAME: a pod of the project image whose command waits for the
# agent to appear in an emptyDir and then becomes it (delivery (a)).
agent_pod() {
	k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {app.kubernetes.io/part-of: sygaldry-measure}
spec:
  terminationGracePeriodSeconds: 0
  volumes: [{name: sygaldry, emptyDir: {}}]
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: Never
    volumeMounts: [{name: sygaldry, mountPath: /.sygaldry}]
    command:
    - sh
    - -c
    - |
      mkdir -p /.sygaldry/bin /.sygaldry/run
      until [ -x /.sygaldry/bin/sygaldry-agent ]; do sleep 0.05; done
      exec /.sygaldry/bin/sygaldry-agent serve --listen /.sygaldry/run/agent.sock
EOF
}
# stream POD: the gateway's side of delivery (a): the binary goes in under a
# temporary name and is renamed into place only when its sha256 matches, for
# an exec stream can end early and still exit 0 (kubernetes#124571).
# ($0 is the expected sum, expanded by the pod's shell.)
# shellcheck disable=SC2016
stream() {
	k exec -i -c main "$1" -- sh -c 'cat >/.sygaldry/bin/.agent &&
		echo "$0  /.sygaldry/bin/.agent" | sha256sum -c --quiet - &&
		chmod 755 /.sygaldry/bin/.agent && mv /.sygaldry/bin/.agent /.sygaldry/bin/sygaldry-agent' \
		"$agent_sum" <"$AGENT"
}
# answer POD: waits in the pod until the agent accepts on its socket and
# prints its SSH banner (the agent answering).
answer() {
	k exec -c main "$1" -- python3 -c '
import socket, time
while True:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("/.sygaldry/run/agent.sock")
        break
    except OSError:
        s.close()
        time.sleep(0.02)
print(s.recv(64).decode().strip())'
}

say
say "== 1. delivery (a): the agent streamed through exec"
agent_pod warm
k wait --for=condition=Ready pod/warm --timeout=120s >/dev/null
exec_ms=() stream_ms=()
for _ in $(seq 1 5); do
	t0=$(now_ms)
	k exec warm -- true
	t1=$(now_ms)
	exec_ms+=($((t1 - t0)))
done
stream_bad=0
for _ in $(seq 1 5); do
	t0=$(now_ms)
	stream warm || stream_bad=$((stream_bad + 1))
	t1=$(now_ms)
	stream_ms+=($((t1 - t0)))
done
banner=$(answer warm)
[ "$banner" = SSH-2.0-sygaldry-agent ] || {
	echo "measure.sh: the streamed agent does not answer: '$banner'" >&2
	exit 1
}
m_exec=$(median "${exec_ms[@]}")
m_stream=$(median "${stream_ms[@]}")
say "exec of true (kubectl start + API + kubelet + runc): median $(secs "$m_exec") s  [ms: ${exec_ms[*]}]"
say "stream of the agent ($agent_bytes bytes) into a running pod: median $(secs "$m_stream") s  [ms: ${stream_ms[*]}]; sha256 mismatches: $stream_bad of 5"
k delete pod warm --grace-period=0 --wait=false >/dev/null

# Cold starts of three kinds, interleaved so that the load of the machine
# falls on each alike:
#  a      delivery (a): create -> Running -> the agent streamed -> answering;
#  init   delivery (b) in its node-local form: the binary is already on the
#         node (here the node is this machine), an init container of the same
#         image copies it from a hostPath into the emptyDir;
#  mount  the floor: the same directory mounted read-only straight into the
#         pod, no copy and no init container (what an image volume or a
#         node-local mount would give).
mkdir -p "$tmp/node-agent"
cp "$AGENT" "$tmp/node-agent/sygaldry-agent"
node_pod() { # NAME init|mount
	local init="" bin=""
	if [ "$2" = init ]; then
		init="
  initContainers:
  - name: agent
    image: $IMAGE
    imagePullPolicy: Never
    volumeMounts:
    - {name: sygaldry, mountPath: /.sygaldry}
    - {name: node-agent, mountPath: /node-agent, readOnly: true}
    command:
    - sh
    - -c
    - |
      mkdir -p /.sygaldry/bin
      cp /node-agent/sygaldry-agent /.sygaldry/bin/.agent && chmod 755 /.sygaldry/bin/.agent &&
        mv /.sygaldry/bin/.agent /.sygaldry/bin/sygaldry-agent"
	else
		bin="
    - {name: node-agent, mountPath: /.sygaldry/bin, readOnly: true}"
	fi
	k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  labels: {app.kubernetes.io/part-of: sygaldry-measure}
spec:
  terminationGracePeriodSeconds: 0
  volumes:
  - {name: sygaldry, emptyDir: {}}
  - {name: node-agent, hostPath: {path: "$tmp/node-agent", type: Directory}}$init
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: Never
    volumeMounts:
    - {name: sygaldry, mountPath: /.sygaldry}$bin
    command:
    - sh
    - -c
    - |
      mkdir -p /.sygaldry/run
      exec /.sygaldry/bin/sygaldry-agent serve --listen /.sygaldry/run/agent.sock
EOF
}
# cold KIND I: one cold start; sets run, put (0 unless a) and ans, in ms.
run=0 put=0 ans=0
cold() {
	local kind=$1 name=$1-$2 t0 t1 t2 t3 banner
	t0=$(now_ms)
	case $kind in
	a) agent_pod "$name" ;;
	*) node_pod "$name" "$kind" ;;
	esac
	k wait --for=jsonpath='{.status.phase}'=Running "pod/$name" --timeout=120s >/dev/null
	t1=$(now_ms)
	if [ "$kind" = a ]; then
		stream "$name" || {
			echo "measure.sh: $name: the streamed agent failed its sha256 check" >&2
			exit 1
		}
		t2=$(now_ms)
	else
		t2=$t1
	fi
	banner=$(answer "$name")
	t3=$(now_ms)
	[ "$banner" = SSH-2.0-sygaldry-agent ] || {
		echo "measure.sh: $name: the agent does not answer: '$banner'" >&2
		exit 1
	}
	run=$((t1 - t0)) put=$((t2 - t1)) ans=$((t3 - t2))
	say "cold start $name: create->Running $(secs "$run") s, stream $(secs "$put") s, answering $(secs "$ans") s, total $(secs $((t3 - t0))) s"
	k delete pod "$name" --grace-period=0 --wait=true >/dev/null
}
declare -A runs puts answers totals
for i in $(seq 1 "$COLD_RUNS"); do
	for kind in a init mount; do
		cold "$kind" "$i"
		runs[$kind]+=" $run" puts[$kind]+=" $put" answers[$kind]+=" $ans" totals[$kind]+=" $((run + put + ans))"
	done
done
# med LIST: the median of a list of numbers separated by spaces.
# shellcheck disable=SC2086
med() { median $1; }
m_a_run=$(med "${runs[a]}") m_a_put=$(med "${puts[a]}") m_a_ans=$(med "${answers[a]}") m_a_cold=$(med "${totals[a]}")
m_init_run=$(med "${runs[init]}") m_init_ans=$(med "${answers[init]}") m_init_cold=$(med "${totals[init]}")
m_mount_run=$(med "${runs[mount]}") m_mount_ans=$(med "${answers[mount]}") m_mount_cold=$(med "${totals[mount]}")
say "cold start, median of $COLD_RUNS:"
say "  (a) stream:        total $(secs "$m_a_cold") s = Running $(secs "$m_a_run") + stream $(secs "$m_a_put") + answering $(secs "$m_a_ans")  [totals ms:${totals[a]}]"
say "  (b) init+hostPath: total $(secs "$m_init_cold") s = Running $(secs "$m_init_run") + answering $(secs "$m_init_ans")  [totals ms:${totals[init]}]"
say "  floor, mounted:    total $(secs "$m_mount_cold") s = Running $(secs "$m_mount_run") + answering $(secs "$m_mount_ans")  [totals ms:${totals[mount]}]"

say
say "== 2. the link: ${BLOB_MIB} MiB from a pod"
blob=$((BLOB_MIB * 1048576))
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: http
  labels: {app.kubernetes.io/part-of: sygaldry-measure}
spec:
  terminationGracePeriodSeconds: 0
  volumes: [{name: srv, emptyDir: {medium: Memory}}]
  containers:
  - name: main
    image: $IMAGE
    imagePullPolicy: Never
    volumeMounts: [{name: srv, mountPath: /srv}]
    command:
    - sh
    - -c
    - |
      head -c $blob /dev/urandom >/srv/.blob && mv /srv/.blob /srv/blob
      exec python3 -m http.server 8000 --bind 0.0.0.0 --directory /srv
EOF
k wait --for=condition=Ready pod/http --timeout=120s >/dev/null
ip=$(k get pod http -o jsonpath='{.status.podIP}')
for _ in $(seq 1 100); do
	curl -sf -o /dev/null "http://$ip:8000/blob" -r 0-0 && break
	sleep 0.2
done
# port-forward to a port the kernel picks; its log names it.
"$K" -n "$NS" port-forward pod/http :8000 >"$tmp/pf.log" 2>&1 &
pids+=($!)
port=""
for _ in $(seq 1 100); do
	port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/pf.log")
	[ -n "$port" ] && break
	sleep 0.1
done
[ -n "$port" ] || {
	cat "$tmp/pf.log" >&2
	echo "measure.sh: kubectl port-forward did not start" >&2
	exit 1
}
# fetch URL: prints the milliseconds a full download took.
fetch() {
	local out size t
	out=$(curl -sf -o /dev/null -w '%{size_download} %{time_total}' "$1")
	size=${out% *} t=${out#* }
	[ "$size" = "$blob" ] || {
		echo "measure.sh: $1: $size bytes, want $blob" >&2
		return 1
	}
	awk -v t="$t" 'BEGIN {printf "%d", t * 1000}'
}
direct_ms=() pf_ms=() exec_down_ms=() exec_up_ms=()
short_down=() short_up=() # byte counts of exec streams that ended early with exit 0
for _ in $(seq 1 "$LINK_RUNS"); do
	direct_ms+=("$(fetch "http://$ip:8000/blob")")
	pf_ms+=("$(fetch "http://127.0.0.1:$port/blob")")
	t0=$(now_ms)
	got=$(k exec http -- cat /srv/blob | wc -c)
	t1=$(now_ms)
	[ "$got" = "$blob" ] || short_down+=("$got")
	exec_down_ms+=($((t1 - t0)))
	t0=$(now_ms)
	got=$(head -c "$blob" /dev/zero | k exec -i http -- wc -c)
	t1=$(now_ms)
	[ "$got" = "$blob" ] || short_up+=("$got")
	exec_up_ms+=($((t1 - t0)))
done
for path in direct pf exec_down exec_up; do
	case $path in
	direct) label="pod IP $ip (gateway in the cluster)" arr=("${direct_ms[@]}") ;;
	pf) label="kubectl port-forward (through the apiserver)" arr=("${pf_ms[@]}") ;;
	exec_down) label="exec stream, pod -> gateway (cat)" arr=("${exec_down_ms[@]}") ;;
	exec_up) label="exec stream, gateway -> pod (stdin)" arr=("${exec_up_ms[@]}") ;;
	esac
	m=$(median "${arr[@]}")
	say "$label: median $(secs "$m") s = $(mibps "$blob" "$m") MiB/s  [ms: ${arr[*]}]"
done
say "exec streams that ended early with exit 0: pod -> gateway ${#short_down[@]} of $LINK_RUNS (${short_down[*]:-} bytes)," \
	"gateway -> pod ${#short_up[@]} of $LINK_RUNS (${short_up[*]:-} bytes), want $blob"

say
say "== 3. RBAC: which verb on pods/exec and pods/portforward lets them through"
k create serviceaccount gateway >/dev/null
server=$("$K" config view --raw -o jsonpath='{.clusters[0].cluster.server}')
"$K" config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$tmp/ca.crt"
gwconf=$tmp/gateway.kubeconfig
token=$(k create token gateway)
(
	umask 077
	cat >"$gwconf" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$server", certificate-authority: "$tmp/ca.crt"}}]
users: [{name: gateway, user: {token: "$token"}}]
contexts: [{name: c, context: {cluster: c, user: gateway, namespace: $NS}}]
current-context: c
EOF
)
kgw() { "$K" --kubeconfig="$gwconf" "$@"; }
role() { # SUBRESOURCE VERB: pods get, plus VERB on pods/SUBRESOURCE
	k apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: gateway}
rules:
- {apiGroups: [""], resources: [pods], verbs: [get]}
- {apiGroups: [""], resources: [pods/$1], verbs: [$2]}
EOF
	k create rolebinding gateway --role=gateway --serviceaccount="$NS:gateway" \
		--dry-run=client -o yaml | k apply -f - >/dev/null
	for _ in $(seq 1 50); do
		[ "$(k auth can-i "$2" pods --subresource="$1" --as="system:serviceaccount:$NS:gateway")" = yes ] && break
		sleep 0.1
	done
}
# how LOG: the protocol that got the stream, from kubectl -v=6.
how() {
	if grep -q 'verb="GET" url="[^"]*/\(exec\|portforward\)[^"]*" status="101' "$1"; then
		echo "WebSocket (GET)"
	elif grep -q 'verb="POST" url="[^"]*/\(exec\|portforward\)[^"]*" status="101' "$1"; then
		echo "SPDY (POST), after the WebSocket upgrade was refused"
	else
		echo "refused"
	fi
}
for verb in get create; do
	role exec "$verb"
	if kgw exec http -v=6 -- true >"$tmp/rbac.log" 2>&1; then r=ok; else r=FAILED; fi
	say "pods/exec [$verb]: exec $r, by $(how "$tmp/rbac.log")"
	role portforward "$verb"
	kgw port-forward -v=6 pod/http :8000 >"$tmp/rbac.log" 2>&1 &
	pfpid=$!
	pids+=("$pfpid")
	gp=""
	for _ in $(seq 1 100); do
		gp=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/rbac.log")
		[ -n "$gp" ] && break
		sleep 0.1
	done
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gp/" || true)
	kill "$pfpid" 2>/dev/null || true
	wait "$pfpid" 2>/dev/null || true
	if [ "$code" = 200 ]; then r=ok; else r="FAILED (HTTP $code)"; fi
	say "pods/portforward [$verb]: port-forward $r, by $(how "$tmp/rbac.log")"
done

say
say "== summary"
say "agent $agent_bytes bytes; exec $(secs "$m_exec") s; stream $(secs "$m_stream") s ($stream_bad of 5 failed the sha256 check)"
say "cold start, median of $COLD_RUNS: (a) stream $(secs "$m_a_cold") s," \
	"(b) init container + hostPath $(secs "$m_init_cold") s, floor (mounted, no copy) $(secs "$m_mount_cold") s"
say "link, ${BLOB_MIB} MiB, median of $LINK_RUNS: pod IP $(mibps "$blob" "$(median "${direct_ms[@]}")") MiB/s," \
	"port-forward $(mibps "$blob" "$(median "${pf_ms[@]}")") MiB/s," \
	"exec down $(mibps "$blob" "$(median "${exec_down_ms[@]}")") MiB/s, exec up $(mibps "$blob" "$(median "${exec_up_ms[@]}")") MiB/s"
