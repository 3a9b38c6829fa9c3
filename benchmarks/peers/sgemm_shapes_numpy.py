"""OpenBLAS SGEMM through numpy on one product shape: GFLOP/s of op(A)[m x k] . op(B)[k x n] in float32.
Usage: sgemm_shapes_numpy.py M N K TRANS_A TRANS_B [seconds] [repeats]  (TRANS_*: 0 or 1; a transposed operand is
stored k x m (or n x k) and passed as its transposed view, which numpy hands to BLAS as a transpose flag)."""
import sys

import numpy as np

from common import emit, measure

m, n, k, ta, tb = (int(x) for x in sys.argv[1:6])
seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 2.0
repeats = int(sys.argv[7]) if len(sys.argv) > 7 else 3
rng = np.random.default_rng(0)
a = rng.random((k, m), dtype=np.float32).T if ta else rng.random((m, k), dtype=np.float32)
b = rng.random((n, k), dtype=np.float32).T if tb else rng.random((k, n), dtype=np.float32)
out = np.empty((m, n), dtype=np.float32)
rate = measure(lambda: np.matmul(a, b, out=out), 2 * m * n * k / 1e9, seconds=seconds, repeats=repeats)
try:
    from threadpoolctl import threadpool_info
    info = [f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')} threads={p.get('num_threads')}" for p in threadpool_info()]
except ImportError:
    info = [np.__version__]
emit(value=rate, unit="GFLOP/s", peer="numpy/OpenBLAS", detail="; ".join(info))
