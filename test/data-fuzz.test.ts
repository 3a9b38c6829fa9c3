/**
 * Fuzzing the data a run is given, through runExperiment with an in-memory data set: NaN or ±Infinity among the
 * inputs, labels outside the class range, empty splits, batch sizes larger than the data. Bad data stops the run
 * before it starts (no tracked run left behind) with a DataError naming the split, the example and the cause; good
 * data of any size trains, a batch larger than the data being one smaller batch per epoch (as in Keras), said in a
 * notice. Before these checks NaN inputs surfaced as a "non-finite loss" some steps in, and out-of-range labels and
 * empty splits trained silently (on nothing).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError, definePlugin, TensorDataset, type PluginRegistry } from '../core';
import { runExperiment } from '../runtime';
import { testRegistry } from './harness';
import { toyConfig } from './toy-data';

/** What the `mem` data source returns for each split (set by each case). */
let splits: Record<'train' | 'test', { x: Float32Array; y: Int32Array }>;
const mem = definePlugin({
  kind: 'dataset',
  name: 'mem',
  description: 'test: in-memory data set the test sets up',
  schema: z.object({}),
  create: () => ({
    splits: ['train', 'test'],
    load: (s: string) => new TensorDataset(`mem:${s}`, splits[s as 'train' | 'test'].x, [2], splits[s as 'train' | 'test'].y, []),
  }),
});

let registry: PluginRegistry;
let dir: string;
beforeAll(async () => {
  registry = (await testRegistry()).register(mem);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-data-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** n examples of 3 separable classes, as 2-D points. */
function clean(n: number) {
  const y = Int32Array.from({ length: n }, (_, i) => i % 3);
  const x = Float32Array.from({ length: 2 * n }, (_, j) => (j % 2 === 0 ? Math.cos : Math.sin)((2 * Math.PI * y[j >> 1]!) / 3) * 2 + 0.1 * Math.sin(j));
  return { x, y };
}

type Damage = { kind: 'none' } | { kind: 'input'; value: number; at: number } | { kind: 'label'; value: number; at: number };
const damageArb: fc.Arbitrary<Damage> = fc.oneof(
  fc.constant({ kind: 'none' as const }),
  fc.record({ kind: fc.constant('input' as const), value: fc.constantFrom(NaN, Infinity, -Infinity), at: fc.nat() }),
  fc.record({ kind: fc.constant('label' as const), value: fc.oneof(fc.integer({ min: 3, max: 1000 }), fc.integer({ min: -1000, max: -1 })), at: fc.nat() }),
);

describe('data a run is given', () => {
  it('bad data is refused before the run starts, naming split, example and cause; good data of any size trains', async () => {
    const root = path.join(dir, 'mlruns');
    let cases = 0;
    // 120 cases: a training set of 0-40 examples and a test set of 0-8, one of them damaged at one place or neither,
    // any batch size from 1 to 64, with or without a validation split (the last quarter of the training set).
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 8 }),
        fc.constantFrom('train' as const, 'test' as const),
        damageArb,
        fc.integer({ min: 1, max: 64 }),
        fc.constantFrom(0, 0.25),
        async (nTrain, nTest, where, damage, batchSize, validationSplit) => {
          cases++;
          splits = { train: clean(nTrain), test: clean(nTest) };
          const target = splits[where];
          const n = target.y.length;
          const at = n > 0 && damage.kind !== 'none' ? damage.at % n : -1;
          if (at >= 0 && damage.kind === 'input') target.x[2 * at + (damage.at % 2)] = damage.value;
          if (at >= 0 && damage.kind === 'label') target.y[at] = damage.value;

          // What should be refused first: splits are checked in the order training, validation, test.
          const nVal = Math.floor(nTrain * validationSplit);
          const parts = [
            { label: 'training', name: nVal ? 'mem:train:train' : 'mem:train', size: nTrain - nVal, from: 0, split: 'train' },
            ...(nVal ? [{ label: 'validation', name: 'mem:train:validation', size: nVal, from: nTrain - nVal, split: 'train' }] : []),
            { label: 'test', name: 'mem:test', size: nTest, from: 0, split: 'test' },
          ];
          let expected: string | null = null;
          for (const p of parts) {
            if (p.size === 0) expected = `the ${p.label} set "${p.name}" is empty: it has no examples`;
            else if (p.split === where && at >= p.from && at < p.from + p.size) {
              const example = `the ${p.label} set "${p.name}": example ${at - p.from}`;
              expected =
                damage.kind === 'input'
                  ? `${example} has a non-finite input value (${damage.value}); remove or repair it before training`
                  : `${example}: label ${(damage as { value: number }).value} is outside the class range 0..2 (the model has 3 outputs)`;
            }
            if (expected) break;
          }

          const lines: string[] = [];
          const runsBefore = fs.existsSync(root) ? fs.readdirSync(root, { recursive: true }).length : 0;
          const config = toyConfig(root, {
            data: { source: 'mem', train: 'train', test: 'test' },
            trainer: { epochs: 1, batchSize, validationSplit, checkpoint: { enabled: false } },
          });
          const run = runExperiment({ registry, config, log: (l) => lines.push(l) });
          if (expected) {
            await expect(run).rejects.toThrow(DataError);
            await expect(runExperiment({ registry, config, log: () => undefined })).rejects.toThrow(expected);
            expect(fs.existsSync(root) ? fs.readdirSync(root, { recursive: true }).length : 0).toBe(runsBefore); // no run left behind
            return;
          }
          const r = await run;
          expect(r.history).toHaveLength(1);
          expect(Number.isFinite(r.history[0]!.loss)).toBe(true);
          expect(Number.isFinite(r.test!.loss)).toBe(true);
          const trainSize = nTrain - nVal;
          const notice = `loom: trainer.batchSize ${batchSize} is larger than the ${trainSize} training examples: each epoch is one batch of ${trainSize} (as in Keras)`;
          expect(lines.includes(notice)).toBe(batchSize > trainSize);
        },
      ),
      { numRuns: 120 },
    );
    expect(cases).toBe(120);
  });
});
