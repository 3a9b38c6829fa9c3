"""Shared timing for the Python peers: warm-up, then repeats of a steady-state window, median reported."""
import json
import os
import statistics
import sys
import time


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
    torch calls for matrix products and which uses every core unless OPENBLAS_NUM_THREADS says otherwise."""
    return f"torch threads={threads}, OpenBLAS threads={os.environ.get('OPENBLAS_NUM_THREADS', 'all cores')}"


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
