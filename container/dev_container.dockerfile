# The Zephyr dev image (default tag sygaldry/zephyr:base): CUDA 12.9.1 with
# cuDNN, Spack, Bazel, Python and Rust, for user kvothe (uid 1000).
#
# Build context: this directory (container/), as the gateway and
# `sygctl launch` build it:
#   docker build -f container/dev_container.dockerfile -t sygaldry/zephyr:base container
#
# It needs network access to a registry (the base image), to Ubuntu's and the
# deadsnakes PPA's apt archives, to GitHub (Spack, Bazel) and to the Rust
# toolchain servers. It uses only what the classic builder and BuildKit both
# accept (no `# syntax` line, no heredocs, no COPY --chmod), so the Docker API
# build the gateway does works with or without BuildKit.
#
# Base: Ubuntu 24.04 rather than 22.04 because its apt archive ships rustup
# (so RUST_VERSION installs through rustup without a curl-piped installer),
# its gcc 13 is within CUDA 12.9's supported host compilers, and it has glibc
# 2.39 (VS Code Remote-SSH needs >= 2.28) and support until 2029.
#
# There is no ENTRYPOINT: the gateway sets its own (the agent); CMD is the
# interactive default shell for `docker run -it`.
FROM nvidia/cuda:12.9.1-cudnn-devel-ubuntu24.04

# Pinned versions. Override them per build with build args: [defaults] or
# [projects.NAME] build_args in the gateway config, or SYGALDRY_BUILD_ARG_<NAME>
# in launch_container.sh's / sygctl launch's environment (docker build
# --build-arg by hand). The image records what it was built with as
# ZEPHYR_<NAME> and io.sygaldry.zephyr.* labels.
ARG BAZEL_VERSION=6.4.0
ARG PYTHON_VERSION=3.13
ARG RUST_VERSION=1.79.0
# Spack release tag; packages come from spack-packages (split out of Spack in
# v1.0), pinned to a commit of its releases/v2025.11 branch, the branch Spack
# v1.1 uses by default. Pin both; never a branch.
ARG SPACK_VERSION=v1.1.1
ARG SPACK_PACKAGES_COMMIT=119680aeee8ea802c6111b7167583bddef97e82f
ARG DEBIAN_FRONTEND=noninteractive

LABEL org.opencontainers.image.title="zephyr" \
      org.opencontainers.image.description="Sygaldry Zephyr dev image: CUDA 12.9.1 + cuDNN, Spack, Bazel, Python, Rust" \
      io.sygaldry.zephyr.bazel="${BAZEL_VERSION}" \
      io.sygaldry.zephyr.python="${PYTHON_VERSION}" \
      io.sygaldry.zephyr.rust="${RUST_VERSION}" \
      io.sygaldry.zephyr.spack="${SPACK_VERSION}" \
      io.sygaldry.zephyr.spack-packages="${SPACK_PACKAGES_COMMIT}"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV LANG=C.UTF-8 \
    LC_ALL=C.UTF-8 \
    TZ=Etc/UTC \
    SPACK_ROOT=/opt/spack \
    RUSTUP_HOME=/opt/rust/rustup \
    CARGO_HOME=/opt/rust/cargo \
    ZEPHYR_SPACK_ENV=/opt/spack_store/envs/zephyr \
    ZEPHYR_BAZEL_VERSION=${BAZEL_VERSION} \
    ZEPHYR_PYTHON_VERSION=${PYTHON_VERSION} \
    ZEPHYR_RUST_VERSION=${RUST_VERSION}
# Spack, then the two places rustup's proxies can live (Ubuntu's rustup
# package, a cargo home), then the base image's CUDA and system paths.
ENV PATH=/opt/spack/bin:/opt/rust/cargo/bin:/usr/lib/rustup/bin:${PATH}

