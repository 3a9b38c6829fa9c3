/** k-fold cross-validation: folds partition the data; one tracked run per fold; mean and std over folds. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { kFoldSplit, TensorDataset, type PluginRegistry } from '../core';
import { crossValidate } from '../runtime';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

let registry: PluginRegistry;
let dir: string;
beforeEach(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-cv-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A data set whose inputs are the example indices, so a batch tells which examples a split holds. */
const indexed = (n: number) =>
  new TensorDataset(
    'idx',
    Float32Array.from({ length: n }, (_, i) => i),
    [1],
    new Int32Array(n),
    [],
  );
const members = (ds: { size: number; batch(i: number[]): { x: { dataSync(): ArrayLike<number>; dispose(): void }; y: { dispose(): void } } }) => {
  const b = ds.batch(Array.from({ length: ds.size }, (_, i) => i));
  const v = Array.from(b.x.dataSync());
  b.x.dispose();
  b.y.dispose();
  return v;
};

describe('kFoldSplit', () => {
  it('validates every example exactly once over the k folds, never trains on the validation fold, and balances sizes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 40 }).chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 2, max: n }), fc.integer({ min: 0, max: 1e6 }))),
        ([n, k, seed]) => {
          const ds = indexed(n);
          const seen: number[] = [];
          const sizes: number[] = [];
          for (let i = 0; i < k; i++) {
            const { train, validation } = kFoldSplit(ds, k, i, seed);
            const [t, v] = [members(train), members(validation)];
            expect(t.length + v.length).toBe(n);
            expect(t.filter((x) => v.includes(x))).toEqual([]);
            seen.push(...v);
            sizes.push(v.length);
          }
          expect(seen.sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
          expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('rejects a bad k, naming it', () => {
    expect(() => kFoldSplit(indexed(5), 6, 0, 0)).toThrow(/folds: expected an integer k with 2 ≤ k ≤ 5/);
  });
});

describe('crossValidate', () => {
  it('runs one tracked run per fold and reports the mean and sample std of the validation metrics', async () => {
    const r = await crossValidate({ registry, config: toyConfig(dir, { trainer: { epochs: 2, batchSize: 16 } }), folds: 3, log: () => undefined });
    expect(r.folds).toHaveLength(3);
    const acc = r.folds.map((f) => f.val_accuracy!);
    const mean = acc.reduce((a, b) => a + b, 0) / 3;
    expect(r.mean.val_accuracy).toBeCloseTo(mean, 10);
    expect(r.std.val_accuracy).toBeCloseTo(Math.sqrt(acc.reduce((a, b) => a + (b - mean) ** 2, 0) / 2), 10);
    const runs = fs
      .readdirSync(path.join(dir, fs.readdirSync(dir).find((d) => d !== '0' && fs.statSync(path.join(dir, d)).isDirectory())!))
      .filter((f) => f !== 'meta.yaml');
    expect(runs).toHaveLength(3);
  });
});
