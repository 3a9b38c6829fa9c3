/** softmax: rows are probability distributions, invariant to shifting the logits; log-softmax is its log. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const rows = fc
  .integer({ min: 1, max: 9 })
  .chain((n) => fc.array(fc.array(fc.double({ min: -30, max: 30, noNaN: true }), { minLength: n, maxLength: n }), { minLength: 1, maxLength: 4 }));

describe('softmax', () => {
  it('gives non-negative rows that sum to 1, unchanged by adding a constant to a row', () => {
    const softmax = registry.create('activation', 'softmax');
    fc.assert(
      fc.property(rows, fc.double({ min: -100, max: 100, noNaN: true }), (x, c) => {
        const [a, b] = tf.tidy(() => [softmax.apply(tf.tensor(x)).arraySync(), softmax.apply(tf.add(tf.tensor(x), c)).arraySync()]) as number[][][];
        a!.forEach((row, i) => {
          expect(row.every((p) => p >= 0)).toBe(true);
          expect(Math.abs(row.reduce((s, p) => s + p, 0) - 1)).toBeLessThan(1e-5);
          row.forEach((p, j) => expect(Math.abs(p - b![i]![j]!)).toBeLessThan(1e-5));
        });
      }),
      { numRuns: 100 },
    );
  });

  it('has log-softmax equal to its logarithm where that is representable', () => {
    const [softmax, logSoftmax] = [registry.create('activation', 'softmax'), registry.create('activation', 'log-softmax')];
    fc.assert(
      fc.property(rows, (x) => {
        const [p, lp] = tf.tidy(() => [softmax.apply(tf.tensor(x)).arraySync(), logSoftmax.apply(tf.tensor(x)).arraySync()]) as number[][][];
        p!.flat().forEach((v, i) => {
          if (v > 1e-30) expect(Math.abs(Math.log(v) - lp!.flat()[i]!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(lp!.flat()[i]!)));
        });
      }),
      { numRuns: 100 },
    );
  });
});
