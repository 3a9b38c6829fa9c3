/**
 * The addon's thread pool (native/src/pool.h) under the timing that decoding gives it: parallel products issued
 * with pauses between them, long enough for the workers to fall asleep, short enough to catch them waking. The
 * caller waits only for the workers that joined a job before it ran out of tasks; a worker that wakes late must
 * find the job closed and take nothing, and one that joined must finish before the caller returns. A lost task
 * leaves part of C unwritten, a task run twice or after the return writes into the next call's output, and a
 * lost wake-up hangs: each would show here as a product that differs from its first computation or from a float64
 * reference, or as a child that does not exit. The child runs with more threads (4) than this host may have cores,
 * so that workers are often descheduled in the middle of a job.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { nativeAddonInfo } from './native-kernels';

const here = path.dirname(fileURLToPath(import.meta.url));
const ADDON = path.resolve(here, '../../native/build/Release/loom_native.node');
const info = nativeAddonInfo();
if (!info.loaded) console.warn(`native-pool tests skipped: ${info.reason}`);

// The child: products of shapes that take each parallel path of gemm.cc (the fixed split by columns or by rows,
// tiles of C where the kernel takes them, k split into partial sums) and one that stays on the calling thread (a
// decoding step's single row), each computed CALLS times with a pause of 0-300 µs before it.
const CHILD = `
const addon = require(${JSON.stringify(ADDON)});
let s = 12345;
const rand = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
const shapes = [[8, 1536, 384], [5, 1152, 384], [1, 384, 1536], [64, 256, 256], [300, 64, 64], [16, 32, 4096]];
const CALLS = Number(process.argv[1]);
let differ = 0, wrong = 0, calls = 0;
for (const [m, n, k] of shapes) {
  const a = Float32Array.from({ length: m * k }, () => rand() - 0.5);
  const b = Float32Array.from({ length: k * n }, () => rand() - 0.5);
  const ref = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) ref[i * n + j] += a[i * k + p] * b[p * n + j];
  let first = null;
  for (let c = 0; c < CALLS; c++) {
    const until = performance.now() + rand() * 0.3;
    while (performance.now() < until);
    const out = new Float32Array(m * n).fill(NaN);
    addon.batchMatMul(a, b, out, 1, m, n, k, false, false, 0, 0, null, false);
    calls++;
    if (first === null) {
      first = out;
      for (let i = 0; i < m * n; i++) if (!(Math.abs(out[i] - ref[i]) <= 1e-4 * Math.sqrt(k))) wrong++;
    } else if (out.some((v, i) => !Object.is(v, first[i]))) differ++;
  }
}
console.log(JSON.stringify({ calls, differ, wrong, threads: addon.info().threads }));
`;

describe('native thread pool', () => {
  it.skipIf(!info.loaded)(
    'parallel products issued with pauses that let the workers sleep and wake mid-job: every one complete, the same bits each time, no hang',
    { timeout: 300_000 },
    () => {
      const r = spawnSync(process.execPath, ['-e', CHILD, '400'], {
        encoding: 'utf8',
        env: { ...process.env, LOOM_THREADS: '4' },
        timeout: 240_000,
      });
      expect(r.error, 'the child did not finish (a hang?)').toBeUndefined();
      expect(r.status, r.stderr).toBe(0);
      const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
      expect(summary).toEqual({ calls: 2400, differ: 0, wrong: 0, threads: 4 });
    },
  );
});
