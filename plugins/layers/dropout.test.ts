/**
 * The dropout family: inverted dropout preserves the mean; variational dropout shares one mask over time within a
 * sequence and differs between sequences; embedding word dropout zeroes every occurrence of a dropped word type.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, type PluginRegistry } from '../../core';
import { buildLayer, testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const build = (spec: object, shape: (number | null)[]) => buildLayer(registry, spec, shape);

describe('dropout', () => {
  it('keeps the expectation: the mean of the output equals the input within sampling error; identity at inference', () => {
    fc.assert(
      fc.property(fc.double({ min: 0.05, max: 0.8, noNaN: true }), fc.integer({ min: 0, max: 1e6 }), (rate, seed) => {
        const layer = build({ type: 'dropout', rate }, [null, 20000]);
        const x = tf.fill([1, 20000], 2);
        const y = layer.apply(x, { training: true, rng: new Rng(seed) });
        const v = Array.from(y.dataSync());
        const mean = v.reduce((a, b) => a + b, 0) / v.length;
        // Each element is 2/(1−p) with probability 1−p, else 0: sd 2·√(p/(1−p)), so the mean's sd is that / √n.
        expect(Math.abs(mean - 2)).toBeLessThan((5 * 2 * Math.sqrt(rate / (1 - rate))) / Math.sqrt(v.length));
        const kept = v.filter((e) => e !== 0);
        kept.forEach((e) => expect(e).toBeCloseTo(2 / (1 - rate), 4));
        expect(layer.apply(x, { training: false, rng: new Rng(seed) })).toBe(x);
        tf.dispose([x, y]);
      }),
      { numRuns: 20 },
    );
  });
});

describe('variational-dropout', () => {
  it('uses one mask per sequence for all time steps, and different masks for different sequences', () => {
    const layer = build({ type: 'variational-dropout', rate: 0.5 }, [null, 6, 40]);
    const x = tf.ones([3, 6, 40]);
    const y = layer.apply(x, { training: true, rng: new Rng(5) }).arraySync() as number[][][];
    for (const seq of y) for (const step of seq) expect(step).toEqual(seq[0]);
    expect(y[0]![0]).not.toEqual(y[1]![0]);
    x.dispose();
  });

  it('differs from standard dropout, whose mask changes at every step', () => {
    const layer = build({ type: 'dropout', rate: 0.5 }, [null, 6, 40]);
    const x = tf.ones([1, 6, 40]);
    const y = layer.apply(x, { training: true, rng: new Rng(5) }).arraySync() as number[][][];
    expect(y[0]![1]).not.toEqual(y[0]![0]);
    x.dispose();
  });
});

describe('embedding word dropout', () => {
  it('zeroes every occurrence of a dropped word and scales the kept ones by 1/(1 − rate)', () => {
    const rate = 0.5;
    const layer = build({ type: 'embedding', vocabSize: 6, dim: 4, dropout: rate, initializer: 'ones' }, [null, 10]);
    const ids = tf.tensor2d(
      [
        [0, 1, 2, 3, 4, 5, 0, 1, 2, 3],
        [5, 4, 3, 2, 1, 0, 5, 4, 3, 2],
      ],
      undefined,
      'int32',
    );
    const out = layer.apply(ids, { training: true, rng: new Rng(11) }).arraySync() as number[][][];
    const byWord = new Map<number, number>();
    const idv = ids.arraySync() as number[][];
    idv.forEach((row, b) =>
      row.forEach((w, t) => {
        const v = out[b]![t]![0]!;
        expect([0, 1 / (1 - rate)].some((e) => Math.abs(v - e) < 1e-6)).toBe(true);
        if (byWord.has(w)) expect(v).toBe(byWord.get(w));
        byWord.set(w, v);
      }),
    );
    expect(new Set(byWord.values()).size).toBe(2); // with this seed some words dropped and some kept
    ids.dispose();
  });
});

describe('positional-encoding', () => {
  it('adds sin(pos/10000^(2i/d)) and cos(...) to even and odd features (Vaswani et al. 2017, §3.5)', () => {
    const layer = build({ type: 'positional-encoding', maxLength: 50 }, [null, 7, 6]);
    const x = tf.zeros([1, 7, 6]);
    const pe = layer.apply(x, { training: false, rng: new Rng(0) }).arraySync() as number[][][];
    for (let pos = 0; pos < 7; pos++)
      for (let i = 0; i < 6; i++) {
        const angle = pos / 10000 ** ((2 * Math.floor(i / 2)) / 6);
        expect(pe[0]![pos]![i]).toBeCloseTo(i % 2 === 0 ? Math.sin(angle) : Math.cos(angle), 5);
      }
    x.dispose();
    layer.dispose();
  });
});
