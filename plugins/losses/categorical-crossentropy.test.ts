/** Dense-target cross-entropy: agrees with the sparse form, ignores all-zero (padding) rows, and smooths labels by definition. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const cases = fc.integer({ min: 2, max: 6 }).chain((k) =>
  fc
    .record({
      k: fc.constant(k),
      logits: fc.array(fc.array(fc.double({ min: -10, max: 10, noNaN: true }), { minLength: k, maxLength: k }), { minLength: 1, maxLength: 5 }),
      eps: fc.double({ min: 0, max: 0.5, noNaN: true }),
    })
    .chain((c) =>
      fc.record({
        ...Object.fromEntries(Object.entries(c).map(([key, v]) => [key, fc.constant(v)])),
        labels: fc.array(fc.integer({ min: 0, max: k - 1 }), { minLength: c.logits.length, maxLength: c.logits.length }),
      }),
    ),
) as fc.Arbitrary<{ k: number; logits: number[][]; eps: number; labels: number[] }>;

const scalar = (f: () => tf.Tensor) => tf.tidy(() => f().dataSync()[0]!);

describe('categorical-crossentropy', () => {
  it('equals sparse cross-entropy on one-hot targets, with and without label smoothing', () => {
    fc.assert(
      fc.property(cases, ({ k, logits, eps, labels }) => {
        const dense = registry.create('loss', { type: 'categorical-crossentropy', labelSmoothing: eps });
        const sparse = registry.create('loss', { type: 'sparse-categorical-crossentropy', labelSmoothing: eps });
        const a = scalar(() => dense.compute(tf.oneHot(tf.tensor1d(labels, 'int32'), k), tf.tensor2d(logits)));
        const b = scalar(() => sparse.compute(tf.tensor1d(labels, 'int32'), tf.tensor2d(logits)));
        expect(a).toBeCloseTo(b, 4);
      }),
    );
  });

  it('label smoothing equals (1 − ε)·CE + ε·mean_k(−log p_k), computed in float64', () => {
    fc.assert(
      fc.property(cases, ({ k, logits, eps, labels }) => {
        const loss = registry.create('loss', { type: 'categorical-crossentropy', labelSmoothing: eps });
        const got = scalar(() => loss.compute(tf.oneHot(tf.tensor1d(labels, 'int32'), k), tf.tensor2d(logits)));
        const want =
          logits.reduce((s, z, n) => {
            const m = Math.max(...z);
            const lse = m + Math.log(z.reduce((a, v) => a + Math.exp(v - m), 0));
            const nll = lse - z[labels[n]!]!;
            const uniform = z.reduce((a, v) => a + (lse - v), 0) / k;
            return s + (1 - eps) * nll + eps * uniform;
          }, 0) / logits.length;
        expect(got).toBeCloseTo(want, 3);
      }),
    );
  });

  it('fromLogits false (both forms): probabilities normalised per row and clipped to [1e-7, 1 − 1e-7], as Keras computes them', () => {
    // Before, the scores were clipped only: p = [.2, .2, .2] with target e₃ gave −log 0.2 = 1.609, Keras −log(1/3) = 1.099.
    fc.assert(
      fc.property(cases, fc.double({ min: 0.05, max: 5, noNaN: true }), ({ k, logits, labels }, scale) => {
        // Unnormalised probabilities: positive scores, a row of them summing to `scale`·(their softmax's sum), one zero.
        const probs = logits.map((row) => {
          const e = row.map((v) => Math.exp(v / 4));
          const sum = e.reduce((a, b) => a + b, 0);
          return e.map((v, j) => (j === 0 ? 0 : (scale * v) / sum));
        });
        const ref =
          probs.reduce((acc, row, i) => {
            const sum = row.reduce((a, b) => a + b, 0);
            return acc - Math.log(Math.min(Math.max(row[labels[i]!]! / sum, 1e-7), 1 - 1e-7));
          }, 0) / probs.length;
        const dense = registry.create('loss', { type: 'categorical-crossentropy', fromLogits: false });
        const sparse = registry.create('loss', { type: 'sparse-categorical-crossentropy', fromLogits: false });
        const oneHot = labels.map((l) => Array.from({ length: k }, (_, j) => (j === l ? 1 : 0)));
        const a = scalar(() => dense.compute(tf.tensor2d(oneHot), tf.tensor2d(probs)));
        const b = scalar(() => sparse.compute(tf.tensor1d(labels, 'int32'), tf.tensor2d(probs)));
        expect(Math.abs(a - ref), 'categorical').toBeLessThanOrEqual(2e-5 * Math.max(1, ref));
        expect(Math.abs(b - ref), 'sparse').toBeLessThanOrEqual(2e-5 * Math.max(1, ref));
      }),
    );
  });

  it('ignores rows whose target is all zeros (padding), in the value and the gradient', () => {
    const loss = registry.create('loss', { type: 'categorical-crossentropy', labelSmoothing: 0.1 });
    const logits = tf.tensor2d([
      [1, 2, 3],
      [9, -4, 0],
      [0.5, 0, -1],
    ]);
    const q = tf.tensor2d([
      [0, 0, 1],
      [0, 0, 0],
      [1, 0, 0],
    ]);
    const keep = tf.tensor2d([
      [1, 2, 3],
      [0.5, 0, -1],
    ]);
    const qKeep = tf.tensor2d([
      [0, 0, 1],
      [1, 0, 0],
    ]);
    expect(scalar(() => loss.compute(q, logits))).toBeCloseTo(
      scalar(() => loss.compute(qKeep, keep)),
      5,
    );
    const g = tf.grad((z: tf.Tensor) => loss.compute(q, z))(logits);
    for (const v of g.dataSync().slice(3, 6)) expect(Math.abs(v)).toBe(0);
    tf.dispose([logits, q, keep, qKeep, g]);
  });
});
