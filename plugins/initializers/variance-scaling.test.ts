/**
 * Initializers against their formulas: the sample mean and variance of every variance-based initializer match
 * its definition within sampling tolerance; orthogonal matrices have orthonormal columns (or rows).
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { computeFans, Rng, type PluginRegistry, type PluginSpec } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

/** Each initializer with the variance its paper or definition prescribes for a shape. */
const cases: [PluginSpec, (shape: number[]) => number][] = [
  ['glorot-uniform', (s) => 2 / (computeFans(s).fanIn + computeFans(s).fanOut)],
  ['glorot-normal', (s) => 2 / (computeFans(s).fanIn + computeFans(s).fanOut)],
  ['he-uniform', (s) => 2 / computeFans(s).fanIn],
  ['he-normal', (s) => 2 / computeFans(s).fanIn],
  [{ type: 'variance-scaling', scale: 3, mode: 'fanOut', distribution: 'normal' }, (s) => 3 / computeFans(s).fanOut],
  [{ type: 'random-uniform', min: -0.3, max: 0.5 }, () => 0.8 ** 2 / 12],
  [{ type: 'random-normal', stddev: 0.02 }, () => 0.02 ** 2],
  // N(0, 1) truncated at ±2 has variance 0.7737 (= 0.87963²).
  [{ type: 'truncated-normal', stddev: 0.1 }, () => 0.01 * 0.8796256610342398 ** 2],
];
const means: Record<string, number> = { 'random-uniform': 0.1 };

describe('variance-based initializers', () => {
  it('have the mean and variance of their definitions, within 5 standard errors', () => {
    for (const [spec, variance] of cases) {
      const name = typeof spec === 'string' ? spec : spec.type;
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 1e6 }), fc.constantFrom<number[]>([300, 200], [3, 3, 16, 32], [784, 64]), (seed, shape) => {
          const t = registry.create('initializer', spec).init(shape, new Rng(seed));
          const v = Array.from(t.dataSync());
          t.dispose();
          const n = v.length;
          const mean = v.reduce((a, b) => a + b, 0) / n;
          const sampleVar = v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
          const want = variance(shape);
          // Standard error of the mean √(σ²/n); of the variance ≤ σ²·√(2/n) for these near-normal/uniform laws.
          expect(Math.abs(mean - (means[name] ?? 0)), `${name} mean`).toBeLessThan(5 * Math.sqrt(want / n));
          expect(Math.abs(sampleVar / want - 1), `${name} variance`).toBeLessThan(5 * Math.sqrt(2 / n));
        }),
        { numRuns: 4 },
      );
    }
  });
});

describe('orthogonal', () => {
  it('gives gain times a matrix with orthonormal columns (tall) or rows (wide)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e6 }),
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 12 }),
        fc.double({ min: 0.5, max: 2, noNaN: true }),
        (seed, r, c, gain) => {
          const w = registry.create('initializer', { type: 'orthogonal', gain }).init([r, c], new Rng(seed));
          const gram = tf.tidy(() => (r >= c ? tf.matMul(w, w, true, false) : tf.matMul(w, w, false, true)));
          const g = gram.arraySync() as number[][];
          g.forEach((row, i) => row.forEach((x, j) => expect(Math.abs(x - (i === j ? gain * gain : 0))).toBeLessThan(1e-4 * gain * gain)));
          tf.dispose([w, gram]);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('flattens a kernel of rank > 2 to [∏ leading, last]; a vector has no orthogonal form (an error naming the shape)', () => {
    const init = registry.create('initializer', { type: 'orthogonal', gain: 2 });
    const w = init.init([3, 3, 4, 8], new Rng(5)); // 36 × 8: orthonormal columns, times the gain
    const gram = tf.tidy(() => {
      const m = tf.reshape(w, [36, 8]);
      return tf.matMul(m, m, true, false);
    });
    (gram.arraySync() as number[][]).forEach((row, i) => row.forEach((x, j) => expect(Math.abs(x - (i === j ? 4 : 0))).toBeLessThan(1e-4)));
    tf.dispose([w, gram]);
    // Before, a vector was a plain N(0, 1) draw that ignored the gain; Keras refuses it.
    expect(() => init.init([10], new Rng(1))).toThrow(/initializer "orthogonal".*rank 2 or more.*\[10\]/);
  });

  it("fixes Q's signs by diag(R): the columns are Haar-distributed, so each entry has mean 0 over draws", () => {
    // Without the fix, the signs of tfjs's Householder QR are not uniform: the mean of Q[0][0] over these draws was
    // 0.51 (measured). With it, Q[0][0] has variance 1/3, so its mean over 400 draws is ~N(0, 1/1200).
    let sum = 0;
    for (let s = 0; s < 400; s++) {
      const w = registry.create('initializer', 'orthogonal').init([3, 3], new Rng(s));
      sum += w.dataSync()[0]!;
      w.dispose();
    }
    expect(Math.abs(sum / 400)).toBeLessThan(5 * Math.sqrt(1 / 1200));
  });
});
