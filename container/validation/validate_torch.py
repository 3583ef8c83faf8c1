#!/usr/bin/env python3
"""Checks that PyTorch is built with CUDA and cuDNN and computes on a GPU.

Checks: CUDA available, device count > 0, a matmul on GPU 0 equal to the same
matmul on the CPU, cuDNN available and enabled, a convolution through cuDNN on
GPU 0 equal to the CPU's.

Prints one PASS/FAIL/SKIP line per check and a RESULT line last.
Exit: 0 all passed, 1 a check failed, 2 torch cannot be imported.
"""

import sys

NAME = "torch"


class Checks:
    def __init__(self):
        self.failed = 0

    def ok(self, name, detail=""):
        print(f"PASS {NAME}: {name}" + (f" ({detail})" if detail else ""))

    def fail(self, name, detail):
        self.failed += 1
        print(f"FAIL {NAME}: {name}: {detail}")

    def skip(self, name, why):
        print(f"SKIP {NAME}: {name}: {why}")

    def run(self, name, fn):
        """Runs fn, which returns (passed, detail); an exception is a failure."""
        try:
            passed, detail = fn()
        except Exception as e:  # the message, never a traceback
            self.fail(name, f"{type(e).__name__}: {e}")
            return False
        if passed:
            self.ok(name, detail)
        else:
            self.fail(name, detail)
        return passed


def max_diff(a, b):
    return float((a - b).abs().max())


def main():
    try:
        import torch
    except Exception as e:
        print(f"MISSING {NAME}: cannot import torch ({type(e).__name__}: {e})")
        print("MISSING torch: run inside the Zephyr environment: spack-env-activate validate-cuda")
        print(f"RESULT {NAME}: MISSING")
        return 2

    print(f"INFO {NAME}: torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'none'}")
    c = Checks()

    if not c.run("CUDA available", lambda: (torch.cuda.is_available(),
                                            "torch.cuda.is_available() is " + str(torch.cuda.is_available()))):
        if torch.version.cuda is None:
            print(f"INFO {NAME}: this torch is a CPU-only build")
    n = 0
    try:
        n = torch.cuda.device_count()
    except Exception as e:
        c.fail("device count > 0", f"{type(e).__name__}: {e}")
    else:
        c.run("device count > 0", lambda: (n > 0, f"{n} device(s)"))

    gpu_checks = ["matmul on GPU matches CPU", "cuDNN available", "conv2d through cuDNN matches CPU"]
    if n == 0:
        for name in gpu_checks:
            c.skip(name, "no GPU")
    else:
        for i in range(n):
            p = torch.cuda.get_device_properties(i)
            print(f"INFO {NAME}: cuda:{i} {p.name}, compute capability {p.major}.{p.minor}, "
                  f"{p.total_memory / 2**30:.1f} GiB")
        # Compare full-precision results: no TF32 shortcuts on Ampere/Hopper.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        g = torch.Generator().manual_seed(0)

        def matmul():
            a = torch.randn(512, 512, generator=g)
            b = torch.randn(512, 512, generator=g)
            on_gpu = a.cuda() @ b.cuda()
            torch.cuda.synchronize()
            d = max_diff(on_gpu.cpu(), a @ b)
            return d < 1e-2, f"{on_gpu.device}, max |GPU-CPU| = {d:.2e}"

        c.run(gpu_checks[0], matmul)
        cudnn_ok = c.run(gpu_checks[1], lambda: (
            torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled,
            f"version {torch.backends.cudnn.version()}, enabled={torch.backends.cudnn.enabled}"))

        def conv():
            x = torch.randn(4, 3, 32, 32, generator=g)
            w = torch.randn(8, 3, 3, 3, generator=g)
            on_gpu = torch.nn.functional.conv2d(x.cuda(), w.cuda(), padding=1)
            torch.cuda.synchronize()
            d = max_diff(on_gpu.cpu(), torch.nn.functional.conv2d(x, w, padding=1))
            return d < 1e-3, f"max |GPU-CPU| = {d:.2e}"

        if cudnn_ok:
            c.run(gpu_checks[2], conv)
        else:
            c.skip(gpu_checks[2], "cuDNN not available")

    result = "PASS" if c.failed == 0 else "FAIL"
    print(f"RESULT {NAME}: {result}")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # a bug in this script: still one line, still a failure
        print(f"FAIL {NAME}: unexpected {type(e).__name__}: {e}")
        print(f"RESULT {NAME}: FAIL")
        sys.exit(1)
