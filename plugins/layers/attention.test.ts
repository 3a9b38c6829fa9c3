/**
 * Attention masks and incremental decoding: padded keys get zero weight; causal outputs at t ignore inputs after t;
 * cached step-by-step attention and decoding equal full recomputation; cross-attention differentiates correctly.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FUSED_KERNELS, hasKernel, Rng, type ForwardContext, type Layer, type PluginRegistry } from '../../core';
import { expectNoLeak, gradCheck, randomNormal, testRegistry } from '../../test/harness';
import { disposeCache, reorderCache, type KVCache, type MultiHeadAttention } from './multi-head-attention';
import type { TransformerDecoder } from './transformer-decoder';

// The registry at collection time, so that the tests of the native backend's fused decoding kernels can be skipped
// by name where the backend in use lacks them (LOOM_BACKEND=cpu, or no addon).
const registry: PluginRegistry = await testRegistry();
const fusedDecoding = hasKernel(FUSED_KERNELS.cachedAttention);

function build<T extends Layer>(spec: object, shape: (number | null)[], seed = 0): T {
  const l = registry.create('layer', spec as never) as T;
  l.build(shape, new Rng(seed));
  return l;
}
const ctxOf = (extra: Partial<ForwardContext> = {}): ForwardContext => ({ training: false, rng: new Rng(0), ...extra });
const close = (a: tf.Tensor, b: tf.Tensor, digits = 4) => Array.from(a.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(b.dataSync()[i]!, digits));
const seeds = fc.integer({ min: 0, max: 1e6 });

/**
 * Runs `decode` with the fused cached-attention kernel (from the default cache and from one of `capacity`, so that
 * it grows) and with the kernel unregistered (the composed ops), and checks the three bit for bit alike. Returns the
 * fused and composed outputs (the caller disposes them).
 */
function fusedAgainstComposed(decode: (fusedExpected: boolean, capacity?: number) => tf.Tensor, capacity: number): { fused: tf.Tensor; composed: tf.Tensor } {
  const config = tf.getKernel(FUSED_KERNELS.cachedAttention, tf.getBackend())!;
  const [fused, hinted] = [decode(true), decode(true, capacity)];
  tf.unregisterKernel(FUSED_KERNELS.cachedAttention, tf.getBackend());
  let composed: tf.Tensor;
  try {
    composed = decode(false);
  } finally {
    tf.registerKernel(config);
  }
  expect(Array.from(fused.dataSync())).toEqual(Array.from(composed.dataSync()));
  expect(Array.from(hinted.dataSync())).toEqual(Array.from(composed.dataSync()));
  hinted.dispose();
  return { fused, composed };
}

