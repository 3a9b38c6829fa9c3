/**
 * LSTM state and recurrent dropout: stateful halves reproduce the whole sequence; recurrent (variational) dropout
 * is one mask on h_{t−1} shared by every time step, i.e. the same as scaling the rows of U by that mask.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { carriedStateTensors, FUSED_KERNELS, hasKernel, Rng, Sequential, type Layer, type JsonObject, type PluginRegistry } from '../../core';
import { randomNormal, testRegistry } from '../../test/harness';
import { dropoutMask } from './dropout';

// The registry at collection time, so that the test of the native backend's fused cell kernels can be skipped by name
// where the backend in use lacks them (LOOM_BACKEND=cpu, or no addon).
const registry: PluginRegistry = await testRegistry();

const build = (spec: object, shape: (number | null)[]) => {
  const l = registry.create('layer', { type: 'lstm', ...spec } as never) as Layer & { resetStates(): void };
  l.build(shape, new Rng(1));
  return l;
};

describe('lstm', () => {
  it('stateful: two half sequences give the output of the whole; resetStates starts again from zero', () => {
    const whole = build({ units: 4 }, [null, 6, 2]);
    const halves = build({ units: 4, stateful: true }, [null, 3, 2]);
    const x = randomNormal([2, 6, 2], new Rng(3));
    const ctx = { training: false, rng: new Rng(0) };
    const full = whole.apply(x, ctx);
    const a = halves.apply(tf.slice(x, [0, 0, 0], [2, 3, 2]), ctx);
    const b = halves.apply(tf.slice(x, [0, 3, 0], [2, 3, 2]), ctx);
    expect(Array.from(tf.concat([a, b], 1).dataSync())).toEqual(Array.from(full.dataSync()).map((v) => expect.closeTo(v, 5)));
    halves.resetStates();
    expect(Array.from(halves.apply(tf.slice(x, [0, 0, 0], [2, 3, 2]), ctx).dataSync())).toEqual(Array.from(a.dataSync()));
    whole.dispose();
    halves.dispose();
  });

  it("two models in one process: each one's carried state is its own (listed, saved, restored and reset apart from the other's)", () => {
    const model = (seed: number) => {
      const m = new Sequential(
        {
          inputShape: [3, 2],
          layers: [
            { type: 'lstm', units: 4, stateful: true },
            { type: 'dense', units: 2 },
          ],
        },
        registry,
      );
      m.build(undefined, new Rng(seed));
      return m;
    };
    const [a, b] = [model(1), model(2)];
    const ctx = { training: false, rng: new Rng(0) };
    const x = [0, 1, 2].map((i) => randomNormal([2, 3, 2], new Rng(10 + i)));
    const out = (m: Sequential, xi: tf.Tensor) => tf.tidy(() => Array.from(m.apply(xi, ctx).dataSync()));
    const own = (m: Sequential) => {
      const state = m.getState() as Record<string, { shape: number[]; h: number[]; c: number[] }>;
      return Object.values(state).flatMap((s) => (s ? [s.h, s.c] : []));
    };
    expect([carriedStateTensors(a), carriedStateTensors(b)]).toEqual([[], []]);
    out(a, x[0]!);
    expect(carriedStateTensors(a).map((t) => Array.from(t.dataSync()))).toEqual(own(a)); // h and c of a's LSTM
    expect(carriedStateTensors(b)).toEqual([]); // b has run no batch: it carries nothing, whatever a carries
    out(b, x[0]!);
    const [listA, listB] = [carriedStateTensors(a), carriedStateTensors(b)];
    expect([listA.length, listB.length]).toEqual([2, 2]);
    expect(listA.some((t) => listB.includes(t))).toBe(false);
    expect(listB.map((t) => Array.from(t.dataSync()))).toEqual(own(b));
    // Saved after batch 0, a continues with batch 1; restored, batch 1 gives the same outputs bit for bit; b untouched.
    const savedA = a.getState();
    const stateB = own(b);
    const next = out(a, x[1]!);
    a.setState(savedA);
    expect(own(b)).toEqual(stateB);
    expect(out(a, x[1]!)).toEqual(next);
    a.resetStates();
    expect([carriedStateTensors(a).length, carriedStateTensors(b).length]).toEqual([0, 2]);
    expect(own(b)).toEqual(stateB);
    a.dispose();
    expect(carriedStateTensors(b).map((t) => Array.from(t.dataSync()))).toEqual(stateB);
    b.dispose();
    tf.dispose(x);
  });

  it('a stateful LSTM inside residual and concatenate branches: its state is listed, saved, restored and reset through the model', () => {
    // Before, the composites forwarded resetStates only: the model's state was {} (checkpoints and mid-epoch
    // validation lost the carried h and c), and readToHost never fetched the carried tensors.
    const lstm = { type: 'lstm', units: 4, stateful: true, returnSequences: true };
    const composites: ({ type: string } & JsonObject)[] = [
      { type: 'residual', layers: [lstm] },
      { type: 'concatenate', branches: [[{ type: 'dense', units: 2 }], [{ ...lstm, units: 3 }]] },
    ];
    for (const layer of composites) {
      const m = new Sequential({ inputShape: [3, 4], layers: [layer, { type: 'dense', units: 2 }] }, registry);
      m.build(undefined, new Rng(1));
      const ctx = { training: false, rng: new Rng(0) };
      const x = [0, 1].map((i) => randomNormal([2, 3, 4], new Rng(20 + i)));
      const out = (xi: tf.Tensor) => tf.tidy(() => Array.from(m.apply(xi, ctx).dataSync()));
      expect(carriedStateTensors(m)).toEqual([]);
      expect(JSON.stringify(m.getState()), layer.type).toMatch(/\/lstm_\d":null/); // named, nothing carried yet
      const first = out(x[0]!);
      expect(carriedStateTensors(m)).toHaveLength(2); // h and c
      const saved = JSON.parse(JSON.stringify(m.getState()));
      const carried = JSON.stringify(saved)
        .match(/"h":\[([^\]]*)\]/)?.[1]
        ?.split(',')
        .map(Number);
      expect(carried, layer.type).toEqual(Array.from(carriedStateTensors(m)[0]!.dataSync()));
      const next = out(x[1]!);
      expect(next).not.toEqual(out(x[1]!)); // the state moved on: the same batch again gives other outputs
      m.setState(saved);
      expect(out(x[1]!), `${layer.type}: restored`).toEqual(next);
      m.resetStates();
      expect(out(x[0]!), `${layer.type}: reset`).toEqual(first);
      m.dispose();
      tf.dispose(x);
    }
  });

  it('recurrent dropout uses one mask on h for every time step (the rows of U scaled by it)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.double({ min: 0.1, max: 0.7, noNaN: true }), (seed, rate) => {
        const dropped = build({ units: 5, recurrentDropout: rate }, [null, 4, 3]);
        const plain = build({ units: 5 }, [null, 4, 3]);
        const x = randomNormal([1, 4, 3], new Rng(seed));
        const y = dropped.apply(x, { training: true, rng: new Rng(seed) });
        // The same mask the layer drew: the first seed of the same stream.
        const mask = dropoutMask(tf.ones([1, 5]), rate, new Rng(seed).nextSeed(), [1, 5]);
        const [, U] = plain.parameters();
        U!.variable.assign(tf.mul(dropped.parameters()[1]!.variable, tf.reshape(mask, [5, 1])));
        const want = plain.apply(x, { training: false, rng: new Rng(0) });
        Array.from(y.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(want.dataSync()[i]!, 5));
        expect(Array.from(dropped.apply(x, { training: false, rng: new Rng(seed) }).dataSync())).not.toEqual(Array.from(y.dataSync()));
        tf.dispose([x, y, mask, want]);
        dropped.dispose();
        plain.dispose();
      }),
      { numRuns: 15 },
    );
  });

  it.skipIf(!hasFusedCell())(
    "with the backend's fused cell kernels (native CPU): the outputs, carried state and every gradient of the composed ops, bit for bit",
    () => {
      const names = [FUSED_KERNELS.lstmCell, FUSED_KERNELS.lstmCellGrad];
      fc.assert(
        fc.property(
          fc.record({
            batch: fc.integer({ min: 1, max: 4 }),
            time: fc.integer({ min: 1, max: 6 }),
            features: fc.integer({ min: 1, max: 5 }),
            units: fc.integer({ min: 1, max: 9 }),
            returnSequences: fc.boolean(),
            recurrentDropout: fc.constantFrom(0, 0.3),
            seed: fc.integer({ min: 0, max: 1e6 }),
          }),
          ({ batch, time, features, units, returnSequences, recurrentDropout, seed }) => {
            const run = () => {
              const layer = build({ units, returnSequences, recurrentDropout, stateful: true }, [null, time, features]);
              const x = randomNormal([batch, time, features], new Rng(seed));
              const w = randomNormal(returnSequences ? [batch, time, units] : [batch, units], new Rng(seed + 1));
              const params = layer.parameters().map((p) => p.variable);
              const loss = () => {
                // Two batches: the second starts from the state the first carried.
                const ctx = { training: true, rng: new Rng(seed) };
                layer.apply(x, ctx).dispose();
                return tf.sum(tf.mul(layer.apply(x, ctx), w)) as tf.Scalar;
              };
              const { value, grads } = tf.variableGrads(loss, params);
              const out = [value, ...params.map((p) => grads[p.name]!), ...layer.carriedTensors!()].map((t) => Array.from(t.dataSync()));
              const dx = tf.grad((xi: tf.Tensor) => tf.sum(tf.mul(layer.apply(xi, { training: false, rng: new Rng(0) }), w)))(x);
              out.push(Array.from(dx.dataSync()));
              tf.dispose([x, w, value, dx, ...Object.values(grads)]);
              layer.dispose();
              return out;
            };
            const fused = run();
            const saved = names.map((n) => tf.getKernel(n, tf.getBackend())!);
            names.forEach((n) => tf.unregisterKernel(n, tf.getBackend()));
            try {
              expect(hasFusedCell()).toBe(false);
              expect(fused).toEqual(run());
            } finally {
              saved.forEach((k) => tf.registerKernel(k));
            }
          },
        ),
        { numRuns: 20 },
      );
    },
  );
});

/** Whether the active backend has the LSTM cell's fused kernels (the native CPU backend; not tfjs's JavaScript cpu). */
function hasFusedCell(): boolean {
  return hasKernel(FUSED_KERNELS.lstmCell) && hasKernel(FUSED_KERNELS.lstmCellGrad);
}
