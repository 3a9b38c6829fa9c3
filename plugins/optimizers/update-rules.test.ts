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

const sgd: Rule = (theta, grads, h, role) => {
  const t = [...theta];
  const b = t.map(() => 0);
  const wd = role === 'bias' ? 0 : (h.weightDecay ?? 0);
  for (const g0 of grads)
    for (let i = 0; i < t.length; i++) {
      const g = g0[i]! + wd * t[i]!;
      if (h.momentum === 0) t[i]! -= h.lr! * g;
      else {
        b[i] = h.momentum! * b[i]! + g;
        t[i]! -= h.lr! * (h.nesterov ? g + h.momentum! * b[i]! : b[i]!);
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
/** AdamW as PyTorch and Keras write it (Loshchilov & Hutter 2019, Algorithm 2, with their λ = αλ): θ ← θ(1 − αλ) − α m̂/(√v̂ + ε); no decay for biases. */
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
  [
    'sgd',
    sgd,
    fc
      .record({ lr: d(1e-3, 0.5), momentum: fc.constantFrom(0, 0.5, 0.9), nesterov: fc.boolean(), weightDecay: fc.constantFrom(0, 0.01, 0.1) })
      .map((h) => ({ ...h, nesterov: h.nesterov && h.momentum > 0 })), // Nesterov without momentum is refused (a test below)
  ],
  ['rmsprop', rmsprop, fc.record({ lr: d(1e-4, 0.1), rho: d(0.5, 0.99), epsilon: d(1e-7, 1e-3) })],
  ['adagrad', adagrad, fc.record({ lr: d(1e-3, 0.5), initialAccumulator: d(0.01, 1), epsilon: d(1e-7, 1e-3) })],
  ['adamw', adamw, fc.record({ lr: d(1e-4, 0.05), beta1: d(0, 0.95), beta2: d(0.9, 0.999), epsilon: d(1e-8, 1e-4), weightDecay: d(0, 0.3) })],
];

describe('update rules', () => {
  for (const [name, rule, hyper] of rules) {
    it(`${name} follows its paper's rule in float32 within 1e-4 of float64`, () => {
      fc.assert(
        fc.property(
          hyper,
          fc.constantFrom<ParamRole>('kernel', 'bias'),
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 1, max: 6 }),
          fc.infiniteStream(d(-2, 2)),
          (h, role, n, steps, values) => {
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
            // SGD's update is a sum of products (momentum can make it ~10 gradients a step): float32 rounding only, a
            // tolerance far below the effect of its weight decay. The adaptive rules divide by √v + ε: looser.
            const scale = (h.lr as number) * steps * (name === 'sgd' ? 20 : 1);
            const tol = name === 'sgd' ? 1e-6 : 1e-4;
            got.forEach((x, i) => expect(Math.abs(x - want[i]!)).toBeLessThanOrEqual(tol * (Math.abs(want[i]!) + scale) + 1e-6));
            p.variable.dispose();
            opt.dispose();
          },
        ),
        { numRuns: 50 },
      );
    });
  }
});

