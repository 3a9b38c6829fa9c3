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
        fc.constantFrom<'classes' | 'one-hot' | 'ignore'>('classes', 'one-hot', 'ignore'),
        fc.integer({ min: 0, max: 1e6 }),
        async (classes, batchRows, labels, seed) => {
          const m = registry.create('metric', labels === 'ignore' ? { type: 'accuracy', ignoreIndex: 0 } : 'accuracy');
          m.reset();
          let s = seed;
          const next = (k: number) => (s = (s * 1103515245 + 12345) % 2 ** 31) % k;
          let hits = 0;
          let counted = 0;
          for (const rows of batchRows) {
            const scores = Array.from({ length: rows }, () => Array.from({ length: classes }, () => next(3))); // small integers: ties
            const truth = scores.map(() => next(classes));
            for (const [i, row] of scores.entries()) {
              if (labels === 'ignore' && truth[i] === 0) continue;
              counted++;
              if (argmax(row) === truth[i]) hits++;
            }
            const y =
              labels === 'one-hot' ? tf.tensor2d(truth.map((t) => Array.from({ length: classes }, (_, c) => (c === t ? 1 : 0)))) : tf.tensor1d(truth, 'int32');
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
});
