/** Average pooling against its definition (the mean of the real pixels of each window) and mask-aware global pooling. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, type PluginRegistry } from '../../core';
import { buildLayer, randomNormal, testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const build = (spec: object, shape: (number | null)[]) => buildLayer(registry, spec, shape);

describe('avg-pool2d', () => {
  it('is the mean over the real pixels of each window, for valid and same padding', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.constantFrom('valid', 'same'),
        fc.integer({ min: 0, max: 1e6 }),
        (h, w, k, s, padding, seed) => {
          fc.pre(padding === 'same' || (k <= h && k <= w));
          const layer = build({ type: 'avg-pool2d', poolSize: k, strides: s, padding }, [null, h, w, 1]);
          const x = randomNormal([1, h, w, 1], new Rng(seed));
          const got = layer.apply(x, { training: false, rng: new Rng(0) }).arraySync() as number[][][][];
          const xv = x.arraySync() as number[][][][];
          const [oh, ow] = padding === 'same' ? [Math.ceil(h / s), Math.ceil(w / s)] : [Math.floor((h - k) / s) + 1, Math.floor((w - k) / s) + 1];
          const top = padding === 'same' ? Math.floor(Math.max((oh - 1) * s + k - h, 0) / 2) : 0;
          const left = padding === 'same' ? Math.floor(Math.max((ow - 1) * s + k - w, 0) / 2) : 0;
          expect([got[0]!.length, got[0]![0]!.length]).toEqual([oh, ow]);
          for (let i = 0; i < oh; i++)
            for (let j = 0; j < ow; j++) {
              let sum = 0;
              let n = 0;
              for (let a = i * s - top; a < i * s - top + k; a++)
                for (let b = j * s - left; b < j * s - left + k; b++) if (a >= 0 && a < h && b >= 0 && b < w) (sum += xv[0]![a]![b]![0]!), n++;
              expect(got[0]![i]![j]![0]).toBeCloseTo(sum / n, 5);
            }
          x.dispose();
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('global-pool', () => {
  it('pools a padded sequence to the same vector as the unpadded one when the mask is given', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('avg', 'max'),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 1e6 }),
        (op, len, pad, seed) => {
          const layer = build({ type: 'global-pool', op }, [null, null, 3]);
          const rng = new Rng(seed);
          const real = randomNormal([1, len, 3], rng);
          const padded = tf.concat([real, randomNormal([1, pad, 3], rng, 100)], 1);
          const mask = tf.tensor2d([[...Array(len).fill(1), ...Array(pad).fill(0)]]);
          const a = layer.apply(real, { training: false, rng });
          const b = layer.apply(padded, { training: false, rng, mask });
          Array.from(b.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(a.dataSync()[i]!, 4));
          tf.dispose([real, padded, mask, a, b]);
        },
      ),
      { numRuns: 30 },
    );
  });
});
