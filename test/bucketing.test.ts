/**
 * Batches by length (`trainer.bucketByLength`, core/data.ts `bucketedBatches`): every example of the epoch once,
 * batches no larger than asked, each batch drawn from one pool and so much tighter in length than a random batch,
 * the same batches for the same seed; and `trainer.maxSteps` stops a run after exactly that many steps with the
 * losses of the full run's first steps.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bucketedBatches, epochOrder } from '../core';
import { runExperiment } from '../runtime';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

describe('bucketedBatches', () => {
  it('covers the order once, in batches of at most batchSize, each from one sorted pool (200 cases)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 700 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        (n, bs, pool, seed) => {
          const lengths = Int32Array.from({ length: n }, (_, i) => ((i * 7919) % 23) + 1);
          const order = epochOrder(n, seed, 0, true);
          const batches = bucketedBatches(order, lengths, bs, pool, seed);
          const seen = batches.flatMap((b) => Array.from(b)).sort((a, b) => a - b);
          expect(seen).toEqual(Array.from({ length: n }, (_, i) => i));
          expect(batches.every((b) => b.length >= 1 && b.length <= bs)).toBe(true);
          expect(batches.length).toBe(Math.ceil(n / bs)); // only the last pool can end in a partial batch
          // Within a batch the lengths are sorted (a batch is a run of one sorted pool).
          for (const b of batches) for (let i = 1; i < b.length; i++) expect(lengths[b[i]!]!).toBeGreaterThanOrEqual(lengths[b[i - 1]!]!);
          expect(bucketedBatches(order, lengths, bs, pool, seed)).toEqual(batches);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('cuts the padding of random batches: the mean spread of lengths in a batch falls', () => {
    const n = 4000;
    const lengths = Int32Array.from({ length: n }, (_, i) => 3 + (((i * 2654435761) >>> 0) % 20));
    const order = epochOrder(n, 5, 0, true);
    const spread = (bs: Int32Array[]) =>
      bs.reduce((a, b) => a + Math.max(...Array.from(b, (i) => lengths[i]!)) - Math.min(...Array.from(b, (i) => lengths[i]!)), 0) / bs.length;
    const random = Array.from({ length: n / 32 }, (_, k) => order.subarray(k * 32, (k + 1) * 32));
    const bucketed = bucketedBatches(order, lengths, 32, 50, 5);
    expect(spread(random)).toBeGreaterThan(15);
    expect(spread(bucketed)).toBeLessThan(1);
  });
});

describe('trainer.maxSteps', () => {
  it('stops after N steps with the first N losses of the full run', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-maxsteps-'));
    try {
      const losses = async (maxSteps?: number) => {
        const registry = (await testRegistry()).register(toyBlobs);
        const seen: number[] = [];
        registry.register({
          kind: 'callback',
          name: 'record-loss',
          description: 'test: records each step loss',
          schema: (await import('zod')).z.object({}),
          create: () => ({ onBatchEnd: (_s: unknown, logs: { loss: number }) => void seen.push(logs.loss) }),
        } as never);
        const config = toyConfig(path.join(dir, 'mlruns'), {
          callbacks: ['record-loss'],
          trainer: { epochs: 2, batchSize: 16, ...(maxSteps ? { maxSteps } : {}), checkpoint: { enabled: false } },
        });
        await runExperiment({ registry, config, log: () => undefined });
        return seen;
      };
      const full = await losses();
      const first = await losses(5);
      expect(first).toHaveLength(5);
      expect(first).toEqual(full.slice(0, 5));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
