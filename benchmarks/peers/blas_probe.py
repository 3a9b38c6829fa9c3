"""Which BLAS the Python peers (numpy and PyTorch) run, and how fast and correct its sgemm is under the current
environment (OPENBLAS_CORETYPE included). Usage: blas_probe.py [n] [seconds]. Prints one JSON line:
  blas: "openblas" | "reference" (netlib's libblas3, ~1 GFLOP/s) | "mkl" | "unknown"; library: the file loaded;
  core: OpenBLAS's kernel core (e.g. Haswell, SkylakeX, or the generic Prescott it falls back to on a CPU it does
  not know); version; threads; correct: an n x n x n float32 product of small integers (exact in float32) equals
  numpy's integer product (which does not go through BLAS); gflops: that product's speed (n^3 x 2 / s);
  torch_gflops: PyTorch's own products through this BLAS (see `torch_gflops`), null without torch.
"""
import os
import sys

import numpy as np

from common import emit, measure

n = int(sys.argv[1]) if len(sys.argv) > 1 else 512
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
try:
    import torch  # noqa: F401  (loaded so its BLAS, if another one, shows in the process's libraries)
except ImportError:
    pass
rng = np.random.default_rng(0)
ai = rng.integers(-8, 9, (n, n))
bi = rng.integers(-8, 9, (n, n))
a, b = ai.astype(np.float32), bi.astype(np.float32)
correct = bool(np.array_equal(np.matmul(a, b), (ai @ bi).astype(np.float32)))
gflops = measure(lambda: np.matmul(a, b), 2 * n**3 / 1e9, seconds=seconds, repeats=1, warmup=1)
with open("/proc/self/maps") as maps:
    libs = sorted({os.path.realpath(line.split()[-1]) for line in maps if ".so" in line and ("blas" in line or "mkl" in line)})
info = {"blas": "unknown", "library": ", ".join(libs), "core": None, "version": None, "threads": None}
try:
    from threadpoolctl import threadpool_info

    for p in threadpool_info():
        if p.get("user_api") == "blas":
            info.update(blas=p.get("internal_api"), library=p.get("filepath"), core=p.get("architecture"), version=p.get("version"), threads=p.get("num_threads"))
except ImportError:
    pass
if info["blas"] == "unknown" and any("/blas/libblas.so" in lib for lib in libs):
    info["blas"] = "reference"


def torch_gflops():
    """PyTorch's products at 1 thread (torch's and OpenBLAS's) through this BLAS, in GFLOP/s: the geometric mean of
    a decoding step's Linear (1 x 384 -> 1152, the GPT peer's projection at batch 1) and a batch's (128 x 5408 -> 64,
    the MNIST CNN's dense layer). numpy's sgemm above does not see what decides PyTorch's small products: OpenBLAS
    0.3.21's SkylakeX and Cooperlake cores have small-matrix kernels that its Haswell and Zen cores lack, and
    PyTorch's 1 x 384 -> 1152 Linear took 75-88 us on the former and 245-460 us on the latter (2-core Zen 4), while
    sgemm 512 ranked the cores the other way, within its noise. The PyTorch peers' core is chosen by this rate."""
    try:
        import torch
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    torch.set_num_threads(1)
    rates = []
    with threadpool_limits(limits=1, user_api="blas"), torch.inference_mode():
        for m, k, n in ((1, 384, 1152), (128, 5408, 64)):
            x, w, b = torch.rand(m, k), torch.rand(n, k), torch.rand(n)
            rates.append(measure(lambda: torch.nn.functional.linear(x, w, b), 2 * m * k * n / 1e9, seconds=seconds / 2, repeats=3, warmup=20))
    return (rates[0] * rates[1]) ** 0.5


emit(correct=correct, gflops=gflops, torch_gflops=torch_gflops(), coretype=os.environ.get("OPENBLAS_CORETYPE"), **info)
