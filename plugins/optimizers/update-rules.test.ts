/**
 * SGD (with momentum and Nesterov), RMSprop, Adagrad and AdamW against float64 implementations of their papers'
 * update rules, on random gradients and hyper-parameters (Adam's own test is adam.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { JsonObject, ParamRole, PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

type Rule = (theta: number[], grads: number[][], h: Record<string, number>, role: ParamRole) => number[];

const sgd: Rule = (theta, grads, h) => {
  const t = [...theta];
  const b = t.map(() => 0);
  for (const g of grads)
    for (let i = 0; i < t.length; i++) {
      if (h.momentum === 0) t[i]! -= h.lr! * g[i]!;
      else {
        b[i] = h.momentum! * b[i]! + g[i]!;
        t[i]! -= h.lr! * (h.nesterov ? g[i]! + h.momentum! * b[i]! : b[i]!);
      }
    }
  return t;
};
const rmsprop: Rule = (theta, grads, h) => {
  const t = [...theta];
  const s = t.map(() => 0);
  for (const g of grads)
    for (let i = 0; i < t.length; i++) {
      s[i] = h.rho! * s[i]! + (1 - h.rho!) * g[i]! ** 2;
      t[i]! -= (h.lr! * g[i]!) / (Math.sqrt(s[i]!) + h.epsilon!);
    }
  return t;
};
const adagrad: Rule = (theta, grads, h) => {
  const t = [...theta];
  const G = t.map(() => h.initialAccumulator!);
  for (const g of grads)
    for (let i = 0; i < t.length; i++) {
      G[i]! += g[i]! ** 2;
      t[i]! -= (h.lr! * g[i]!) / (Math.sqrt(G[i]!) + h.epsilon!);
    }
  return t;
};
/** Loshchilov & Hutter (2019), Algorithm 2 with η = 1: θ ← θ(1 − αλ) − α m̂/(√v̂ + ε); no decay for biases. */
const adamw: Rule = (theta, grads, h, role) => {
  const t = [...theta];
  const m = t.map(() => 0);
  const v = t.map(() => 0);
  const decay = role === 'bias' ? 0 : h.weightDecay!;
  grads.forEach((g, k) => {
    for (let i = 0; i < t.length; i++) {
      m[i] = h.beta1! * m[i]! + (1 - h.beta1!) * g[i]!;
      v[i] = h.beta2! * v[i]! + (1 - h.beta2!) * g[i]! ** 2;
      const mh = m[i]! / (1 - h.beta1! ** (k + 1));
      const vh = v[i]! / (1 - h.beta2! ** (k + 1));
      t[i] = t[i]! * (1 - h.lr! * decay) - (h.lr! * mh) / (Math.sqrt(vh) + h.epsilon!);
    }
  });
  return t;
};

const d = (lo: number, hi: number) => fc.double({ min: lo, max: hi, noNaN: true, noDefaultInfinity: true });
const rules: [string, Rule, fc.Arbitrary<Record<string, number | boolean>>][] = [
  ['sgd', sgd, fc.record({ lr: d(1e-3, 0.5), momentum: fc.constantFrom(0, 0.5, 0.9), nesterov: fc.boolean() })],
  ['rmsprop', rmsprop, fc.record({ lr: d(1e-4, 0.1), rho: d(0.5, 0.99), epsilon: d(1e-7, 1e-3) })],
  ['adagrad', adagrad, fc.record({ lr: d(1e-3, 0.5), initialAccumulator: d(0.01, 1), epsilon: d(1e-7, 1e-3) })],
  ['adamw', adamw, fc.record({ lr: d(1e-4, 0.05), beta1: d(0, 0.95), beta2: d(0.9, 0.999), epsilon: d(1e-8, 1e-4), weightDecay: d(0, 0.3) })],
];

describe('update rules', () => {
  for (const [name, rule, hyper] of rules) {
    it(`${name} follows its paper's rule in float32 within 1e-4 of float64`, () => {
      fc.assert(
        fc.property(hyper, fc.constantFrom<ParamRole>('kernel', 'bias'), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 6 }), fc.infiniteStream(d(-2, 2)), (h, role, n, steps, values) => {
          const take = (k: number) => Array.from({ length: k }, () => Math.fround(values.next().value as number));
          const theta0 = take(n);
          const grads = Array.from({ length: steps }, () => take(n));
          const opt = registry.create('optimizer', { type: name, ...(h as JsonObject) });
          const p = { name: 'w', variable: tf.variable(tf.tensor(theta0)), role, trainable: true };
          for (const g of grads) {
            const gt = tf.tensor(g);
            opt.step([p], { w: gt });
            gt.dispose();
          }
          const got = Array.from(p.variable.dataSync());
          const want = rule(theta0, grads, h as Record<string, number>, role);
          const scale = (h.lr as number) * steps * (name === 'sgd' ? 20 : 1);
          got.forEach((x, i) => expect(Math.abs(x - want[i]!)).toBeLessThanOrEqual(1e-4 * (Math.abs(want[i]!) + scale) + 1e-6));
          p.variable.dispose();
          opt.dispose();
        }),
        { numRuns: 50 },
      );
    });
  }
});
