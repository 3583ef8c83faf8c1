#!/usr/bin/env bash
# validate-cuda: runs the Torch and the JAX CUDA validations (validate_torch.py,
# validate_jax.py) and sums them up.
#
# Run it inside the Zephyr environment:  spack-env-activate validate-cuda
# PYTHON names the interpreter (default: python3 on PATH).
#
# Exit: 0 both passed; 1 a check failed; 2 a framework (or Python) is missing
# and nothing failed.
set -uo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
python=${PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
	echo "MISSING: no $python on PATH"
	echo "RESULT cuda: MISSING"
	exit 2
fi
echo "INFO: $("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

rc_all=0
declare -A result
for fw in torch jax; do
	echo
	"$python" "$here/validate_$fw.py"
	rc=$?
	case $rc in
	0) result[$fw]=PASS ;;
	2) result[$fw]=MISSING ;;
	*) result[$fw]=FAIL ;;
	esac
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then
		rc_all=1
	elif [ "$rc" -eq 2 ] && [ "$rc_all" -eq 0 ]; then
		rc_all=2
	fi
done

echo
echo "SUMMARY: torch ${result[torch]}, jax ${result[jax]}"
case $rc_all in
0) echo "RESULT cuda: PASS" ;;
1) echo "RESULT cuda: FAIL" ;;
2) echo "RESULT cuda: MISSING" ;;
esac
exit "$rc_all"
