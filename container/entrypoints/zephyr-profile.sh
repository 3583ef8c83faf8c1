# shellcheck shell=sh
# /etc/profile.d/zephyr.sh in the zephyr image, read by login shells (the
# gateway's ssh shells are login shells). POSIX sh: dash reads it too.

# Login shells may reset PATH (PAM, /etc/profile): put the image's tool
# directories back.
export SPACK_ROOT="${SPACK_ROOT:-/opt/spack}"
export RUSTUP_HOME="${RUSTUP_HOME:-/opt/rust/rustup}"
export CARGO_HOME="${CARGO_HOME:-/opt/rust/cargo}"
for _zephyr_dir in /usr/local/cuda/bin /usr/lib/rustup/bin "$CARGO_HOME/bin" "$SPACK_ROOT/bin"; do
	case ":$PATH:" in
	*":$_zephyr_dir:"*) ;;
	*) [ -d "$_zephyr_dir" ] && PATH="$_zephyr_dir:$PATH" ;;
	esac
done
unset _zephyr_dir
export PATH

# Interactive login shells get the Zephyr Spack environment once spack-install
# has finished, as default.sh does. It costs one Spack start (about a second);
# ZEPHYR_AUTO_ACTIVATE=0 (e.g. in the project's env) turns it off.
case $- in
*i*)
	_zephyr_env="${ZEPHYR_SPACK_ENV:-/opt/spack_store/envs/zephyr}"
	if [ "${ZEPHYR_AUTO_ACTIVATE:-1}" != 0 ] && [ -z "${SPACK_ENV:-}" ] &&
		[ -f "$_zephyr_env/.zephyr-installed" ] && [ -x "$SPACK_ROOT/bin/spack" ]; then
		if _zephyr_sh=$("$SPACK_ROOT/bin/spack" env activate --sh "$_zephyr_env" 2>/dev/null); then
			eval "$_zephyr_sh"
		else
			echo "zephyr: could not activate $_zephyr_env; try: . spack-env-activate" >&2
		fi
		unset _zephyr_sh
	fi
	unset _zephyr_env
	;;
esac
