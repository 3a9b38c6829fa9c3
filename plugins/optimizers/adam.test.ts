/** Adam against a float64 implementation of Kingma & Ba's Algorithm 1, on random gradients and hyper-parameters. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

/** Algorithm 1 in float64: m, v, bias-corrected m̂, v̂, θ ← θ − α m̂ / (√v̂ + ε). */
function adamReference(theta0: number[], grads: number[][], a: { lr: number; beta1: number; beta2: number; epsilon: number }): number[] {
  const theta = [...theta0];
  const m = theta.map(() => 0);
  const v = theta.map(() => 0);
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < theta.length; i++) {
      m[i] = a.beta1 * m[i]! + (1 - a.beta1) * g[i]!;
      v[i] = a.beta2 * v[i]! + (1 - a.beta2) * g[i]! * g[i]!;
      const mHat = m[i]! / (1 - a.beta1 ** t);
      const vHat = v[i]! / (1 - a.beta2 ** t);
      theta[i] = theta[i]! - (a.lr * mHat) / (Math.sqrt(vHat) + a.epsilon);
    }
  });
  return theta;
}

const f32 = (lo: number, hi: number) => fc.double({ min: lo, max: hi, noNaN: true, noDefaultInfinity: true });

describe('adam', () => {
  it('follows Algorithm 1 of Kingma & Ba (2015) in float32 within 1e-4 relative of float64', () => {
    fc.assert(
      fc.property(
        fc.record({ lr: f32(1e-4, 0.1), beta1: f32(0, 0.99), beta2: f32(0.9, 0.9999), epsilon: f32(1e-8, 1e-3) }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 8 }),
        fc.infiniteStream(f32(-3, 3)),
        (hyper, n, steps, values) => {
          const take = (k: number) => Array.from({ length: k }, () => Math.fround(values.next().value as number));
          const theta0 = take(n);
          const grads = Array.from({ length: steps }, () => take(n));
          const opt = registry.create('optimizer', { type: 'adam', ...hyper });
          const p = { name: 'w', variable: tf.variable(tf.tensor(theta0)), role: 'kernel' as const, trainable: true };
          for (const g of grads) {
            const gt = tf.tensor(g);
            opt.step([p], { w: gt });
            gt.dispose();
          }
          const got = Array.from(p.variable.dataSync());
          const want = adamReference(theta0, grads, hyper);
          // Each step moves θ by at most ~lr; float32 rounding of the update is relative to that scale.
          got.forEach((x, i) => expect(Math.abs(x - want[i]!)).toBeLessThanOrEqual(1e-4 * (Math.abs(want[i]!) + hyper.lr * steps) + 1e-6));
          p.variable.dispose();
          opt.dispose();
        },
      ),
      { numRuns: 60 },
    );
  });

  it('moves each weight by about lr on the first step, whatever the gradient scale (bias correction)', () => {
    const opt = registry.create('optimizer', { type: 'adam', lr: 0.01 });
    const p = { name: 'w', variable: tf.variable(tf.tensor([0, 0, 0])), role: 'kernel' as const, trainable: true };
    const g = tf.tensor([1e-3, -5, 100]);
    opt.step([p], { w: g });
    Array.from(p.variable.dataSync()).forEach((x, i) => expect(x).toBeCloseTo(i === 1 ? 0.01 : -0.01, 5));
    tf.dispose([g, p.variable]);
    opt.dispose();
  });
});
