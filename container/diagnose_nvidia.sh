#!/usr/bin/env bash
# diagnose_nvidia.sh (diagnose-nvidia; nvidia-diagnostics is the old name):
# what this container can see of the NVIDIA GPUs. Runs in the container; the
# host-side counterpart is container/inspect_nvidia_setup.sh.
#
# Prints the NVIDIA environment, the device nodes, nvidia-smi's inventory
# (-L, a per-GPU query and the -q summary: driver and CUDA versions), the
# CUDA toolkit and cuDNN in the image, and the cuDNN that torch actually loads
# (its version and the libcudnn file mapped into the process: the image's apt
# cuDNN and Spack's can differ, see NVIDIA_FIXES.md). The last line is the verdict.
#
# Exit: 0 at least one GPU usable through nvidia-smi; 1 none (the reason is said).
set -uo pipefail

section() { printf '\n== %s ==\n' "$1"; }
verdict() {
	printf '\nRESULT: %s\n' "$1"
	exit "$2"
}

section "Environment"
for v in NVIDIA_VISIBLE_DEVICES NVIDIA_DRIVER_CAPABILITIES CUDA_VISIBLE_DEVICES CUDA_VERSION NV_CUDNN_VERSION; do
	printf '%-27s %s\n' "$v" "${!v-(unset)}"
done

section "Device nodes"
shopt -s nullglob
nodes=(/dev/nvidia*)
shopt -u nullglob
if [ ${#nodes[@]} -eq 0 ]; then
	echo "no /dev/nvidia* device nodes"
else
	ls -l "${nodes[@]}"
fi

section "CUDA toolkit"
if command -v nvcc >/dev/null 2>&1; then
	nvcc --version | tail -n 2
else
	echo "nvcc not on PATH"
fi
cudnn_header=""
for h in /usr/include/cudnn_version.h /usr/include/x86_64-linux-gnu/cudnn_version_v9.h /usr/local/cuda/include/cudnn_version.h; do
	if [ -f "$h" ]; then
		cudnn_header=$h
		break
	fi
done
if [ -n "$cudnn_header" ]; then
	awk '/#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) / {v[$2]=$3} END {printf "cuDNN %s.%s.%s (%s)\n", v["CUDNN_MAJOR"], v["CUDNN_MINOR"], v["CUDNN_PATCHLEVEL"], FILENAME}' "$cudnn_header"
else
	echo "no cudnn_version.h found"
fi

section "cuDNN loaded by torch"
py=$(command -v python3 || command -v python || true)
if [ -z "$py" ]; then
	echo "no python on PATH: cannot ask torch which cuDNN it loads"
else
	"$py" - <<'PY' 2>&1 || true
try:
    import torch
except Exception as e:
    print("torch not importable (%s: %s): no torch cuDNN to report" % (type(e).__name__, e))
    raise SystemExit(0)
print("torch %s from %s" % (torch.__version__, torch.__file__))
try:
    v = torch.backends.cudnn.version()
except Exception as e:
    v = "error: %s" % e
print("torch.backends.cudnn.version() = %s" % v)
libs = set()
with open("/proc/self/maps") as m:
    for line in m:
        parts = line.split()
        if len(parts) >= 6 and "libcudnn" in parts[-1]:
            libs.add(parts[-1])
if libs:
    for lib in sorted(libs):
        print("loaded: %s" % lib)
else:
    print("no libcudnn mapped into the process")
PY
fi

section "nvidia-smi"
if ! command -v nvidia-smi >/dev/null 2>&1; then
	echo "nvidia-smi not found: the NVIDIA container runtime injects it only when the container"
	echo "is started with GPUs (gateway: project gpus != \"none\"; launcher: SYGALDRY_GPU not false)"
	echo "and NVIDIA_DRIVER_CAPABILITIES includes utility."
	verdict "FAIL no GPU visible in this container" 1
fi
if ! list=$(nvidia-smi -L 2>&1); then
	echo "$list"
	echo "nvidia-smi failed: no driver reachable from this container, or no GPU attached."
	verdict "FAIL nvidia-smi could not talk to the driver" 1
fi
echo "$list"
count=$(grep -c '^GPU [0-9]' <<<"$list" || true)
if [ "$count" -eq 0 ]; then
	verdict "FAIL nvidia-smi lists no GPU" 1
fi
echo
fields=index,name,uuid,pci.bus_id,memory.total,memory.used,utilization.gpu
# compute_cap and mig.mode.current need a recent driver; fall back without them.
nvidia-smi --query-gpu="$fields,compute_cap,mig.mode.current" --format=csv 2>/dev/null ||
	nvidia-smi --query-gpu="$fields" --format=csv
echo
# The -q summary: driver version and the highest CUDA version the driver supports.
nvidia-smi -q | grep -E '^(Driver Version|CUDA Version|Attached GPUs) *:|^ *Product Name *:' | sed 's/^ *//'
verdict "PASS $count GPU(s) visible" 0
