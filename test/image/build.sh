#!/usr/bin/env bash
# Builds a small Debian image without a registry: debootstrap a rootfs from the
# machine's own apt mirror, add the container user, and `docker import` it.
# Used by the integration tests and by `make run` (the dev image); the real
# CUDA image (container/dev_container.dockerfile) needs a registry to build.
#
# usage: test/image/build.sh TAG
set -euo pipefail

# rev goes up whenever the image's contents change (a package added), so an
# image built by an older version of this script is rebuilt, not reused.
rev=3

tag=${1:?usage: build.sh TAG}
# Test packages run in parallel and may all ask for the image at once: build
# it once, the others wait and then find it.
exec 9>"/tmp/sygaldry-image-build.lock"
flock 9
have=$(docker image inspect -f '{{index .Config.Labels "sygaldry.image-rev"}}' "$tag" 2>/dev/null || true)
if [ "$have" = "$rev" ]; then
	echo "image $tag already present"
	exit 0
fi
if [ -n "$have" ] || docker image inspect "$tag" >/dev/null 2>&1; then
	echo "image $tag is from an older build.sh (rev ${have:-1}, want $rev): rebuilding"
fi

# The mirror and suite come from this machine's apt configuration, never from
# the repository: deb822 sources first, then the classic one-line format.
mirror="" suite=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
	mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
	suite=$(awk '/^Suites:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
	read -r mirror suite < <(awk '$1 == "deb" {print $2, $3; exit}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ] || [ -z "$suite" ]; then
	echo "build.sh: cannot find a Debian mirror in /etc/apt" >&2
	exit 1
fi
if ! command -v debootstrap >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "installing debootstrap (apt-get install debootstrap)"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
	fi
	command -v debootstrap >/dev/null || { echo "build.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
fi

work=$(mktemp -d /var/tmp/sygaldry-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

# git: the per-user git identity tests commit inside containers;
# openssh-sftp-server: what sftp and scp run on, as in the Zephyr image.
packages=bash,coreutils,procps,python3,rsync,openssh-client,openssh-sftp-server,less,vim-tiny,tmux,tar,gzip,ca-certificates,locales,git
echo "debootstrap $suite into $rootfs (packages: $packages)"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
	tail -n 30 "$work/debootstrap.log" >&2
	exit 1
}

chroot "$rootfs" /usr/sbin/useradd --create-home --uid 1000 --user-group --shell /bin/bash kvothe
chroot "$rootfs" /bin/sh -c 'echo "C.UTF-8 UTF-8" >> /etc/locale.gen; echo "en_US.UTF-8 UTF-8" >> /etc/locale.gen; locale-gen >/dev/null 2>&1 || true'
mkdir -p "$rootfs/workspace" "$rootfs/opt/spack_store" "$rootfs/opt/bazel_cache" "$rootfs/config"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/tmp/*

tar -C "$rootfs" -c . | docker import \
	-c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	-c 'ENV LANG=C.UTF-8' \
	-c 'CMD ["/bin/bash"]' \
	-c "LABEL sygaldry.image-rev=$rev" \
	- "$tag" >/dev/null
echo "built $tag"
