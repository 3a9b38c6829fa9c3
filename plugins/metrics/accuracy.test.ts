/** Accuracy counts the rows whose first highest score is the label's class, over every batch, labels as classes or one-hot. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

/** The first index of the highest score (argmax's tie rule). */
const argmax = (row: number[]) => row.reduce((best, v, i) => (v > row[best]! ? i : best), 0);

describe('accuracy', () => {
  it('equals hits / counted rows computed on the host, with ties, batched any way, with or without ignoreIndex', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 5 }),
        fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }),
        fc.constantFrom<'classes' | 'one-hot' | 'ignore' | 'one-hot-ignore'>('classes', 'one-hot', 'ignore', 'one-hot-ignore'),
        fc.integer({ min: 0, max: 1e6 }),
        async (classes, batchRows, labels, seed) => {
          const m = registry.create('metric', labels.endsWith('ignore') ? { type: 'accuracy', ignoreIndex: 0 } : 'accuracy');
          m.reset();
          let s = seed;
          const next = (k: number) => (s = (s * 1103515245 + 12345) % 2 ** 31) % k;
          let hits = 0;
          let counted = 0;
          for (const rows of batchRows) {
            const scores = Array.from({ length: rows }, () => Array.from({ length: classes }, () => next(3))); // small integers: ties
            // One-hot labels: about one row in five is all zeros (padding), never counted (truth −1 here).
            const truth = scores.map(() => (labels.startsWith('one-hot') && next(5) === 0 ? -1 : next(classes)));
            for (const [i, row] of scores.entries()) {
              if ((labels.endsWith('ignore') && truth[i] === 0) || truth[i] === -1) continue;
              counted++;
              if (argmax(row) === truth[i]) hits++;
            }
            const y = labels.startsWith('one-hot')
              ? tf.tensor2d(truth.map((t) => Array.from({ length: classes }, (_, c) => (c === t ? 1 : 0))))
              : tf.tensor1d(truth, 'int32');
            const p = tf.tensor2d(scores);
            await m.update(y, p);
            tf.dispose([y, p]);
          }
          expect(m.result()).toBe(counted === 0 ? 0 : hits / counted);
          expect(m.getState!()).toEqual({ correct: hits, total: counted });
        },
      ),
    );
  });

  it('with one output per row (binary), a row is class 1 where its score exceeds the threshold (Keras binary_accuracy)', async () => {
    // Before, argmax over a single column made every prediction class 0: the metric gave the share of 0 labels.
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.double({ min: -3, max: 3, noNaN: true }), fc.constantFrom(0, 1)), { minLength: 1, maxLength: 20 }),
        fc.constantFrom(undefined, 0.5),
        async (rows, threshold) => {
          const m = registry.create('metric', threshold === undefined ? 'accuracy' : { type: 'accuracy', threshold });
          m.reset();
          const t = threshold ?? 0;
          const hits = rows.filter(([z, y]) => Number(Math.fround(z) > t) === y).length; // the scores as float32 holds them
          const [y, p] = [tf.tensor2d(rows.map(([, l]) => [l])), tf.tensor2d(rows.map(([z]) => [z]))];
          await m.update(y, p);
          tf.dispose([y, p]);
          expect(m.result()).toBe(hits / rows.length);
        },
      ),
    );
  });
});
