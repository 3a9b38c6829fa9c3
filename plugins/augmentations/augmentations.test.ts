/**
 * Image augmentations, each geometric transformation checked against its definition (identity at 0, exact 90°
 * rotation, exact integer shifts, flips). That every registered one is seeded, keeps shape and dtype, does not leak
 * and rejects non-images is checked in test/conformance.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, type Augmentation, type PluginRegistry } from '../../core';
import { randomNormal, testRegistry } from '../../test/harness';
import { inverseAffine, resample } from './affine';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const aug = (spec: object) => registry.create('augmentation', spec as never) as Augmentation;
const arr = (t: tf.Tensor) => Array.from(t.dataSync());
const seeds = fc.integer({ min: 0, max: 1e6 });

describe('geometric definitions', () => {
  it('rotation by 0 and zoom by 1 are the identity', () => {
    fc.assert(
      fc.property(seeds, (seed) => {
        const x = randomNormal([2, 5, 6, 1], new Rng(seed));
        for (const a of [aug({ type: 'random-rotation', maxDegrees: 0 }), aug({ type: 'random-zoom', minScale: 1, maxScale: 1 })]) {
          const y = a.apply(x, new Rng(seed));
          arr(y).forEach((v, i) => expect(v).toBeCloseTo(x.dataSync()[i]!, 5));
          y.dispose();
        }
        x.dispose();
      }),
      { numRuns: 10 },
    );
  });

  it('rotation by 90° moves pixel (row r, column c) of a square image to (c, n−1−r) or its mirror', () => {
    fc.assert(
      fc.property(seeds, fc.integer({ min: 2, max: 6 }), (seed, n) => {
        const x = randomNormal([1, n, n, 1], new Rng(seed));
        // maxDegrees 90 with a uniform draw can give any angle; pin it by drawing from a range of one value.
        const y = aug({ type: 'random-rotation', maxDegrees: 90, interpolation: 'nearest' }) as Augmentation;
        const rng = { next: () => 1 - 1e-12, int: () => 0 } as unknown as Rng; // uniform draw -> +90° (counter-clockwise)
        const out = y.apply(x, rng).arraySync() as number[][][][];
        const xv = x.arraySync() as number[][][][];
        const ccw = xv[0]!.map((row, r) => row.map((_, c) => xv[0]![c]![n - 1 - r]![0]));
        const cw = xv[0]!.map((row, r) => row.map((_, c) => xv[0]![n - 1 - c]![r]![0]));
        const got = out[0]!.map((row) => row.map((p) => p[0]!));
        const near = (a: number[][]) => a.every((row, r) => row.every((v, c) => Math.abs(v - got[r]![c]!) < 1e-4));
        expect(near(ccw) || near(cw)).toBe(true);
        x.dispose();
      }),
      { numRuns: 10 },
    );
  });

  it('random-crop is an exact integer shift with a zero-filled border', () => {
    fc.assert(
      fc.property(seeds, fc.integer({ min: 1, max: 3 }), (seed, padding) => {
        const x = tf.add(randomNormal([1, 6, 7, 1], new Rng(seed)), 10); // no pixel is 0
        const y = aug({ type: 'random-crop', padding }).apply(x, new Rng(seed));
        const xv = (x.arraySync() as number[][][][])[0]!;
        const yv = (y.arraySync() as number[][][][])[0]!;
        // Find the shift from the first non-zero output pixel, then check every pixel against it.
        let found = false;
        for (let dy = -padding; dy <= padding && !found; dy++)
          for (let dx = -padding; dx <= padding && !found; dx++)
            found = yv.every((row, r) =>
              row.every((p, c) => {
                const [sr, sc] = [r - dy, c - dx];
                const want = sr >= 0 && sr < 6 && sc >= 0 && sc < 7 ? xv[sr]![sc]![0]! : 0;
                return Math.abs(p[0]! - want) < 1e-5;
              }),
            );
        expect(found).toBe(true);
        tf.dispose([x, y]);
      }),
      { numRuns: 15 },
    );
  });

  it('fillMode: pixels from outside the image are constant, reflected about the edge, wrapped or the nearest edge pixel', () => {
    // A shift of 2 to the right: output column c reads input column c − 2 (tf.image.transform's fill modes, Keras's names).
    const x = tf.tensor4d([1, 2, 3, 4, 5, 1, 2, 3, 4, 5], [1, 2, 5, 1]);
    const want = { constant: [7, 7, 1, 2, 3], reflect: [2, 1, 1, 2, 3], wrap: [4, 5, 1, 2, 3], nearest: [1, 1, 1, 2, 3] };
    for (const [fillMode, row] of Object.entries(want)) {
      const y = resample(x, new Rng(0), 'test', (_, h, w) => inverseAffine(h, w, { dx: 2 }), {
        interpolation: 'nearest',
        fillMode: fillMode as keyof typeof want,
        fill: 7,
      });
      expect(Array.from(y.dataSync()), fillMode).toEqual([...row, ...row]);
      y.dispose();
    }
    const t = aug({ type: 'random-rotation', maxDegrees: 30, fillMode: 'reflect' });
    const y = t.apply(tf.add(x, 0), new Rng(3));
    expect(y.shape).toEqual(x.shape);
    tf.dispose([x, y]);
  });

  it('flip with probability 1 mirrors exactly, and twice is the identity', () => {
    const x = randomNormal([2, 3, 4, 2], new Rng(1));
    const flip = aug({ type: 'random-flip', probability: 1, vertical: true });
    const once = flip.apply(x, new Rng(0));
    expect(arr(once)).toEqual(arr(tf.reverse(x, [1, 2])));
    expect(arr(flip.apply(once, new Rng(0)))).toEqual(arr(x));
    tf.dispose([x, once]);
  });
});
