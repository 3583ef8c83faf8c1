#!/usr/bin/env bash
# The zephyr image's default command (CMD): an interactive bash, with the
# Zephyr Spack environment activated when it is installed.
#
#   default.sh             interactive shell
#   default.sh CMD ARGS    run CMD the same way (environment activated if installed)
#
# "Installed" means spack-install finished: it leaves .zephyr-installed in the
# environment directory (ZEPHYR_SPACK_ENV, default /opt/spack_store/envs/zephyr).
set -euo pipefail

env_dir=${ZEPHYR_SPACK_ENV:-/opt/spack_store/envs/zephyr}

if [ -f "$env_dir/.zephyr-installed" ]; then
	# Next to this file, else on PATH (launch_container.sh runs this file's
	# text with bash -c, where it has no directory).
	activate=$(dirname "$(readlink -f "${BASH_SOURCE[0]:-/nonexistent}")")/spack-env-activate
	if [ ! -x "$activate" ]; then
		activate=spack-env-activate
	fi
	exec "$activate" "$@"
fi

{
	echo "zephyr: the Spack environment (Torch, JAX, CUDA) is not installed in $env_dir yet."
	echo "zephyr: install it once per project with: spack-install   (it persists in /opt/spack_store)"
} >&2
if [ $# -gt 0 ]; then
	exec "$@"
fi
exec bash -i
