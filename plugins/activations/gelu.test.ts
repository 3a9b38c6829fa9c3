/** GELU against x·Φ(x) computed in float64, and its tanh approximation within the paper's stated closeness. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

/**
 * Φ(x) = ½(1 + erf(x/√2)) in float64: erf from its Maclaurin series for |z| < 3, and beyond that
 * erfc(z) = e^{−z²}/(z√π)·(1 − 1/(2z²) + 3/(4z⁴) − 15/(8z⁶)), the asymptotic series (relative error < 1e-4 there).
 */
function phi(x: number): number {
  const z = x / Math.SQRT2;
  if (Math.abs(z) >= 3) {
    const a = Math.abs(z);
    const erfc = (Math.exp(-a * a) / (a * Math.sqrt(Math.PI))) * (1 - 1 / (2 * a * a) + 3 / (4 * a ** 4) - 15 / (8 * a ** 6));
    return z > 0 ? 1 - erfc / 2 : erfc / 2;
  }
  let term = z;
  let sum = z;
  for (let n = 1; n < 80; n++) {
    term *= (-z * z) / n;
    sum += term / (2 * n + 1);
  }
  return 0.5 * (1 + (2 / Math.sqrt(Math.PI)) * sum);
}

describe('gelu', () => {
  it('equals x·Φ(x) (exact form) and stays within 2e-3 of it with the tanh approximation', () => {
    const [exact, approx] = [registry.create('activation', 'gelu'), registry.create('activation', { type: 'gelu', approximate: 'tanh' })];
    fc.assert(
      // The tails (|x| > 4.2, where the series switch) always appear beside the random values.
      fc.property(
        fc.array(fc.double({ min: -6, max: 6, noNaN: true }), { minLength: 1, maxLength: 50 }).map((xs) => [...xs, -6, -4.5, 4.5, 6]),
        (xs) => {
          const [e, a] = tf.tidy(() => [exact.apply(tf.tensor(xs)).arraySync(), approx.apply(tf.tensor(xs)).arraySync()]) as number[][];
          xs.forEach((x, i) => {
            const want = x * phi(Math.fround(x));
            expect(Math.abs(e![i]! - want)).toBeLessThan(1e-5 + 1e-5 * Math.abs(want));
            expect(Math.abs(a![i]! - want)).toBeLessThan(2e-3);
          });
        },
      ),
      { numRuns: 100 },
    );
  });
});
