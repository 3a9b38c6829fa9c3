/**
 * Glorot-uniform: values lie in [−l, l], l = √(6 / (fanIn + fanOut)) (Glorot & Bengio 2010, eq. 16); its variance is
 * checked with the other variance-based initializers in variance-scaling.test.ts.
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { computeFans, Rng, type PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

describe('glorot-uniform', () => {
  it('stays inside the limit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.constantFrom<number[]>([200, 100], [3, 3, 16, 32], [784, 64], [1000]), (seed, shape) => {
        const t = registry.create('initializer', 'glorot-uniform').init(shape, new Rng(seed));
        const v = Array.from(t.dataSync());
        t.dispose();
        const { fanIn, fanOut } = computeFans(shape);
        const limit = Math.sqrt(6 / (fanIn + fanOut));
        expect(v.every((x) => Math.abs(x) <= limit)).toBe(true);
        // Uniform draws fill the interval: the extremes come within 2 % of the limit (missing it has probability 0.98^n ≤ 2e-9 here).
        expect(Math.max(...v.map(Math.abs))).toBeGreaterThan(0.98 * limit);
      }),
      { numRuns: 12 },
    );
  });

  it('computes fans as Keras does for dense and convolution kernels', () => {
    expect(computeFans([784, 64])).toEqual({ fanIn: 784, fanOut: 64 });
    expect(computeFans([3, 3, 1, 32])).toEqual({ fanIn: 9, fanOut: 288 });
    expect(computeFans([3, 3, 16, 32])).toEqual({ fanIn: 144, fanOut: 288 }); // receptive field × channels in / out
  });
});
