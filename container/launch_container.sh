#!/usr/bin/env bash
# Starts the Zephyr dev container on this host: a thin wrapper over
# `sygctl launch`, which builds the container from the same Go spec builder as
# the gateway (same image, user, mounts, labels, GPUs).
#
# usage: container/launch_container.sh                          activated interactive shell
#        container/launch_container.sh --entrypoint NAME [ARGS...]  run entrypoints/NAME.sh
#        container/launch_container.sh CMD [ARGS...]            run CMD, activated, exit with its code
#
# Every run goes through an entrypoint script of this checkout
# (container/entrypoints/NAME.sh; default.sh unless --entrypoint names
# another): its text is handed to bash in the container, so the checkout's
# version runs in any image (the zephyr image also has copies in
# /opt/sygaldry/entrypoints for its CMD and for ssh sessions). default.sh
# activates the Zephyr Spack environment when it is installed, then runs CMD,
# or an interactive shell.
#
# Run from inside a git checkout, the checkout (its top level) is mounted at
# /workspace and commands start there (sygctl launch --workspace).
#
# Environment (read by sygctl launch):
#   SYGALDRY_PROJECT_ID    project name (default zephyr)
#   SYGALDRY_IMAGE         image (default sygaldry/zephyr:base; built if missing)
#   SYGALDRY_GPU=false     start without GPUs
#   SYGALDRY_STORAGE_ROOT  host storage root (default /mnt/data_infra/zephyr_container_infra)
#   SYGALDRY_CONFIG        gateway config to take project settings from (optional)
#   SYGALDRY_BUILD_ARG_<NAME>=VALUE  build arg NAME when the image is built
#                          (BAZEL_VERSION, PYTHON_VERSION, RUST_VERSION), over
#                          the config's build_args
#   SYGCTL                 the sygctl binary to use (default: bin/sygctl, else PATH)
set -euo pipefail

repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
entrypoints=$repo/container/entrypoints

# The caller's checkout, before anything changes directory.
top=$(git -C "$PWD" rev-parse --show-toplevel 2>/dev/null) || top=""

# The entrypoints: the executable *.sh files (zephyr-profile.sh is the login
# profile, not one).
available() {
	local f names=()
	for f in "$entrypoints"/*.sh; do
		[ -x "$f" ] && names+=("$(basename "$f" .sh)")
	done
	echo "${names[*]}"
}

entry=default
if [ "${1:-}" = --entrypoint ]; then
	if [ $# -lt 2 ] || [ -z "$2" ]; then
		echo "launch_container.sh: --entrypoint needs a NAME; available: $(available)" >&2
		exit 2
	fi
	entry=$2
	shift 2
fi
script=$entrypoints/$entry.sh
if [[ ! $entry =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || [ ! -f "$script" ] || [ ! -x "$script" ]; then
	echo "launch_container.sh: no entrypoint '$entry' in $entrypoints; available: $(available)" >&2
	exit 2
fi

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

launch=(launch)
if [ -n "$top" ] && "$sygctl" launch --help 2>&1 | grep -q -- '-workspace'; then
	launch+=(--workspace "$top")
fi

# sygctl resolves the repository's relative paths (the Dockerfile in
# container/) from the repository root.
cd "$repo"
exec "$sygctl" "${launch[@]}" -- bash -c "$(cat "$script")" "$entry.sh" "$@"
