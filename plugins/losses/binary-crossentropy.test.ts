/** Binary cross-entropy from logits against its float64 definition, including logits far beyond exp's range. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

/** −y log σ(z) − (1 − y) log(1 − σ(z)) in float64, via log σ(z) = −log(1 + e^{−z}) written to avoid overflow. */
const logSigmoid = (z: number) => (z >= 0 ? -Math.log1p(Math.exp(-z)) : z - Math.log1p(Math.exp(z)));
const reference = (y: number, z: number) => -y * logSigmoid(z) - (1 - y) * logSigmoid(-z);

describe('binary-crossentropy', () => {
  it('matches the definition for any logits and targets in [0, 1]', () => {
    const bce = registry.create('loss', 'binary-crossentropy');
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: -200, max: 200, noNaN: true })), { minLength: 1, maxLength: 20 }),
        (pairs) => {
          const [y, z] = [tf.tensor(pairs.map((p) => p[0])), tf.tensor(pairs.map((p) => p[1]))];
          const l = bce.compute(y, z);
          const got = l.dataSync()[0]!;
          tf.dispose([y, z, l]);
          const want = pairs.reduce((s, [yy, zz]) => s + reference(Math.fround(yy), Math.fround(zz)), 0) / pairs.length;
          expect(Number.isFinite(got)).toBe(true);
          expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-4 * Math.max(1, want));
        },
      ),
      { numRuns: 100 },
    );
  });
});
