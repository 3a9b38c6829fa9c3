/** Glorot-uniform: values lie in [−l, l] and their variance is 2 / (fanIn + fanOut) (Glorot & Bengio 2010, eq. 16). */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { computeFans, Rng, type PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

describe('glorot-uniform', () => {
  it('has variance 2/(fanIn+fanOut) within sampling tolerance and stays inside the limit', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.constantFrom<number[]>([200, 100], [3, 3, 16, 32], [784, 64], [1000]), (seed, shape) => {
        const t = registry.create('initializer', 'glorot-uniform').init(shape, new Rng(seed));
        const v = Array.from(t.dataSync());
        t.dispose();
        const { fanIn, fanOut } = computeFans(shape);
        const want = 2 / (fanIn + fanOut);
        const limit = Math.sqrt(6 / (fanIn + fanOut));
        const mean = v.reduce((a, b) => a + b, 0) / v.length;
        const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1);
        // The sample variance of n uniform draws has relative standard deviation sqrt(0.8/n); allow 5 of them.
        expect(Math.abs(variance / want - 1)).toBeLessThan(5 * Math.sqrt(0.8 / v.length));
        expect(v.every((x) => Math.abs(x) <= limit)).toBe(true);
      }),
      { numRuns: 12 },
    );
  });

  it('computes fans as Keras does for dense and convolution kernels', () => {
    expect(computeFans([784, 64])).toEqual({ fanIn: 784, fanOut: 64 });
    expect(computeFans([3, 3, 1, 32])).toEqual({ fanIn: 9, fanOut: 288 });
  });
});
