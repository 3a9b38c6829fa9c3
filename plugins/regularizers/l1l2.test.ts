/** The penalties and their gradients: ∇(λ‖w‖₂²) = 2λw, ∇(λ‖w‖₁) = λ·sign(w); a regularized layer adds them to the loss. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, type PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const weights = fc.array(
  fc.double({ min: -5, max: 5, noNaN: true }).filter((x) => Math.abs(x) > 1e-3),
  { minLength: 1, maxLength: 30 },
);
const lambda = fc.double({ min: 1e-4, max: 1, noNaN: true });

describe('l1 / l2 / l1l2', () => {
  it('have the value and gradient of their formulas', () => {
    fc.assert(
      fc.property(weights, lambda, lambda, (w, a, b) => {
        const reg = registry.create('regularizer', { type: 'l1l2', l1: a, l2: b });
        const wt = tf.tensor(w);
        const value = reg.penalty(wt);
        const grad = tf.grad((x: tf.Tensor) => reg.penalty(x))(wt);
        const wf = w.map(Math.fround);
        const want = a * wf.reduce((s, x) => s + Math.abs(x), 0) + b * wf.reduce((s, x) => s + x * x, 0);
        expect(Math.abs(value.dataSync()[0]! - want)).toBeLessThanOrEqual(1e-5 * Math.max(1, want));
        Array.from(grad.dataSync()).forEach((g, i) =>
          expect(Math.abs(g - (a * Math.sign(wf[i]!) + 2 * b * wf[i]!))).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(g))),
        );
        tf.dispose([wt, value, grad]);
      }),
      { numRuns: 100 },
    );
  });

  it('l2 alone has gradient 2λw', () => {
    fc.assert(
      fc.property(weights, lambda, (w, l) => {
        const wt = tf.tensor(w);
        const grad = tf.grad((x: tf.Tensor) => registry.create('regularizer', { type: 'l2', l2: l }).penalty(x))(wt);
        Array.from(grad.dataSync()).forEach((g, i) => expect(Math.abs(g - 2 * l * Math.fround(w[i]!))).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(g))));
        tf.dispose([wt, grad]);
      }),
      { numRuns: 100 },
    );
  });

  it('is held by the kernel of a layer that declares it (the trainer adds it to the loss: test/trainer.test.ts)', () => {
    const layer = registry.create('layer', { type: 'dense', units: 3, kernelRegularizer: { type: 'l2', l2: 0.5 } });
    layer.build([null, 4], new Rng(0));
    const kernel = layer.parameters().find((p) => p.name.endsWith('/kernel'))!;
    expect(kernel.regularizer?.spec.type).toBe('l2');
    layer.dispose();
  });
});
