#!/usr/bin/env bash
# The Kubernetes backend end to end: start the test cluster (cluster.sh up,
# built from Go's cache after the first time), run the kube package's tests
# against it with the real OpenSSH client and the gateway binary, and take
# the cluster down again whatever happened. A cluster that cannot start
# fails the run: the tests never skip here.
#
# usage: test/k8s/e2e.sh [go test flags...]   (default: -count=1 -timeout 30m)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
GO=${GO:-go}

log() { printf '%s e2e.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# In CI nothing else runs meanwhile: the first build may take every core.
if [ "${CI:-}" = true ]; then
	export SYGALDRY_K8S_BUILD_JOBS=${SYGALDRY_K8S_BUILD_JOBS:-$(nproc)}
fi

# A cluster this script did not start is left alone, and used.
started=
if ! bash "$here/cluster.sh" env >/dev/null 2>&1 || ! curl -ksf --max-time 5 https://127.0.0.1:16443/readyz >/dev/null 2>&1; then
	log "starting the test cluster (the first build takes 5-30 minutes)"
	bash "$here/cluster.sh" up
	started=1
fi
cleanup() {
	if [ -n "$started" ]; then
		bash "$here/cluster.sh" down || log "cluster.sh down failed"
	fi
}
trap cleanup EXIT

eval "$(bash "$here/cluster.sh" env)"
export KUBECONFIG SYGALDRY_K8S_BIN
export SYGALDRY_K8S_E2E=1

flags=("$@")
if [ ${#flags[@]} -eq 0 ]; then
	flags=(-count=1 -timeout 30m)
fi
cd "$repo"
log "go test ./kube/ ${flags[*]}"
"$GO" test "${flags[@]}" ./kube/
