/**
 * Determinism with the default settings: the same seed, machine and thread count give bit-identical results.
 * The native kernels share work out dynamically (a thread slowed by another tenant takes fewer tasks), so this
 * holds only if no sum's order depends on which thread ran which task. Checked two ways:
 *  - in process: a deep product with a small result (the k-split path, as a weight gradient takes) computed many
 *    times gives the same bits every time;
 *  - across processes: `loom paper mnist-cnn --preset smoke --seed 7`, run three times with 2 threads and the
 *    default kernels, gives identical metrics and identical saved weights.
 * Before the fix, the k-split added each thread's slices into that thread's partial sum, and three runs of the
 * smoke preset gave three different losses in the 8th digit.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { nativeAddonInfo } from '../plugins/backends/native-kernels';
import { testRegistry } from './harness';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(repo, 'cli/bin.mjs');
const info = nativeAddonInfo();

describe('determinism', () => {
  it.skipIf(!info.loaded)('a k-split product (weight-gradient shape) gives the same bits on every call', async () => {
    await testRegistry('native-cpu');
    // xᵀ·dz over 8,192 rows: k far deeper than the result is large, so the product is split along k.
    const x = tf.randomNormal([8192, 96], 0, 1, 'float32', 1);
    const dz = tf.randomNormal([8192, 80], 0, 1, 'float32', 2);
    const first = tf
      .tidy(() => tf.matMul(x, dz, true, false))
      .dataSync()
      .slice();
    for (let i = 0; i < 40; i++) {
      const again = tf.tidy(() => tf.matMul(x, dz, true, false));
      const v = again.dataSync();
      again.dispose();
      expect(Buffer.from(v.buffer, v.byteOffset, v.byteLength).equals(Buffer.from(first.buffer)), `call ${i + 2} differs from the first`).toBe(true);
    }
    tf.dispose([x, dz]);
  });

  it('three runs of the same seed in separate processes (2 threads, default kernels) give identical metrics and weights', { timeout: 600_000 }, () => {
    const runs = [0, 1, 2].map((i) => {
      const cwd = fs.mkdtempSync(path.join(os.tmpdir(), `loom-det-${i}-`));
      try {
        const env: NodeJS.ProcessEnv = { ...process.env, LOOM_THREADS: '2' };
        delete env.LOOM_GEMM;
        execFileSync(process.execPath, [cli, 'paper', 'mnist-cnn', '--preset', 'smoke', '--seed', '7', '--json', 'summary.json'], {
          cwd,
          env,
          encoding: 'utf8',
        });
        const summary = JSON.parse(fs.readFileSync(path.join(cwd, 'summary.json'), 'utf8'));
        const weights = fs.readFileSync(path.join(cwd, 'mlruns', summary.mlflowExperimentId, summary.mlflowRunId, 'artifacts', 'model', 'weights.bin'));
        return { metrics: summary.metrics as Record<string, number>, weights: weights.toString('base64') };
      } finally {
        fs.rmSync(cwd, { recursive: true, force: true });
      }
    });
    expect(runs[1].metrics).toEqual(runs[0].metrics);
    expect(runs[2].metrics).toEqual(runs[0].metrics);
    expect(runs[1].weights === runs[0].weights && runs[2].weights === runs[0].weights, 'saved weights identical').toBe(true);
  });
});
