#!/usr/bin/env python3
"""Checks that JAX sees CUDA GPUs and computes on one.

Checks: JAX has `gpu` devices, a matmul placed on the first GPU runs there and
equals the same product computed by NumPy on the CPU.

Prints one PASS/FAIL/SKIP line per check and a RESULT line last.
Exit: 0 all passed, 1 a check failed, 2 jax (or numpy) cannot be imported.
"""

import sys

NAME = "jax"


def main():
    try:
        import numpy as np
        import jax
        import jax.numpy as jnp
    except Exception as e:
        print(f"MISSING {NAME}: cannot import jax/numpy ({type(e).__name__}: {e})")
        print("MISSING jax: run inside the Zephyr environment: spack-env-activate validate-cuda")
        print(f"RESULT {NAME}: MISSING")
        return 2

    try:
        import jaxlib
        jaxlib_version = jaxlib.__version__
    except Exception:
        jaxlib_version = "unknown"
    print(f"INFO {NAME}: jax {jax.__version__}, jaxlib {jaxlib_version}")
    failed = 0

    def report(passed, name, detail):
        nonlocal failed
        if not passed:
            failed += 1
        print(f"{'PASS' if passed else 'FAIL'} {NAME}: {name}: {detail}")

    gpus = []
    try:
        # Raises RuntimeError when no GPU backend is available (CPU-only jaxlib,
        # no CUDA plugin, or no device).
        gpus = jax.devices("gpu")
    except Exception as e:
        report(False, "gpu devices", f"{type(e).__name__}: {e}")
    else:
        report(len(gpus) > 0, "gpu devices", f"{len(gpus)}: " + ", ".join(
            f"{d.platform}:{d.id} {getattr(d, 'device_kind', '?')}" for d in gpus))
        try:
            print(f"INFO {NAME}: default backend {jax.default_backend()}")
        except Exception:
            pass

    name = "matmul on GPU matches CPU"
    if not gpus:
        print(f"SKIP {NAME}: {name}: no GPU")
    else:
        try:
            rng = np.random.default_rng(0)
            a = rng.standard_normal((512, 512), dtype=np.float32)
            b = rng.standard_normal((512, 512), dtype=np.float32)
            dev = gpus[0]
            x, y = jax.device_put(a, dev), jax.device_put(b, dev)
            # HIGHEST: full float32, not TF32, so the CPU result is comparable.
            z = jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST).block_until_ready()
            where = z.devices() if hasattr(z, "devices") else {z.device()}
            d = float(np.max(np.abs(np.asarray(z) - a @ b)))
            report(where == {dev} and d < 1e-2, name, f"on {sorted(str(w) for w in where)}, max |GPU-CPU| = {d:.2e}")
        except Exception as e:
            report(False, name, f"{type(e).__name__}: {e}")

    print(f"RESULT {NAME}: {'PASS' if failed == 0 else 'FAIL'}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        print(f"FAIL {NAME}: unexpected {type(e).__name__}: {e}")
        print(f"RESULT {NAME}: FAIL")
        sys.exit(1)
