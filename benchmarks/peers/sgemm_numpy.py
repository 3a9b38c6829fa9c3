"""OpenBLAS SGEMM through numpy: GFLOP/s of an n x n float32 matrix product. Usage: sgemm_numpy.py N [seconds] [repeats]"""
import sys

import numpy as np

from common import emit, measure

n = int(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
rng = np.random.default_rng(0)
a = rng.random((n, n), dtype=np.float32)
b = rng.random((n, n), dtype=np.float32)
out = np.empty((n, n), dtype=np.float32)
rate = measure(lambda: np.matmul(a, b, out=out), 2 * n**3 / 1e9, seconds=seconds, repeats=repeats)
try:
    from threadpoolctl import threadpool_info
    info = [f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')} threads={p.get('num_threads')}" for p in threadpool_info()]
except ImportError:
    info = [np.__version__]
emit(value=rate, unit="GFLOP/s", peer="numpy/OpenBLAS", detail="; ".join(info))
