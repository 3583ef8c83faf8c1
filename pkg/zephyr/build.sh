#!/usr/bin/env bash
# Installs the Zephyr Spack environment.
#
# usage: pkg/zephyr/build.sh [ENV_DIR [SPACK_INSTALL_ARGS...]]
#
#   ENV_DIR  the Spack environment directory (default: $ZEPHYR_SPACK_ENV, else
#            /opt/spack_store/envs/zephyr): the one place spack-env-activate,
#            default.sh and the login profile activate, on the project's
#            persistent store, so `cd pkg/zephyr && ./build.sh` and
#            `spack-install` install the same environment.
#   SPACK_INSTALL_ARGS are passed to `spack install` (e.g. -j 32).
#
# What it does:
#   1. spack.yaml := spack_src.yaml, copied only when missing or different (so a
#      rerun does not touch the file Spack watches).
#   2. With a spack.lock: install exactly what the lock says. `spack install
#      --only-concrete` in an environment installs the concrete specs read from
#      spack.lock and concretizes nothing, so the DAG (versions, variants,
#      hashes) is the locked one even if newer package recipes would pick
#      something else.
#   3. Without one: `spack concretize` (which writes spack.lock), then the same
#      install. Commit the new pkg/zephyr/spack.lock to pin the environment, and
#      regenerate pkg/zephyr/DEPENDENCY_GRAPH.md from it (see that file).
#   4. After a successful install, ENV_DIR/.zephyr-installed: the marker the
#      activation scripts look for (removed while an install runs).
#
# SPACK names the spack executable (default: `spack` on PATH).
set -euo pipefail
shopt -s inherit_errexit

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() {
	log "$*"
	exit 1
}

src_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
env_dir=${1:-${ZEPHYR_SPACK_ENV:-/opt/spack_store/envs/zephyr}}
if [ $# -gt 0 ]; then
	shift
fi
spack=${SPACK:-spack}

command -v "$spack" >/dev/null 2>&1 ||
	die "'$spack' not found: run this inside the zephyr image, or put Spack's bin/ on PATH (or set SPACK)"
[ -f "$src_dir/spack_src.yaml" ] || die "$src_dir/spack_src.yaml is missing"

mkdir -p "$env_dir" || die "cannot create $env_dir (is the store mounted writable?)"
env_dir=$(cd "$env_dir" && pwd)
rm -f "$env_dir/.zephyr-installed"

# copy_if_changed SRC DST: copy SRC over DST unless DST already has the same
# bytes. Prints "changed" when it wrote DST over a different file.
copy_if_changed() {
	if [ -f "$2" ] && cmp -s "$1" "$2"; then
		return 0
	fi
	if [ -f "$2" ]; then
		echo changed
	fi
	cp "$1" "$2.tmp.$$"
	mv -f "$2.tmp.$$" "$2"
}

manifest_changed=$(copy_if_changed "$src_dir/spack_src.yaml" "$env_dir/spack.yaml")
if [ -n "$manifest_changed" ]; then
	log "spack.yaml updated from spack_src.yaml"
fi

# Building outside the source directory: the committed lock is the one to
# honour. Without a committed lock, a lock left in ENV_DIR by an earlier run is
# kept only while the manifest it was concretized from is unchanged.
if [ "$env_dir" != "$src_dir" ]; then
	if [ -f "$src_dir/spack.lock" ]; then
		copy_if_changed "$src_dir/spack.lock" "$env_dir/spack.lock" >/dev/null
	elif [ -n "$manifest_changed" ] && [ -f "$env_dir/spack.lock" ]; then
		log "spack_src.yaml changed and no lock is committed: dropping $env_dir/spack.lock to concretize afresh"
		rm -f "$env_dir/spack.lock"
	fi
elif [ -n "$manifest_changed" ] && [ -f "$env_dir/spack.lock" ]; then
	log "warning: spack_src.yaml changed but spack.lock was kept; the install follows the lock."
	log "warning: to pick up the change, delete spack.lock and rerun (this re-concretizes)."
fi

run_spack() {
	log "+ $spack $*"
	"$spack" "$@"
}

if [ -f "$env_dir/spack.lock" ]; then
	log "installing from $env_dir/spack.lock (no concretization)"
else
	log "no spack.lock: concretizing $env_dir/spack.yaml"
	run_spack -e "$env_dir" concretize
	[ -f "$env_dir/spack.lock" ] || die "spack concretize wrote no $env_dir/spack.lock"
	if [ "$env_dir" != "$src_dir" ]; then
		if cp "$env_dir/spack.lock" "$src_dir/spack.lock" 2>/dev/null; then
			log "wrote $src_dir/spack.lock: commit it to pin the environment"
		else
			log "could not write $src_dir/spack.lock; the lock is $env_dir/spack.lock"
		fi
	else
		log "wrote $env_dir/spack.lock: commit it to pin the environment"
	fi
fi

run_spack -e "$env_dir" install --only-concrete "$@"
{
	echo "installed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "source: $src_dir"
	echo "lock-sha256: $(sha256sum "$env_dir/spack.lock" | cut -d' ' -f1)"
} >"$env_dir/.zephyr-installed"
log "installed the environment in $env_dir"
