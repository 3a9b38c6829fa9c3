/** GRU against a float64 loop over Cho et al. (2014) eq. 5-8, and stateful carry-over across batches. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, type Layer, type PluginRegistry } from '../../core';
import { randomNormal, testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const sig = (v: number) => 1 / (1 + Math.exp(-v));

/** h_t for every t, in float64, from the layer's own weights (gate blocks z, r, h along the last axis). */
function reference(x: number[][][], W: number[][], U: number[][], b: number[], bU: number[] | null, u: number): number[][][] {
  return x.map((seq) => {
    let h = new Array<number>(u).fill(0);
    return seq.map((xt) => {
      const xw = b.map((bj, j) => bj + xt.reduce((s, xi, i) => s + xi * W[i]![j]!, 0));
      const hu = (v: number[], j: number) => v.reduce((s, hi, i) => s + hi * U[i]![j]!, 0);
      const zr = Array.from({ length: 2 * u }, (_, j) => sig(xw[j]! + hu(h, j) + (bU ? bU[j]! : 0)));
      const r = zr.slice(u);
      const cand = Array.from({ length: u }, (_, k) => {
        const j = 2 * u + k;
        const rec = bU
          ? r[k]! * (hu(h, j) + bU[j]!)
          : hu(
              h.map((hi, i) => r[i]! * hi),
              j,
            );
        return Math.tanh(xw[j]! + rec);
      });
      h = h.map((hk, k) => zr[k]! * hk + (1 - zr[k]!) * cand[k]!);
      return h;
    });
  });
}

describe('gru', () => {
  it("matches a float64 loop over the paper's equations 5-8", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e6 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 4 }),
        fc.boolean(),
        (seed, batch, time, resetAfter) => {
          const rng = new Rng(seed);
          const layer = registry.create('layer', { type: 'gru', units: 3, resetAfter }) as Layer;
          layer.build([null, time, 2], rng);
          const x = randomNormal([batch, time, 2], rng);
          const y = tf.tidy(() => layer.apply(x, { training: false, rng }));
          const [W, U, b, bU] = layer.parameters().map((p) => p.variable.arraySync());
          const want = reference(x.arraySync() as number[][][], W as number[][], U as number[][], b as number[], (bU as number[] | undefined) ?? null, 3);
          const got = y.arraySync() as number[][][];
          got.flat(2).forEach((v, i) => expect(v).toBeCloseTo(want.flat(2)[i]!, 5));
          tf.dispose([x, y]);
          layer.dispose();
        },
      ),
      { numRuns: 20 },
    );
  });

  it('stateful: two half sequences give the output of the whole; resetStates starts again from zero', () => {
    const rng = new Rng(3);
    const whole = registry.create('layer', { type: 'gru', units: 4 }) as Layer;
    const halves = registry.create('layer', { type: 'gru', units: 4, stateful: true }) as Layer & { resetStates(): void };
    whole.build([null, 6, 2], new Rng(1));
    halves.build([null, 3, 2], new Rng(1));
    const x = randomNormal([2, 6, 2], rng);
    const ctx = { training: false, rng };
    const full = whole.apply(x, ctx);
    const a = halves.apply(tf.slice(x, [0, 0, 0], [2, 3, 2]), ctx);
    const b = halves.apply(tf.slice(x, [0, 3, 0], [2, 3, 2]), ctx);
    const joined = tf.concat([a, b], 1);
    expect(Array.from(joined.dataSync())).toEqual(Array.from(full.dataSync()).map((v) => expect.closeTo(v, 6)));
    halves.resetStates();
    const again = halves.apply(tf.slice(x, [0, 0, 0], [2, 3, 2]), ctx);
    expect(Array.from(again.dataSync())).toEqual(Array.from(a.dataSync()));
    tf.dispose([x, full, a, b, joined, again]);
    whole.dispose();
    halves.dispose();
  });
});
