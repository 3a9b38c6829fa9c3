/**
 * The Python peers' shared setup (benchmarks/peers/common.py) and the thread settings the harness tries: a peer
 * that page-faults its activations in every step, or whose spinning thread pools fight over the cores, is a
 * handicapped peer, and a ratio against it would say nothing about loom.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PASSIVE_WAITS, TORCH_SETTINGS } from '../benchmarks/harness';
import { PYTHON } from '../benchmarks/peer-blas';

const PEERS = path.resolve(__dirname, '../benchmarks/peers');
const hasTorch = fs.existsSync(PYTHON) && spawnSync(PYTHON, ['-c', 'import torch'], { timeout: 60_000 }).status === 0;

describe('common.py', () => {
  it.skipIf(!hasTorch)('keeps freed memory: an MNIST batch-128 inference faults almost no pages once warm, and the detail says why', () => {
    // Counts page faults, times nothing: without the thresholds each inference faulted its 11 MiB convolution
    // output in again (5,400-8,000 faults).
    const script = `
import resource, torch
from torch import nn
from common import torch_threads
torch.set_num_threads(1)
m = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(5408, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
x = torch.rand(128, 1, 28, 28)
with torch.inference_mode():
    for _ in range(3): m(x)
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5): m(x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5)
print(torch_threads(1))
`;
    const r = spawnSync(PYTHON, ['-c', script], { cwd: PEERS, encoding: 'utf8', env: { ...process.env, OPENBLAS_NUM_THREADS: '1' }, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const [faults, detail] = r.stdout.trim().split('\n');
    expect(Number(faults)).toBeLessThan(500);
    expect(detail).toContain('glibc malloc mmap/trim thresholds 1 GiB');
  });
});

describe('TORCH_SETTINGS', () => {
  it('tries 1 thread, 2 threads, and 2 threads whose idle OpenMP and OpenBLAS threads sleep', () => {
    expect(TORCH_SETTINGS.map((s) => [s.threads, s.env])).toEqual([
      [1, {}],
      [2, {}],
      [2, { OMP_WAIT_POLICY: 'PASSIVE', OPENBLAS_THREAD_TIMEOUT: '4' }],
    ]);
    expect(PASSIVE_WAITS).toBe(TORCH_SETTINGS[2]!.env);
  });
});
