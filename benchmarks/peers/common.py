"""Shared timing for the Python peers: warm-up, then repeats of a steady-state window, median reported.

Importing it also sets glibc malloc's thresholds (see `_keep_freed_memory`), which every peer needs at its best.
"""
import ctypes
import json
import os
import statistics
import sys
import time

# glibc's mallopt parameters (malloc.h) and the value set for both: 1 GiB.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MALLOC_THRESHOLD = 1 << 30


def _keep_freed_memory():
    """Keeps freed memory in the process instead of returning it to the kernel, so a step reuses the pages the
    last one freed. PyTorch's CPU allocator is plain malloc, and glibc serves a block over its mmap threshold
    (128 KiB at first, raised only when a bigger mmap'd block is freed, up to 32 MiB) with a fresh mmap, and
    trims the heap's free top above twice that: the peers' activations (an 11 MiB convolution output at MNIST
    batch 128) were mapped and unmapped every step, each page faulted in again and zeroed by the kernel:
    10,300 minor faults per MNIST training step at batch 128 (1,300-2,400 at batch 32, 5,400-8,000 per
    inference at batch 128), which halved the MNIST peers (training b128 at 1 thread 2,950 -> 5,470 samples/s,
    inference b128 5,100 -> 9,930, quiet, 2-core Zen 4). The full-recipe replica (mnist_full_torch.py) escaped
    by accident: freeing its 31 MiB test-set temporary raised the threshold, and it faulted 0.5 times a step.
    Both thresholds at 1 GiB: 0-40 faults a step. Returns the setting, for a row's detail."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, _MALLOC_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _MALLOC_THRESHOLD) == 1
    except OSError:
        ok = False
    return "glibc malloc mmap/trim thresholds 1 GiB" if ok else "glibc malloc thresholds NOT set (page faults per step likely)"


MALLOC = _keep_freed_memory()


def measure(step, items_per_step, seconds=3.0, repeats=3, warmup=3):
    """Runs `step` `warmup` times, then `repeats` windows of about `seconds`; returns the median items/s."""
    for _ in range(warmup):
        step()
    rates = []
    for _ in range(repeats):
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step()
            n += 1
        rates.append(n * items_per_step / (time.perf_counter() - t0))
    return statistics.median(rates)


def emit(**fields):
    json.dump(fields, sys.stdout)
    sys.stdout.write("\n")


def torch_threads(threads):
    """The detail a PyTorch peer reports: torch's intra-op threads and OpenBLAS's own pool, which Debian's
    torch calls for matrix products and which uses every core unless OPENBLAS_NUM_THREADS says otherwise; how
    idle threads of both pools wait, where the harness set it (OMP_WAIT_POLICY, OPENBLAS_THREAD_TIMEOUT); and
    the malloc setting above."""
    waits = [f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT") if k in os.environ]
    return ", ".join([f"torch threads={threads}", f"OpenBLAS threads={os.environ.get('OPENBLAS_NUM_THREADS', 'all cores')}", *waits, MALLOC])


def attention(q, k, v, mask=None, causal=False):
    """softmax(q kᵀ / √d_head + mask) v over [batch, heads, time, d_head] (Debian's torch 1.13 has no
    scaled_dot_product_attention). `mask` is True where a key may be attended; `causal` masks later keys."""
    import torch

    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    if causal:
        t, s = scores.shape[-2:]
        scores = scores.masked_fill(torch.ones(t, s, dtype=torch.bool).triu(s - t + 1), float("-inf"))
    return scores.softmax(-1) @ v
