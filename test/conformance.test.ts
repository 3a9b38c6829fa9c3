/**
 * Conformance: every registered plugin of a kind is checked here, so a new plugin is tested the moment it is
 * registered. Layers, activations and losses: gradients against finite differences, config round-trip, no
 * tensor leak. Optimizers: they minimise a quadratic, their state dict round-trips, they do not leak.
 * Initializers: shape, determinism under a seed, config round-trip.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, type JsonObject, type Layer, type PluginExample, type PluginKind, type PluginRegistry } from '../core';
import { cpuBackends, expectNoLeak, gradCheck, randomNormal, testRegistry } from './harness';

let registry: PluginRegistry;

describe.each(await cpuBackends())('on backend %s', (backend) => {
  beforeAll(async () => {
    registry = await testRegistry(backend);
  });

  function examplesOf(kind: PluginKind, name: string): PluginExample[] {
    return registry.get(kind, name).examples ?? [{ inputShape: [2, 5], target: 'classes' }];
  }

  /** Rebuilding a plugin from its own spec gives the same spec, and the spec is plain JSON. */
  function expectSpecRoundTrip(kind: PluginKind, options: JsonObject, name: string): void {
    const a = registry.create(kind, { type: name, ...options });
    expect(JSON.parse(JSON.stringify(a.spec))).toEqual(a.spec);
    const b = registry.create(kind, a.spec);
    expect(b.spec).toEqual(a.spec);
    expect(a.spec.type).toBe(name);
  }

  const seeds = fc.integer({ min: 0, max: 2 ** 30 });

  describe('every layer', () => {
    it('is registered with examples', () => {
      for (const name of registry.names('layer')) expect(registry.get('layer', name).examples?.length, `layer ${name} declares examples`).toBeGreaterThan(0);
    });

    it('has gradients matching finite differences, a round-tripping config and no tensor leak', () => {
      for (const name of registry.names('layer')) {
        for (const ex of examplesOf('layer', name)) {
          fc.assert(
            fc.property(seeds, fc.integer({ min: 1, max: 3 }), (seed, batch) => {
              const rng = new Rng(seed);
              const shape = [batch, ...ex.inputShape!.slice(1)];
              const layer = registry.create('layer', { type: name, ...ex.options }) as Layer;
              layer.build([null, ...shape.slice(1)], rng);
              // Integer inputs (token ids) are data, not differentiated; real inputs are checked like weights.
              const ints = ex.inputInts;
              const x = ints
                ? tf.variable(tf.tensor(Int32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.int(ints)), shape, 'int32'), false)
                : tf.variable(randomNormal(shape, rng));
              const wrt = [...(ints ? [] : [x]), ...layer.parameters().map((p) => p.variable)];
              const ctx = () => ({ training: true, rng: new Rng(seed) });
              try {
                gradCheck(`layer ${name} ${JSON.stringify(ex.options ?? {})} on [${shape}]`, () => layer.apply(x, ctx()), wrt, rng);
                expectNoLeak(() => {
                  const { value, grads } = tf.variableGrads(() => tf.sum(layer.apply(x, ctx())) as tf.Scalar, wrt);
                  tf.dispose([value, ...Object.values(grads)]);
                });
              } finally {
                x.dispose();
                layer.dispose();
              }
            }),
            { numRuns: 3 },
          );
          expectSpecRoundTrip('layer', ex.options ?? {}, name);
        }
      }
    });
  });

  describe('every activation', () => {
    it('has gradients matching finite differences, a round-tripping config and no tensor leak', () => {
      for (const name of registry.names('activation')) {
        fc.assert(
          fc.property(seeds, (seed) => {
            const rng = new Rng(seed);
            const act = registry.create('activation', name);
            const x = tf.variable(randomNormal([3, 5], rng));
            try {
              gradCheck(`activation ${name}`, () => act.apply(x), [x], rng);
              expectNoLeak(() => tf.tidy(() => act.apply(x).clone()).dispose());
            } finally {
              x.dispose();
            }
          }),
          { numRuns: 5 },
        );
        expectSpecRoundTrip('activation', {}, name);
      }
    });
  });

  describe('every loss', () => {
    it('has gradients matching finite differences, a round-tripping config and no tensor leak', () => {
      for (const name of registry.names('loss')) {
        for (const ex of examplesOf('loss', name)) {
          fc.assert(
            fc.property(seeds, (seed) => {
              const rng = new Rng(seed);
              const loss = registry.create('loss', { type: name, ...ex.options });
              const shape = ex.inputShape!;
              const classes = shape.at(-1)!;
              const rows = shape.slice(0, -1);
              const yTrue =
                ex.target === 'same' ? randomNormal(shape, rng) : tf.tensor(Int32Array.from({ length: rows.reduce((a, b) => a * b, 1) }, () => rng.int(classes)), rows, 'int32');
              const yPred = tf.variable(randomNormal(shape, rng, 2));
              try {
                gradCheck(`loss ${name} ${JSON.stringify(ex.options ?? {})}`, () => loss.compute(yTrue, yPred), [yPred], rng);
                expectNoLeak(() => loss.compute(yTrue, yPred).dispose());
              } finally {
                tf.dispose([yTrue, yPred]);
              }
            }),
            { numRuns: 5 },
          );
          expectSpecRoundTrip('loss', ex.options ?? {}, name);
        }
      }
    });
  });

  describe('every optimizer', () => {
    const quadratic = (w: tf.Variable, c: tf.Tensor) => tf.sum(tf.square(tf.sub(w, c))) as tf.Scalar;

    it('minimises a quadratic, round-trips its state dict and does not leak', () => {
      for (const name of registry.names('optimizer')) {
        const rng = new Rng(3);
        const c = randomNormal([4, 3], rng);
        // Optimizers may declare example options (a learning rate suited to them); otherwise lr 0.05.
        const options = registry.get('optimizer', name).examples?.[0]?.options ?? { lr: 0.05 };
        const make = () => registry.create('optimizer', { type: name, ...options });
        const param = { name: 'w', variable: tf.variable(tf.zeros([4, 3])), role: 'kernel' as const, trainable: true };
        const opt = make();
        const step = () => {
          const { value, grads } = tf.variableGrads(() => quadratic(param.variable, c), [param.variable]);
          opt.step([param], { w: grads[param.variable.name]! });
          tf.dispose([value, ...Object.values(grads)]);
        };
        const start = quadratic(param.variable, c).dataSync()[0]!;
        for (let i = 0; i < 150; i++) step();
        expect(quadratic(param.variable, c).dataSync()[0]!, `${name} reduces the loss`).toBeLessThan(start * 0.05);
        expectNoLeak(step);

        // State dict: a fresh optimizer loaded from the state continues exactly like the original.
        const state = opt.stateDict();
        const twin = make();
        const twinParam = { ...param, variable: tf.variable(param.variable.clone()) };
        twin.loadStateDict(JSON.parse(JSON.stringify(state, (_k, v) => (v instanceof Float32Array ? Array.from(v) : v)), (k, v) => (k === 'values' ? Float32Array.from(v) : v)), [twinParam]);
        const g = randomNormal([4, 3], rng);
        opt.step([param], { w: g });
        twin.step([twinParam], { w: g });
        expect(Array.from(twinParam.variable.dataSync())).toEqual(Array.from(param.variable.dataSync()));
        expect(() => twin.loadStateDict({ ...state, slots: { nope: state.slots.w! } }, [twinParam])).toThrow(/nope/);
        tf.dispose([c, g, param.variable, twinParam.variable]);
        opt.dispose();
        twin.dispose();
        expectSpecRoundTrip('optimizer', options, name);
      }
    });
  });

  describe('every initializer', () => {
    it('fills the requested shape with finite values, deterministically under a seed', () => {
      for (const name of registry.names('initializer')) {
        fc.assert(
          fc.property(seeds, fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 4 }), (seed, shape) => {
            const init = registry.create('initializer', name);
            const a = init.init(shape, new Rng(seed));
            const b = init.init(shape, new Rng(seed));
            try {
              expect(a.shape).toEqual(shape);
              const av = a.dataSync();
              expect(av.every(Number.isFinite)).toBe(true);
              expect(Array.from(b.dataSync())).toEqual(Array.from(av));
            } finally {
              tf.dispose([a, b]);
            }
          }),
          { numRuns: 10 },
        );
        expectSpecRoundTrip('initializer', {}, name);
      }
    });
  });

  describe('every regularizer', () => {
    it('has a penalty gradient matching finite differences and a round-tripping config', () => {
      for (const name of registry.names('regularizer')) {
        fc.assert(
          fc.property(seeds, (seed) => {
            const rng = new Rng(seed);
            const reg = registry.create('regularizer', name);
            const w = tf.variable(randomNormal([4, 3], rng));
            try {
              gradCheck(`regularizer ${name}`, () => reg.penalty(w), [w], rng);
              expectNoLeak(() => reg.penalty(w).dispose());
            } finally {
              w.dispose();
            }
          }),
          { numRuns: 3 },
        );
        expectSpecRoundTrip('regularizer', {}, name);
      }
    });
  });

  describe('every plugin', () => {
    it('lists a JSON options schema and a description', () => {
      for (const p of registry.list()) {
        expect(p.description.length, `${p.kind} ${p.name}`).toBeGreaterThan(5);
        expect((p.options as { type?: string }).type, `${p.kind} ${p.name} options schema`).toBe('object');
      }
    });
  });
});