describe('multi-head attention', () => {
  it('gives padded keys zero weight, and padding does not change the real positions', () => {
    fc.assert(
      fc.property(seeds, fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), (seed, len, pad) => {
        const rng = new Rng(seed);
        const mha = build<MultiHeadAttention>({ type: 'mha', numHeads: 2 }, [null, null, 4], seed);
        const real = randomNormal([1, len, 4], rng);
        const padded = tf.concat([real, randomNormal([1, pad, 4], rng, 10)], 1);
        const mask = tf.tensor2d([[...Array(len).fill(1), ...Array(pad).fill(0)]]);
        const { probs } = mha.weights(padded, null, ctxOf(), { keyMask: mask });
        const w = probs.arraySync() as number[][][][];
        for (const head of w[0]!) for (const row of head) row.slice(len).forEach((p) => expect(p).toBe(0));
        const a = mha.apply(real, ctxOf());
        const b = tf.slice(mha.apply(padded, ctxOf({ mask })), [0, 0, 0], [1, len, 4]);
        close(a, b);
        tf.dispose([real, padded, mask, probs, a, b]);
        mha.dispose();
      }),
      { numRuns: 25 },
    );
  });

  it('causal: the output at t does not change when inputs after t change', () => {
    fc.assert(
      fc.property(seeds, fc.integer({ min: 2, max: 5 }), (seed, time) => {
        const rng = new Rng(seed);
        const t = rng.int(time - 1); // positions 0..t are kept, later ones replaced
        const mha = build<MultiHeadAttention>({ type: 'mha', numHeads: 2, causal: true }, [null, time, 4], seed);
        const x = randomNormal([2, time, 4], rng);
        const x2 = tf.concat([tf.slice(x, [0, 0, 0], [2, t + 1, 4]), randomNormal([2, time - t - 1, 4], rng)], 1);
        const [a, b] = [mha.apply(x, ctxOf()), mha.apply(x2, ctxOf())].map((y) => tf.slice(y, [0, 0, 0], [2, t + 1, 4]));
        close(a!, b!, 5);
        tf.dispose([x, x2, a!, b!]);
        mha.dispose();
      }),
      { numRuns: 25 },
    );
  });

  it('cached incremental self-attention equals full causal attention, without leaking', () => {
    const rng = new Rng(4);
    const mha = build<MultiHeadAttention>({ type: 'mha', numHeads: 2, causal: true }, [null, null, 6]);
    const x = randomNormal([2, 5, 6], rng);
    const full = mha.apply(x, ctxOf());
    const cache = {};
    const before = tf.memory().numTensors;
    const steps = [0, 1, 2, 3, 4].map((t) => tf.tidy(() => mha.attend(tf.slice(x, [0, t, 0], [2, 1, 6]), null, ctxOf(), { causal: true, cache })));
    const joined = tf.concat(steps, 1);
    close(joined, full, 5);
    tf.dispose([...steps, joined]);
    tf.dispose([(cache as { k: tf.Tensor }).k, (cache as { v: tf.Tensor }).v]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, full]);
    mha.dispose();
  });

  it.skipIf(!fusedDecoding)(
    "the fused decoding kernel (LoomCachedAttention) gives the composed ops' outputs bit for bit, through growth and a later multi-position step, without leaking (needs the native backend's fused kernel)",
    () => {
      const rng = new Rng(6);
      const mha = build<MultiHeadAttention>({ type: 'mha', numHeads: 3, causal: true }, [null, null, 12]);
      // Three sequences: a 2-position prompt, 40 single positions (past the first capacity of 32, or of the hinted
      // 5: the cache grows), then 2 at once.
      const x = randomNormal([3, 44, 12], rng);
      const spans = [[0, 2], ...Array.from({ length: 40 }, (_, i) => [2 + i, 1]), [42, 2]] as const;
      const decode = (fusedExpected: boolean, capacity?: number) => {
        const cache: KVCache = capacity === undefined ? {} : { capacity };
        const before = tf.memory().numTensors;
        let fusedLayout = false; // the fused kernel keeps the cache in its own layout (cache.length set)
        const outs = spans.map(([t, n]) => {
          const y = tf.tidy(() => mha.attend(tf.slice(x, [0, t, 0], [3, n, 12]), null, ctxOf(), { causal: true, cache }));
          fusedLayout ||= cache.length !== undefined;
          return y;
        });
        expect(fusedLayout).toBe(fusedExpected);
        const joined = tf.concat(outs, 1);
        tf.dispose(outs);
        disposeCache(cache);
        expect(tf.memory().numTensors).toBe(before + 1);
        return joined;
      };
      const { fused, composed } = fusedAgainstComposed(decode, 5);
      const full = mha.apply(x, ctxOf());
      close(fused, full, 5);
      tf.dispose([fused, composed, full, x]);
      mha.dispose();
    },
  );

  it.skipIf(!fusedDecoding)(
    "reorderCache gives each row its origin row's keys and values: the fused layout (filled positions only) and the composed one decode bit for bit alike (needs the native backend's fused layout)",
    () => {
      const rng = new Rng(8);
      const mha = build<MultiHeadAttention>({ type: 'mha', numHeads: 2, causal: true }, [null, null, 6]);
      const rows = 5;
      const x = randomNormal([rows, 9, 6], rng);
      // A random origin per step (rows repeated and dropped, as beam search's are), the same for both layouts.
      const origins = Array.from({ length: 9 }, () => Int32Array.from({ length: rows }, () => rng.int(rows)));
      const decode = (fusedExpected: boolean, capacity?: number) => {
        const cache: KVCache = capacity === undefined ? {} : { capacity };
        const before = tf.memory().numTensors;
        const outs: tf.Tensor[] = [];
        for (let t = 0; t < 9; t++) {
          outs.push(tf.tidy(() => mha.attend(tf.slice(x, [0, t, 0], [rows, 1, 6]), null, ctxOf(), { causal: true, cache })));
          expect(cache.length !== undefined).toBe(fusedExpected);
          reorderCache(cache, origins[t]!);
          expect(cache.length !== undefined).toBe(fusedExpected); // the reorder keeps the layout
        }
        const joined = tf.concat(outs, 1);
        tf.dispose(outs);
        disposeCache(cache);
        expect(tf.memory().numTensors).toBe(before + 1);
        return joined;
      };
      // Capacity 4 grows twice over 9 positions (the reordered spare room is zero, as growth leaves it).
      const { fused, composed } = fusedAgainstComposed(decode, 4);
      // The reorders mattered: without them the outputs differ.
      const plain = tf.tidy(() => mha.apply(x, ctxOf()));
      expect(Array.from(plain.dataSync())).not.toEqual(Array.from(composed.dataSync()));
      tf.dispose([fused, composed, plain, x]);
      mha.dispose();
    },
  );

  it.skipIf(!fusedDecoding)(
    "reorderCache in the fused layout swaps two buffers: each reorder writes into the cache's previous one, and the tensors stay as many (needs the native backend's fused layout)",
    () => {
      const rng = new Rng(3);
      const mha = build<MultiHeadAttention>({ type: 'mha', numHeads: 2, causal: true }, [null, null, 4]);
      const cache: KVCache = { capacity: 6 };
      const ids: object[][] = [];
      let tensors = 0;
      for (let t = 0; t < 5; t++) {
        tf.dispose(tf.tidy(() => mha.attend(randomNormal([3, 1, 4], rng), null, ctxOf(), { causal: true, cache })));
        reorderCache(cache, Int32Array.from([2, 0, 0]));
        ids.push([cache.k!.dataId, cache.back!.k.dataId]);
        if (t === 1) tensors = tf.memory().numTensors;
        if (t > 1) expect(tf.memory().numTensors).toBe(tensors);
      }
      // From the second reorder on, k is the data the back buffer held, and the back buffer k's.
      for (let t = 1; t < 5; t++) expect(ids[t]).toEqual([ids[t - 1]![1], ids[t - 1]![0]]);
      disposeCache(cache);
      mha.dispose();
    },
  );

  it('cacheMemory caches, bit for bit, the keys and values cross-attention caches from the repeated memory', () => {
    // A small odd case and G2P's beam search (256 words × 24 positions, d 256, 4 heads, beam 4): the projection of
    // the un-repeated memory takes a different number of rows through the product, which must not change a bit.
    // With the fused kernel (LoomMemoryAttention) the cache holds each item's keys once, for `repeat` rows.
    for (const [items, s, d, heads, beam] of [
      [3, 5, 6, 2, 3],
      [256, 24, 256, 4, 4],
    ] as const) {
      const mha = build<MultiHeadAttention>({ type: 'mha', numHeads: heads }, [null, null, d], items);
      const memory = randomNormal([items, s, d], new Rng(items));
      const rows = Int32Array.from({ length: items * beam }, (_, r) => Math.floor(r / beam));
      const query = randomNormal([items * beam, 1, d], new Rng(2));
      const repeated = tf.gather(memory, rows);
      const viaWeights: KVCache = {},
        primed: KVCache = {};
      tf.tidy(() => {
        mha.weights(query, repeated, ctxOf(), { cache: viaWeights });
      });
      mha.cacheMemory(memory, primed, rows);
      expect(primed.repeat).toBe(hasKernel(FUSED_KERNELS.memoryAttention) ? beam : undefined);
      const unshared = (x: tf.Tensor) => (primed.repeat ? tf.gather(x, rows) : x.clone());
      const [k, v] = [unshared(primed.k!), unshared(primed.v!)];
      expect(k.shape).toEqual(viaWeights.k!.shape);
      expect(Array.from(k.dataSync())).toEqual(Array.from(viaWeights.k!.dataSync()));
      expect(Array.from(v.dataSync())).toEqual(Array.from(viaWeights.v!.dataSync()));
      tf.dispose([k, v]);
      disposeCache(viaWeights);
      disposeCache(primed);
      tf.dispose([memory, query, repeated]);
      mha.dispose();
    }
  });

  it.skipIf(!hasKernel(FUSED_KERNELS.memoryAttention))(
    "decoding's cross-attention over a cached memory (LoomMemoryAttention) gives the composed ops' outputs bit for bit, shared by a beam or per row, masked or not, without leaking (needs the native backend's fused kernel)",
    () => {
      fc.assert(
        fc.property(
          seeds,
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 4 }),
          fc.integer({ min: 1, max: 6 }),
          fc.boolean(),
          fc.boolean(),
          (seed, items, beam, s, masked, shuffled) => {
            const rng = new Rng(seed);
            const d = 6;
            const mha = build<MultiHeadAttention>({ type: 'mha', numHeads: 2 }, [null, null, d], seed);
            const memory = randomNormal([items, s, d], rng);
            // Rows that repeat each item in order (a beam search's: the fused kernel reads the memory once per item), or
            // in another order (the cache then holds the gathered rows).
            const rows = Int32Array.from({ length: items * beam }, (_, r) => (shuffled ? items - 1 - (r % items) : Math.floor(r / beam)));
            const mask = tf.tensor2d(
              Float32Array.from({ length: items * s }, (_, i) => (!masked || i % s === 0 || rng.next() < 0.6 ? 1 : 0)),
              [items, s],
            );
            const keyMask = tf.gather(mask, rows);
            const repeatedMemory = tf.gather(memory, rows);
            const steps = [0, 1, 2].map(() => randomNormal([items * beam, 1, d], rng));
            let calls = 0;
            const decode = () => {
              const cache: KVCache = {};
              const before = tf.memory().numTensors;
              mha.cacheMemory(memory, cache, rows);
              const outs = steps.map((q) => tf.tidy(() => mha.attend(q, repeatedMemory, ctxOf(), { keyMask, cache })));
              const joined = tf.concat(outs, 1);
              tf.dispose(outs);
              disposeCache(cache);
              expect(tf.memory().numTensors).toBe(before + 1);
              return joined;
            };
            const config = tf.getKernel(FUSED_KERNELS.memoryAttention, tf.getBackend())!;
            tf.unregisterKernel(config.kernelName, config.backendName);
            let composed: tf.Tensor, fused: tf.Tensor;
            try {
              composed = decode();
              tf.registerKernel({ ...config, kernelFunc: (args) => (calls++, config.kernelFunc(args)) });
              fused = decode();
            } finally {
              tf.unregisterKernel(config.kernelName, config.backendName);
              tf.registerKernel(config);
            }
            expect(calls).toBe(steps.length);
            expect(Array.from(fused.dataSync())).toEqual(Array.from(composed.dataSync()));
            tf.dispose([memory, mask, keyMask, repeatedMemory, ...steps, fused, composed]);
            mha.dispose();
          },
        ),
        { numRuns: 25 },
      );
    },
  );

  it('cross-attention: gradients with respect to queries, memory and weights match finite differences', () => {
    const rng = new Rng(9);
    const mha = build<MultiHeadAttention>({ type: 'mha', numHeads: 2 }, [null, null, 4]);
    const q = tf.variable(randomNormal([2, 3, 4], rng));
    const mem = tf.variable(randomNormal([2, 5, 4], rng));
    const mask = tf.tensor2d([
      [1, 1, 1, 1, 1],
      [1, 1, 1, 0, 0],
    ]);
    gradCheck('cross-attention', () => mha.attend(q, mem, ctxOf(), { keyMask: mask }), [q, mem, ...mha.parameters().map((p) => p.variable)], rng);
    tf.dispose([q, mem, mask]);
    mha.dispose();
  });
});

