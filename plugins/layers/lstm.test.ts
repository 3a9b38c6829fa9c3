/**
 * LSTM state and recurrent dropout: stateful halves reproduce the whole sequence; recurrent (variational) dropout
 * is one mask on h_{t−1} shared by every time step, i.e. the same as scaling the rows of U by that mask.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, type Layer, type PluginRegistry } from '../../core';
import { randomNormal, testRegistry } from '../../test/harness';
import { dropoutMask } from './dropout';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

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
});
