#!/usr/bin/env bash
# spack-install: installs the Zephyr Spack environment into the project's
# persistent store, by running pkg/zephyr/build.sh with the environment
# directory on the store (build.sh's default too). The .zephyr-installed
# marker the activation scripts look for is written only once the install
# succeeded (build.sh writes it too; this one records the source used).
#
# usage: spack-install [SPACK_INSTALL_ARGS...]     e.g. spack-install -j 32
#
#   ZEPHYR_ENV_SRC    directory with build.sh and spack_src.yaml; default: pkg/zephyr
#                     of the git checkout holding the current directory, else
#                     /workspace/pkg/zephyr
#   ZEPHYR_SPACK_ENV  the environment directory (default /opt/spack_store/envs/zephyr)
#
# The store is shared by every container of the project, so installs are
# serialized with a lock file; a second run waits for the first.
set -euo pipefail

log() { printf 'spack-install: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

src=${ZEPHYR_ENV_SRC:-}
if [ -z "$src" ]; then
	src=/workspace/pkg/zephyr
	if top=$(git rev-parse --show-toplevel 2>/dev/null) && [ -f "$top/pkg/zephyr/spack_src.yaml" ]; then
		src=$top/pkg/zephyr
	fi
fi
env_dir=${ZEPHYR_SPACK_ENV:-/opt/spack_store/envs/zephyr}

if [ ! -x "$src/build.sh" ] || [ ! -f "$src/spack_src.yaml" ]; then
	die "no build.sh and spack_src.yaml in $src: run spack-install from inside the repository checkout, or set ZEPHYR_ENV_SRC to its pkg/zephyr directory"
fi
if ! mkdir -p "$env_dir" 2>/dev/null || [ ! -w "$env_dir" ]; then
	die "cannot write $env_dir as $(id -un): the store is not mounted writable for this user"
fi

exec 9>"$env_dir/.install.lock"
if ! flock -n 9; then
	log "another spack-install is running for this project; waiting for it"
	flock 9
fi

rm -f "$env_dir/.zephyr-installed"
"$src/build.sh" "$env_dir" "$@"
{
	echo "installed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "source: $src"
	echo "lock-sha256: $(sha256sum "$env_dir/spack.lock" | cut -d' ' -f1)"
} >"$env_dir/.zephyr-installed"
log "done. New ssh (login) shells activate it; in this shell run: . spack-env-activate"