describe('padding masks through a model', () => {
  it('embedding maskZero: padding ids change nothing at the real positions of an encoder', () => {
    fc.assert(
      fc.property(seeds, fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), (seed, len, pad) => {
        const rng = new Rng(seed);
        const emb = build<Layer>({ type: 'embedding', vocabSize: 9, dim: 4, maskZero: true }, [null, null], seed);
        const enc = build<Layer>({ type: 'transformer-encoder', numHeads: 2, ff: 8, dropout: 0 }, [null, null, 4], seed);
        const ids = Array.from({ length: len }, () => 1 + rng.int(8));
        const run = (row: number[]) => {
          const ctx = ctxOf();
          const x = tf.tensor2d([row], undefined, 'int32');
          const y = tf.tidy(() => tf.slice(enc.apply(emb.apply(x, ctx), ctx), [0, 0, 0], [1, len, 4]));
          tf.dispose([x, ctx.mask!]);
          return y;
        };
        const [a, b] = [run(ids), run([...ids, ...Array(pad).fill(0)])];
        close(a, b, 4);
        tf.dispose([a, b]);
        emb.dispose();
        enc.dispose();
      }),
      { numRuns: 15 },
    );
  });
});

describe('transformer decoder', () => {
  function setup(seed: number, preNorm: boolean) {
    const rng = new Rng(seed);
    const dec = build<TransformerDecoder>({ type: 'transformer-decoder', numHeads: 2, ff: 8, dropout: 0, preNorm }, [null, null, 4], seed);
    const memory = randomNormal([2, 3, 4], rng);
    const memoryMask = tf.tensor2d([
      [1, 1, 1],
      [1, 1, 0],
    ]);
    return { rng, dec, memory, memoryMask };
  }

  it('with memory: gradients match finite differences and the output at t ignores targets after t', () => {
    fc.assert(
      fc.property(seeds, fc.boolean(), (seed, preNorm) => {
        const { rng, dec, memory, memoryMask } = setup(seed, preNorm);
        const x = tf.variable(randomNormal([2, 4, 4], rng));
        const ctx = () => ctxOf({ memory, memoryMask });
        gradCheck(`decoder preNorm=${preNorm}`, () => dec.apply(x, ctx()), [x, ...dec.parameters().map((p) => p.variable)], rng);
        const x2 = tf.concat([tf.slice(x, [0, 0, 0], [2, 2, 4]), randomNormal([2, 2, 4], rng)], 1);
        close(tf.slice(dec.apply(x, ctx()), [0, 0, 0], [2, 2, 4]), tf.slice(dec.apply(x2, ctx()), [0, 0, 0], [2, 2, 4]), 5);
        expectNoLeak(() => tf.dispose(tf.tidy(() => dec.apply(x, ctx()))));
        tf.dispose([x, x2, memory, memoryMask]);
        dec.dispose();
      }),
      { numRuns: 4 },
    );
  });

  it('cached step-by-step decoding equals full decoding', () => {
    const { rng, dec, memory, memoryMask } = setup(1, false);
    const x = randomNormal([2, 5, 4], rng);
    const ctx = ctxOf({ memory, memoryMask });
    const full = dec.apply(x, ctx);
    const cache = dec.newCache();
    const steps = [0, 1, 2, 3, 4].map((t) => tf.tidy(() => dec.step(tf.slice(x, [0, t, 0], [2, 1, 4]), ctx, cache)));
    const joined = tf.concat(steps, 1);
    close(joined, full, 4);
    dec.releaseCache(cache);
    tf.dispose([...steps, joined, x, full, memory, memoryMask]);
    dec.dispose();
  });

  it('without memory and crossAttention on, says what is missing', () => {
    const dec = build<TransformerDecoder>({ type: 'transformer-decoder', numHeads: 1, ff: 4 }, [null, 2, 2]);
    expect(() => tf.tidy(() => dec.apply(tf.zeros([1, 2, 2]), ctxOf()))).toThrow(/transformer-decoder.*ctx\.memory.*crossAttention: false/);
    dec.dispose();
  });
});
