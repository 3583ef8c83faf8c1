#!/usr/bin/env bash
# inspect_nvidia_setup.sh: can this HOST give the Zephyr container (CUDA
# 12.9.1) its GPUs? Runs on the host, not in the container (the in-container
# counterpart is diagnose_nvidia.sh). One line per check,
# "ok|FAIL  CHECK: what was found; what to do":
#
#   driver     the NVIDIA kernel driver is loaded
#   driver-version  it is at least 575.51.03, what CUDA 12.9 needs on Linux
#              (NVIDIA's CUDA 12.9 release notes; 12.9 Update 1 lists 575.57.08)
#   toolkit    the NVIDIA Container Toolkit is installed (nvidia-ctk,
#              nvidia-container-runtime or nvidia-container-cli)
#   docker     the NVIDIA runtime or an NVIDIA CDI spec is registered with Docker
#   sygctl doctor  its own checks (NVML, the driver's CUDA against the
#              Dockerfile's, the engine), when sygctl is available
#   container  a GPU is visible in a throwaway container; only run when every
#              check before it passed
#
# Exit: 0 every check passed; 1 one failed. See NVIDIA_FIXES.md for fixes.
#
# Environment:
#   SYGCTL                 sygctl binary (default: bin/sygctl of this checkout,
#                          else PATH; "none": skip sygctl doctor)
#   INSPECT_NVIDIA_IMAGE   image of the throwaway container
#                          (default nvidia/cuda:12.9.1-base-ubuntu24.04)
#   INSPECT_NVIDIA_ROOT    where the host's / is, for /proc and /sys (tests)
set -uo pipefail

min_driver=575.51.03
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
root=${INSPECT_NVIDIA_ROOT:-}
image=${INSPECT_NVIDIA_IMAGE:-nvidia/cuda:12.9.1-base-ubuntu24.04}
failed=0

ok() { printf 'ok    %s: %s\n' "$1" "$2"; }
fail() {
	printf 'FAIL  %s: %s; %s\n' "$1" "$2" "$3"
	failed=1
}

# 1. The driver and its version.
driver=""
if [ -r "$root/proc/driver/nvidia/version" ]; then
	driver=$(sed -n 's/.*Kernel Module\( for [^ ]*\)\{0,1\}[[:space:]]\{1,\}\([0-9][0-9.]*\).*/\2/p' "$root/proc/driver/nvidia/version" | head -n 1)
fi
if [ -z "$driver" ] && [ -r "$root/sys/module/nvidia/version" ]; then
	driver=$(tr -d '[:space:]' <"$root/sys/module/nvidia/version")
fi
if [ -z "$driver" ] && [ ! -d "$root/sys/module/nvidia" ]; then
	echo "no NVIDIA driver: the NVIDIA kernel module is not loaded on this host (no /proc/driver/nvidia/version, no /sys/module/nvidia)."
	fail driver "not loaded" "install the NVIDIA driver ($min_driver or newer for CUDA 12.9) and load it (modprobe nvidia)"
elif [ -z "$driver" ]; then
	ok driver "NVIDIA kernel module loaded"
	fail driver-version "the driver's version is not readable" "check /proc/driver/nvidia/version; CUDA 12.9 needs $min_driver or newer"
else
	ok driver "NVIDIA kernel driver $driver loaded"
	if [ "$(printf '%s\n%s\n' "$min_driver" "$driver" | sort -V | head -n 1)" = "$min_driver" ]; then
		ok driver-version "$driver >= $min_driver (CUDA 12.9)"
	else
		fail driver-version "$driver is older than $min_driver, which CUDA 12.9 needs (containers fail with 'unsatisfied condition: cuda>=12.9')" "update the host's NVIDIA driver (NVIDIA_FIXES.md)"
	fi
fi

# 2. The NVIDIA Container Toolkit.
toolkit=""
for t in nvidia-ctk nvidia-container-runtime nvidia-container-cli; do
	if p=$(command -v "$t"); then
		toolkit=$p
		break
	fi
done
if [ -n "$toolkit" ]; then
	ok toolkit "NVIDIA Container Toolkit: $toolkit ($("$toolkit" --version 2>/dev/null | head -n 1))"
else
	fail toolkit "the NVIDIA Container Toolkit is not installed (no nvidia-ctk, nvidia-container-runtime or nvidia-container-cli on PATH)" "install nvidia-container-toolkit from NVIDIA's package repository"
fi

# 3. Registered with Docker: the nvidia runtime, or an NVIDIA CDI spec.
if ! command -v docker >/dev/null 2>&1; then
	fail docker "no docker command" "install Docker"
elif ! runtimes=$(docker info --format '{{json .Runtimes}}' 2>&1); then
	fail docker "docker info failed: ${runtimes//$'\n'/ }" "start dockerd, or run this as a user who may use it"
else
	cdi=""
	cdidirs=$(docker info --format '{{range .CDISpecDirs}}{{.}} {{end}}' 2>/dev/null || true)
	for d in ${cdidirs:-/etc/cdi /var/run/cdi}; do
		for f in "$d"/nvidia*.yaml "$d"/nvidia*.json; do
			if [ -f "$f" ]; then
				cdi=$f
				break 2
			fi
		done
	done
	if [[ $runtimes == *'"nvidia"'* ]]; then
		ok docker "the nvidia runtime is registered with Docker${cdi:+ (CDI spec $cdi too)}"
	elif [ -n "$cdi" ]; then
		ok docker "NVIDIA CDI spec $cdi"
	else
		fail docker "Docker has no nvidia runtime and no NVIDIA CDI spec" "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker (or nvidia-ctk cdi generate)"
	fi
fi

# 4. sygctl doctor: NVML, the driver's CUDA against the Dockerfile's, the engine.
sygctl=${SYGCTL:-}
if [ -z "$sygctl" ]; then
	if [ -x "$repo/bin/sygctl" ]; then
		sygctl=$repo/bin/sygctl
	else
		sygctl=$(command -v sygctl || true)
	fi
fi
if [ "$sygctl" = none ]; then
	:
elif [ -z "$sygctl" ] || [ ! -x "$sygctl" ]; then
	echo "(sygctl not found: skipping sygctl doctor; make build puts it in bin/)"
elif ! "$sygctl" doctor -h >/dev/null 2>&1; then
	echo "($sygctl has no doctor command, an older build: skipping sygctl doctor; make build rebuilds it)"
else
	echo "--- $sygctl doctor"
	if ! "$sygctl" doctor --dockerfile "$repo/container/dev_container.dockerfile"; then
		failed=1
	fi
	echo "---"
fi

# 5. A GPU in a throwaway container, only when everything above passed.
if [ "$failed" -ne 0 ]; then
	echo "(skipping the throwaway-container check: fix the failures above first)"
elif out=$(docker run --rm --gpus all "$image" nvidia-smi -L 2>&1) && grep -q '^GPU [0-9]' <<<"$out"; then
	ok container "$(grep -c '^GPU [0-9]' <<<"$out") GPU(s) visible in a throwaway $image container"
else
	fail container "no GPU visible in a throwaway $image container: ${out//$'\n'/ }" "see NVIDIA_FIXES.md"
fi

exit "$failed"
