#!/usr/bin/env bash
# Starts the Zephyr dev container on this host: a thin wrapper over
# `sygctl launch`, which builds the container from the same Go spec builder as
# the gateway (same image, user, mounts, labels, GPUs).
#
# usage: container/launch_container.sh                 interactive shell
#        container/launch_container.sh CMD [ARGS...]   run CMD, exit with its code
#
# Environment (read by sygctl launch):
#   SYGALDRY_PROJECT_ID    project name (default zephyr)
#   SYGALDRY_IMAGE         image (default sygaldry/zephyr:base; built if missing)
#   SYGALDRY_GPU=false     start without GPUs
#   SYGALDRY_STORAGE_ROOT  host storage root (default /mnt/data_infra/zephyr_container_infra)
#   SYGALDRY_CONFIG        gateway config to take project settings from (optional)
#   SYGCTL                 the sygctl binary to use (default: bin/sygctl, else PATH)
set -euo pipefail

repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)

if [ -n "${SYGCTL:-}" ]; then
	sygctl=$SYGCTL
elif [ -x "$repo/bin/sygctl" ]; then
	sygctl=$repo/bin/sygctl
elif command -v sygctl >/dev/null 2>&1; then
	sygctl=$(command -v sygctl)
else
	echo "launch_container.sh: sygctl is not built: run 'make build' in $repo (it writes bin/sygctl), or put sygctl on PATH" >&2
	exit 125
fi

# sygctl resolves the repository's relative paths (the Dockerfile in
# container/) from the repository root.
cd "$repo"
if [ $# -eq 0 ]; then
	exec "$sygctl" launch
fi
exec "$sygctl" launch -- "$@"
