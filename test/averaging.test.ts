/**
 * Checkpoint averaging (runtime/averaging.ts; Vaswani et al. 2017 §6.1): the average of a run's last checkpoints is the
 * elementwise mean of their weights, whatever their order, and checkpoints of different models are refused.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listCheckpoints, loadCheckpoint } from '../core';
import { averageCheckpoints, lastCheckpoints, runExperiment } from '../runtime';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

let dir: string;
let ckpts: string[];
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-avg-'));
  const registry = (await testRegistry()).register(toyBlobs);
  const ckptDir = path.join(dir, 'ckpt');
  await runExperiment({
    registry,
    config: toyConfig(path.join(dir, 'mlruns'), { trainer: { epochs: 1, batchSize: 16, checkpoint: { everySteps: 1, keep: 5, dir: ckptDir } } }),
    log: () => undefined,
  });
  ckpts = listCheckpoints(ckptDir);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('averageCheckpoints', () => {
  it('is the elementwise mean of the checkpoints, in any order (30 cases)', () => {
    expect(ckpts.length).toBe(5);
    expect(lastCheckpoints(path.dirname(ckpts[0]!), 3)).toEqual(ckpts.slice(-3));
    fc.assert(
      fc.property(fc.subarray(ckpts, { minLength: 1 }), fc.boolean(), (chosen, reverse) => {
        const avg = averageCheckpoints(reverse ? [...chosen].reverse() : chosen);
        const each = chosen.map((c) => loadCheckpoint(c).weights);
        for (const [name, w] of avg) {
          w.values.forEach((v, i) => {
            const mean = each.reduce((a, ws) => a + ws.get(name)!.values[i]!, 0) / each.length;
            expect(Math.abs(v - mean)).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(mean)));
          });
          expect(w.shape).toEqual(each[0]!.get(name)!.shape);
        }
        // Every checkpoint differs (one step apart), so an average of two or more is none of them.
        if (chosen.length === 1) expect([...avg.values()].map((w) => Array.from(w.values))).toEqual([...each[0]!.values()].map((w) => Array.from(w.values)));
      }),
      { numRuns: 30 },
    );
  });

  it('refuses checkpoints of different models, naming the tensor', async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const other = path.join(dir, 'other');
    await runExperiment({
      registry,
      config: toyConfig(path.join(dir, 'mlruns2'), {
        model: {
          inputShape: [2],
          layers: [
            { type: 'dense', units: 5, activation: 'relu' },
            { type: 'dense', units: 3 },
          ],
        },
        trainer: { epochs: 1, batchSize: 48, checkpoint: { dir: other } },
      }),
      log: () => undefined,
    });
    expect(() => averageCheckpoints([ckpts[0]!, listCheckpoints(other)[0]!])).toThrow(/averageCheckpoints: (tensor ".+" of .+ is not in|.+ holds \d+ tensors)/);
    expect(() => averageCheckpoints([])).toThrow(/no checkpoints/);
  });
});
