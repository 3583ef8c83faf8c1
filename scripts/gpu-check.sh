#!/usr/bin/env bash
# gpu-check: the checks that need real NVIDIA GPUs, for a GPU machine that
# has no Go, no Docker and no network. `make gpu-check` puts this script,
# the prebuilt test binary (gpu.test) and the CUDA validation scripts in
# out/gpu-check/; copy that directory over and run
#
#   bash gpu-check.sh            # PYTHON=... names the Python with Torch and JAX
#
# It runs:
#   1. TestRealNVML: our NVML inventory against nvidia-smi (index, UUID, name,
#      memory total), then the XID health watcher for SYGALDRY_GPU_CHECK_WATCH
#      (default 5s);
#   2. TestRealDeviceProbe: the agent's GPU probe on this machine's /dev
#      (every /dev/nvidia* node answers ok);
#   3. validate_cuda.sh: Torch and JAX on the GPUs.
# Exit: 0 all passed; 1 otherwise. Each part prints PASS or FAIL.
set -uo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
rc=0

echo "== host"
uname -a
nvidia-smi --query-gpu=index,uuid,name,memory.total,driver_version --format=csv || echo "nvidia-smi failed"

echo
echo "== NVML inventory and health (TestRealNVML)"
if SYGALDRY_GPU_CHECK=1 "$here/gpu.test" -test.run '^TestRealNVML$' -test.v -test.count=1; then
	echo "RESULT nvml: PASS"
else
	echo "RESULT nvml: FAIL"
	rc=1
fi

echo
echo "== the GPU probe on this machine's devices (TestRealDeviceProbe)"
if SYGALDRY_GPU_CHECK=1 "$here/gpu.test" -test.run '^TestRealDeviceProbe$' -test.v -test.count=1; then
	echo "RESULT probe: PASS"
else
	echo "RESULT probe: FAIL"
	rc=1
fi

echo
echo "== CUDA from Torch and JAX (validate_cuda.sh)"
bash "$here/validation/validate_cuda.sh"
case $? in
0) ;;
*) rc=1 ;;
esac

echo
if [ "$rc" -eq 0 ]; then echo "RESULT gpu-check: PASS"; else echo "RESULT gpu-check: FAIL"; fi
exit "$rc"
