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
});