describe('parameter groups', () => {
  it('each parameter follows the rule with its own group options (first matching group wins)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...rules), fc.integer({ min: 1, max: 4 }), fc.infiniteStream(d(-2, 2)), ([name, rule, hyper], steps, values) => {
        const [h, hGroup] = fc.sample(hyper, { numRuns: 2, seed: Math.round((values.next().value as number) * 1e6) }) as [
          Record<string, number | boolean>,
          Record<string, number | boolean>,
        ];
        const take = (k: number) => Array.from({ length: k }, () => Math.fround(values.next().value as number));
        const init = { 'enc/kernel': take(3), 'enc/bias': take(2), 'dec/kernel': take(3) };
        // Group 1 selects the encoder by name; group 2 would also match enc/bias by role but comes later.
        const opt = registry.create('optimizer', {
          type: name,
          ...(h as JsonObject),
          groups: [
            { match: '^enc/', ...(hGroup as JsonObject) },
            { roles: ['bias'], lr: 1e-9 },
          ],
        });
        const params = Object.entries(init).map(([n, v]) => ({
          name: n,
          variable: tf.variable(tf.tensor(v)),
          role: (n.endsWith('bias') ? 'bias' : 'kernel') as ParamRole,
          trainable: true,
        }));
        const grads = Array.from({ length: steps }, () => Object.fromEntries(Object.entries(init).map(([n, v]) => [n, take(v.length)])));
        for (const g of grads) {
          const gt = Object.fromEntries(Object.entries(g).map(([n, v]) => [n, tf.tensor(v)]));
          opt.step(params, gt);
          tf.dispose(Object.values(gt));
        }
        for (const p of params) {
          const own = p.name.startsWith('enc/') ? hGroup : h;
          const want = rule(
            init[p.name as keyof typeof init],
            grads.map((g) => g[p.name]!),
            own as Record<string, number>,
            p.role,
          );
          const scale = (own.lr as number) * steps * (name === 'sgd' ? 20 : 1);
          Array.from(p.variable.dataSync()).forEach((x, i) =>
            expect(Math.abs(x - want[i]!), `${name} ${p.name}`).toBeLessThanOrEqual(1e-4 * (Math.abs(want[i]!) + scale) + 1e-6),
          );
          p.variable.dispose();
        }
        opt.dispose();
      }),
      { numRuns: 30 },
    );
  });

  it('a schedule scales every group by the same factor', () => {
    const opt = registry.create('optimizer', { type: 'sgd', lr: 0.1, groups: [{ roles: ['bias'], lr: 0.01 }] });
    const w = { name: 'w', variable: tf.variable(tf.tensor([1])), role: 'kernel' as ParamRole, trainable: true };
    const b = { name: 'b', variable: tf.variable(tf.tensor([1])), role: 'bias' as ParamRole, trainable: true };
    opt.learningRate = 0.05; // a schedule halved the rate
    const g = { w: tf.tensor([1]), b: tf.tensor([1]) };
    opt.step([w, b], g);
    expect(w.variable.dataSync()[0]).toBeCloseTo(1 - 0.05, 6);
    expect(b.variable.dataSync()[0]).toBeCloseTo(1 - 0.005, 6);
    tf.dispose([w.variable, b.variable, ...Object.values(g)]);
  });

  it('rejects a group that selects nothing or has a bad regular expression, naming the field', () => {
    expect(() => registry.create('optimizer', { type: 'adam', groups: [{ lr: 0.1 }] })).toThrow(/groups\.0.*selects by "match"/);
    expect(() => registry.create('optimizer', { type: 'adam', groups: [{ match: '(' }] })).toThrow(/groups\.0\.match.*invalid regular expression/);
    expect(() => registry.create('optimizer', { type: 'adam', groups: [{ match: 'x', momentum: 0.9 }] })).toThrow(/groups\.0.*momentum/);
    // Nesterov momentum without momentum would be plain SGD without a word (PyTorch refuses it too).
    expect(() => registry.create('optimizer', { type: 'sgd', nesterov: true })).toThrow(/nesterov.*momentum above 0/);
    expect(() => registry.create('optimizer', { type: 'sgd', nesterov: true, momentum: 0.9 })).not.toThrow();
  });
});

describe('optimizer state', () => {
  it('is put back only into an optimizer that keeps the same slots: another optimizer or configuration is an error naming both', () => {
    // Before, slots this optimizer does not keep were dropped without a word (SGD's momentum into plain SGD), and a
    // missing one was reported as a shape mismatch of [].
    const p = { name: 'w', variable: tf.variable(tf.tensor([1, 2, 3])), role: 'kernel' as ParamRole, trainable: true };
    const stepped = (spec: { type: string } & JsonObject) => {
      const o = registry.create('optimizer', spec);
      const g = tf.tensor([0.1, -0.2, 0.3]);
      o.step([p], { w: g });
      g.dispose();
      return o;
    };
    const momentum = stepped({ type: 'sgd', momentum: 0.9 });
    const plain = registry.create('optimizer', 'sgd');
    expect(() => plain.setState(momentum.getState(), [p])).toThrow(/parameter "w" has the slots .+ where this optimizer keeps none/);
    const adam = registry.create('optimizer', 'adam');
    expect(() => adam.setState(momentum.getState(), [p])).toThrow(/parameter "w" has the slots .+ where this optimizer keeps m, v/);
    const again = registry.create('optimizer', { type: 'sgd', momentum: 0.9 });
    again.setState(momentum.getState(), [p]);
    expect(again.getState()).toEqual(momentum.getState());
    for (const o of [momentum, plain, adam, again]) o.dispose();
    p.variable.dispose();
  });
});