# System packages. VS Code Remote-SSH needs bash, tar, curl/wget, procps,
# glibc >= 2.28 and libstdc++; rsync and openssh-client move artifacts, and
# openssh-sftp-server serves sftp and scp (the agent runs it, as sshd would;
# an image without it gets the agent's own, slower sftp server); the
# compilers, patch, file, bzip2/xz/zstd/unzip, gnupg and git are Spack's
# prerequisites; python3 (3.12) runs Spack itself.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      bash ca-certificates curl wget tar gzip bzip2 xz-utils zstd unzip zip file patch \
      git git-lfs openssh-client openssh-sftp-server rsync procps util-linux less vim-tiny tmux htop jq \
      build-essential gfortran pkg-config gnupg locales tzdata \
      python3 python3-venv software-properties-common rustup \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      "python${PYTHON_VERSION}" "python${PYTHON_VERSION}-venv" "python${PYTHON_VERSION}-dev" \
 && ln -sf "/usr/bin/python${PYTHON_VERSION}" /usr/local/bin/python \
 && "python${PYTHON_VERSION}" --version \
 && rm -rf /var/lib/apt/lists/*

# The user. Ubuntu 24.04 images ship a user "ubuntu" with uid 1000; remove it
# so kvothe gets 1000, the uid the host storage is owned by.
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu 2>/dev/null || userdel ubuntu; fi \
 && if getent group 1000 >/dev/null; then groupdel "$(getent group 1000 | cut -d: -f1)"; fi \
 && groupadd --gid 1000 kvothe \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/kvothe --shell /bin/bash kvothe \
 && mkdir -p /workspace /opt/spack_store /opt/bazel_cache /config \
 && chown kvothe:kvothe /home/kvothe /workspace /opt/spack_store /opt/bazel_cache /config

# Bazel, checked against the checksum published with the release.
RUN arch=$(uname -m) \
 && case "$arch" in x86_64) ;; aarch64) arch=arm64 ;; *) echo "no Bazel build for $arch" >&2; exit 1 ;; esac \
 && url="https://github.com/bazelbuild/bazel/releases/download/${BAZEL_VERSION}/bazel-${BAZEL_VERSION}-linux-${arch}" \
 && curl -fsSL -o /tmp/bazel "$url" \
 && curl -fsSL -o /tmp/bazel.sha256 "$url.sha256" \
 && echo "$(cut -d' ' -f1 /tmp/bazel.sha256)  /tmp/bazel" | sha256sum -c - \
 && install -m 0755 /tmp/bazel /usr/local/bin/bazel \
 && rm -f /tmp/bazel /tmp/bazel.sha256 \
 && printf '%s\n' \
      '# Shared by every container of the project (<storage_root>/<project>/bazel_cache).' \
      '# Both caches are safe to share between concurrent builds; output bases stay in ~/.cache/bazel.' \
      'build --disk_cache=/opt/bazel_cache/disk' \
      'build --repository_cache=/opt/bazel_cache/repository' \
      > /etc/bazel.bazelrc

# Rust through Ubuntu's rustup, toolchain pinned; the check fails the build if
# the proxies are not where PATH expects them.
RUN rustup toolchain install "${RUST_VERSION}" --profile minimal --component rustfmt --component clippy \
 && rustup default "${RUST_VERSION}" \
 && rustc --version | grep -F "rustc ${RUST_VERSION} " \
 && cargo --version \
 && chown -R kvothe:kvothe /opt/rust

# Spack at a release tag, with the builtin package repository cloned at a
# pinned commit and configured as a local path, so Spack never clones it at
# run time. Installs, sources and the environment go to the persistent store.
RUN case "${SPACK_VERSION}" in v[0-9]*.[0-9]*.[0-9]*) ;; *) echo "SPACK_VERSION must be a release tag (vX.Y.Z), not ${SPACK_VERSION}" >&2; exit 1 ;; esac \
 && git clone --quiet --depth 1 --branch "${SPACK_VERSION}" https://github.com/spack/spack.git /opt/spack \
 && git init --quiet /opt/spack-packages \
 && git -C /opt/spack-packages fetch --quiet --depth 1 https://github.com/spack/spack-packages.git "${SPACK_PACKAGES_COMMIT}" \
 && git -C /opt/spack-packages checkout --quiet FETCH_HEAD \
 && printf '%s\n' \
      'repos:' \
      '  builtin: /opt/spack-packages/repos/spack_repo/builtin' \
      > /opt/spack/etc/spack/repos.yaml \
 && printf '%s\n' \
      'config:' \
      '  install_tree:' \
      '    root: /opt/spack_store' \
      '  source_cache: /opt/spack_store/cache/source' \
      > /opt/spack/etc/spack/config.yaml \
 && chown -R kvothe:kvothe /opt/spack /opt/spack-packages

# Our scripts: entrypoints, NVIDIA diagnostics, CUDA validation.
COPY entrypoints/ /opt/sygaldry/entrypoints/
COPY diagnose_nvidia.sh /opt/sygaldry/nvidia/
COPY validation/ /opt/sygaldry/validation/
RUN chmod 0755 /opt/sygaldry/entrypoints/* /opt/sygaldry/nvidia/* /opt/sygaldry/validation/* \
 && ln -s /opt/sygaldry/entrypoints/spack-env-activate /usr/local/bin/spack-env-activate \
 && ln -s /opt/sygaldry/entrypoints/spack-install.sh /usr/local/bin/spack-install \
 && ln -s /opt/sygaldry/nvidia/diagnose_nvidia.sh /usr/local/bin/diagnose-nvidia \
 && ln -s /opt/sygaldry/nvidia/diagnose_nvidia.sh /usr/local/bin/nvidia-diagnostics \
 && ln -s /opt/sygaldry/validation/validate_cuda.sh /usr/local/bin/validate-cuda \
 && install -m 0644 /opt/sygaldry/entrypoints/zephyr-profile.sh /etc/profile.d/zephyr.sh

USER kvothe
ENV HOME=/home/kvothe \
    USER=kvothe \
    SHELL=/bin/bash
WORKDIR /workspace
RUN spack --version

CMD ["/opt/sygaldry/entrypoints/default.sh"]
