/**
 * The encoder-decoder Transformer: cached incremental decoding equals full decoding; encoder self-attention without
 * positions is permutation-equivariant; beam search with beam 1 equals greedy decoding, and on the fused decoding
 * kernel equals beam search on the composed ops bit for bit.
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectModel, FUSED_KERNELS, hasKernel, Rng, type Layer, type PluginRegistry } from '../../core';
import { randomNormal, testRegistry } from '../../test/harness';
import { bestCandidates, TransformerSeq2Seq } from './transformer-seq2seq';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const opts = { srcVocab: 9, tgtVocab: 7, srcLen: 5, tgtLen: 6, dModel: 8, numHeads: 2, ff: 16, layers: 2, dropout: 0 };
function model(seed: number, extra: object = {}): TransformerSeq2Seq {
  const m = expectModel(registry.create('model', { type: 'transformer-seq2seq', ...opts, ...extra }), TransformerSeq2Seq);
  m.build(m.inputShape, new Rng(seed));
  return m;
}
/** Random sources with trailing padding (id 0) and random decoder inputs starting with BOS (1). */
function batch(rng: Rng, b: number): { src: number[][]; tgt: number[][] } {
  const src = Array.from({ length: b }, () => {
    const len = 1 + rng.int(opts.srcLen);
    return Array.from({ length: opts.srcLen }, (_, i) => (i < len ? 1 + rng.int(opts.srcVocab - 1) : 0));
  });
  const tgt = Array.from({ length: b }, () => [1, ...Array.from({ length: opts.tgtLen - 1 }, () => 3 + rng.int(opts.tgtVocab - 3))]);
  return { src, tgt };
}
const ctx = { training: false, rng: new Rng(0) };

describe('transformer-seq2seq', () => {
  it('cached incremental decoding gives the logits of full (teacher-forced) decoding', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.boolean(), (seed, preNorm) => {
        const m = model(seed, { preNorm });
        const { src, tgt } = batch(new Rng(seed), 3);
        const x = tf.tensor2d(
          src.map((s, i) => [...s, ...tgt[i]!]),
          undefined,
          'int32',
        );
        const full = tf.tidy(() => m.apply(x, ctx));
        const s = tf.tensor2d(src, undefined, 'int32');
        const enc = m.encode(s, ctx);
        const caches = m.newCaches();
        const steps = tgt[0]!.map((_, t) =>
          tf.tidy(() =>
            m.step(
              tf.tensor2d(
                tgt.map((r) => [r[t]!]),
                undefined,
                'int32',
              ),
              t,
              enc.memory,
              enc.mask,
              caches,
              ctx,
            ),
          ),
        );
        const inc = tf.stack(steps, 1);
        Array.from(inc.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(full.dataSync()[i]!, 3));
        m.releaseCaches(caches);
        tf.dispose([x, full, s, enc.memory, enc.mask, inc, ...steps]);
        m.dispose();
      }),
      { numRuns: 4 },
    );
  });

  it('encoder self-attention without positions is permutation-equivariant (padding mask included)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 2, max: 6 }), (seed, time) => {
        const rng = new Rng(seed);
        const enc = registry.create('layer', { type: 'transformer-encoder', numHeads: 2, ff: 8, dropout: 0 }) as Layer;
        enc.build([null, null, 4], new Rng(seed));
        const x = randomNormal([2, time, 4], rng);
        const mask = tf.tensor2d([Array(time).fill(1), Array.from({ length: time }, (_, i) => (i === 0 ? 0 : 1))]);
        const perm = rng.shuffle(Array.from({ length: time }, (_, i) => i));
        const permute = (t: tf.Tensor) => tf.gather(t, perm, 1);
        const a = permute(enc.apply(x, { ...ctx, mask }));
        const b = enc.apply(permute(x), { ...ctx, mask: permute(mask) });
        Array.from(b.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(a.dataSync()[i]!, 4));
        tf.dispose([x, mask, a, b]);
        enc.dispose();
      }),
      { numRuns: 10 },
    );
  });

  it('beam search with a beam as wide as every hypothesis finds the exhaustive best output (Wu et al. 2016 score)', async () => {
    // (The search's stopping rule is checked on a constructed case in the next test.) Vocabulary 5 (pad 0, BOS 1, EOS 2, words 3 and 4), outputs of up to 4 tokens: beam 64 ≥ 4³ keeps every live
    // hypothesis, so the search is exact; the reference enumerates every output, scored by teacher-forced logits.
    const V = 5;
    const L = 4;
    const alpha = 0.6;
    const lp = (n: number) => ((5 + n) / 6) ** alpha;
    let compared = 0;
    for (let seed = 0; seed < 8; seed++) {
      const m = expectModel(
        registry.create('model', {
          type: 'transformer-seq2seq',
          srcVocab: 6,
          tgtVocab: V,
          srcLen: 3,
          tgtLen: L,
          dModel: 8,
          numHeads: 2,
          ff: 16,
          layers: 1,
          dropout: 0,
        }),
        TransformerSeq2Seq,
      );
      m.build(m.inputShape, new Rng(seed));
      const src = [3, 4, 5];
      const memo = new Map<string, number[]>();
      const next = (prefix: number[]) => {
        const key = prefix.join();
        if (!memo.has(key))
          memo.set(
            key,
            tf.tidy(() => {
              const dec = [1, ...prefix, ...Array(L).fill(3)].slice(0, L); // after the prefix: anything (causal)
              const out = tf.logSoftmax(m.apply(tf.tensor2d([[...src, ...dec]], undefined, 'int32'), ctx));
              return Array.from(tf.slice(out, [0, prefix.length, 0], [1, 1, V]).dataSync());
            }),
          );
        return memo.get(key)!;
      };
      // Every output over the words 3 and 4 (padding and BOS are never good outputs here, and the full forward pass
      // masks a decoder input of 0 where incremental decoding does not), ended by EOS or cut at L.
      let best = { tokens: [] as number[], score: -Infinity };
      const visit = (tokens: number[], logp: number) => {
        if (tokens.length === L) {
          if (logp / lp(L + 1) > best.score) best = { tokens, score: logp / lp(L + 1) };
          return;
        }
        const p = next(tokens);
        const ended = (logp + p[2]!) / lp(tokens.length + 1);
        if (ended > best.score) best = { tokens, score: ended };
        for (const w of [3, 4]) visit([...tokens, w], logp + p[w]!);
      };
      visit([], 0);
      const s = tf.tensor2d([src], undefined, 'int32');
      const [out] = await m.beamSearch(s, 64, L, alpha);
      s.dispose();
      m.dispose();
      if (out!.some((t) => t < 3)) continue; // a pad or BOS output: outside the reference's set
      compared++;
      expect(out, `seed ${seed}`).toEqual(best.tokens);
    }
    expect(compared).toBeGreaterThanOrEqual(4);
  });

  it('beam search keeps a live output that can still beat the finished ones, instead of stopping at `beam` finished', async () => {
    // A Markov stub of the decoder (log-probabilities by position and previous token), beam 2, no length penalty.
    // Step 0 ends the empty output (−5); step 1 ends [4] (−5.01) while [3, 3] lives at −0.06 and ends at step 2 at
    // ≈ −0.11. Before, the second finished output closed the source and the live [3, 3] was dropped: it returned [].
    const m = model(1, { tgtVocab: 5 });
    const dist = (eos: number, three: number, four: number) => {
      const p = [1e-6, 1e-6, eos, three, four];
      const sum = p.reduce((a, b) => a + b, 0);
      return p.map((v) => Math.log(v / sum));
    };
    const table = (position: number, prev: number) =>
      position === 0
        ? dist(Math.exp(-5), 1, Math.exp(-5))
        : prev === 3
          ? position === 1
            ? dist(0.0025, 0.995, 0.0025)
            : dist(0.95, 0.02, 0.02)
          : dist(0.99, 0.005, 0.005);
    m.step = (prev, position) => {
      const ids = Array.from(prev.dataSync());
      return tf.tensor2d(ids.map((id) => table(position, id)));
    };
    const s = tf.tensor2d([[3, 4, 5, 0, 0]], undefined, 'int32');
    expect(await m.beamSearch(s, 2, 3, 0)).toEqual([[3, 3]]);
    s.dispose();
    m.dispose();
  });

  it('beam search with beam 1 is greedy decoding', async () => {
    const m = model(3);
    const s = tf.tensor2d(batch(new Rng(4), 4).src, undefined, 'int32');
    expect(await m.beamSearch(s, 1, opts.tgtLen - 1, 0)).toEqual(await m.greedy(s, opts.tgtLen - 1));
    s.dispose();
    m.dispose();
  });

  it("beam search on the fused decoding kernel (many rows, reordered every step) gives the composed ops' log-probabilities bit for bit, and the same outputs", async () => {
    if (!hasKernel(FUSED_KERNELS.cachedAttention)) return; // only the native backend has it
    const config = tf.getKernel(FUSED_KERNELS.cachedAttention, tf.getBackend())!;
    const m = model(11);
    const s = tf.tensor2d(batch(new Rng(12), 5).src, undefined, 'int32');
    // Each step's logits (all rows), and whether the caches were in the fused kernel's layout.
    const run = async () => {
      const logits: number[][] = [];
      let fusedLayout = false;
      const step = m.step.bind(m);
      m.step = (prev, position, memory, memoryMask, caches, c) => {
        const y = step(prev, position, memory, memoryMask, caches, c);
        logits.push(Array.from(y.dataSync()));
        fusedLayout ||= caches.some((cache) => cache.self.length !== undefined);
        return y;
      };
      try {
        return { out: await m.beamSearch(s, 3, opts.tgtLen - 1), logits, fusedLayout };
      } finally {
        m.step = step;
      }
    };
    const fused = await run();
    tf.unregisterKernel(FUSED_KERNELS.cachedAttention, tf.getBackend());
    let composed: Awaited<ReturnType<typeof run>>;
    try {
      composed = await run();
    } finally {
      tf.registerKernel(config);
    }
    expect([fused.fusedLayout, composed.fusedLayout]).toEqual([true, false]);
    expect(fused.logits.length).toBeGreaterThan(2); // steps after reorders
    expect(fused.logits).toEqual(composed.logits);
    expect(fused.out).toEqual(composed.out);
    s.dispose();
    m.dispose();
  });

  it("a beam's best candidates are the first of a stable sort of all of them by score (ties in (hypothesis, token) order)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 0, max: 2 }),
        fc.array(fc.integer({ min: -4, max: 0 }), { minLength: 4 * 9 + 2, maxLength: 4 * 9 + 2 }),
        (hyps, V, count, offset, raw) => {
          // Few distinct values (halves of small integers, and −∞), so that ties are common.
          const logp = raw.map((x) => (x === -4 ? -Infinity : x / 2));
          const alive = Array.from({ length: hyps }, (_, k) => ({ logp: -k / 2 }));
          const all = alive.flatMap((h, k) => Array.from({ length: V }, (_, v) => ({ from: k, token: v, logp: h.logp + logp[offset + k * V + v]! })));
          const sorted = [...all].sort((p, q) => q.logp - p.logp).slice(0, count);
          expect(bestCandidates(alive, logp, offset, V, count)).toEqual(sorted);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('decoding does not leak tensors', async () => {
    const m = model(3);
    const s = tf.tensor2d(batch(new Rng(3), 2).src, undefined, 'int32');
    const before = tf.memory().numTensors;
    await m.greedy(s);
    await m.beamSearch(s, 3);
    expect(tf.memory().numTensors).toBe(before);
    s.dispose();
    m.dispose();
  });

  it('ids that cannot be read synchronously (webgpu in Node, ids on the GPU) are not trimmed: the full-length output, not an error', () => {
    const rng = new Rng(5);
    const { src, tgt } = batch(rng, 3);
    const x = tf.tensor2d(
      src.map((s, i) => [...s, ...tgt[i]!.map((v, t) => (t < 2 ? v : 0))]),
      undefined,
      'int32',
    );
    const full = model(5, { trimPadding: false });
    const trimming = model(5);
    const want = tf.tidy(() => full.apply(x, ctx).arraySync());
    const original = x.dataSync.bind(x);
    x.dataSync = (() => {
      throw new Error('webgpu: a synchronous read (dataSync/arraySync) of a tensor on the GPU is not supported in Node');
    }) as typeof x.dataSync;
    try {
      expect(tf.tidy(() => trimming.apply(x, ctx).arraySync())).toEqual(want);
    } finally {
      x.dataSync = original;
    }
    // Readable, the same ids are trimmed: the padded target positions' logits are then zero.
    const trimmed = tf.tidy(() => trimming.apply(x, ctx).arraySync()) as number[][][];
    expect(trimmed[0]![opts.tgtLen - 1]!.every((v) => v === 0)).toBe(true);
    tf.dispose(x);
    full.dispose();
    trimming.dispose();
  });

  it('trimming padded positions gives the loss and gradients of the full-length computation', () => {
    const loss = registry.create('loss', { type: 'sparse-categorical-crossentropy', labelSmoothing: 0.1, ignoreIndex: 0 } as never) as unknown as {
      compute(y: tf.Tensor, p: tf.Tensor): tf.Scalar;
    };
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 1, max: opts.tgtLen }), (seed, maxTgt) => {
        const rng = new Rng(seed + 1);
        const { src, tgt } = batch(rng, 4);
        // Targets of random lengths up to maxTgt (< tgtLen leaves whole padded columns to trim); labels follow.
        const lens = tgt.map(() => 1 + rng.int(maxTgt));
        const dec = tgt.map((r, i) => r.map((v, t) => (t < lens[i]! ? v : 0)));
        const labels = dec.map((r, i) => r.map((_, t) => (t < lens[i]! ? 3 + ((t + i) % (opts.tgtVocab - 3)) : 0)));
        const x = tf.tensor2d(
          src.map((s, i) => [...s, ...dec[i]!]),
          undefined,
          'int32',
        );
        const y = tf.tensor2d(labels, undefined, 'int32');
        const run = (trimPadding: boolean) => {
          const m = model(seed, { trimPadding });
          const params = m.parameters();
          const { value, grads } = tf.variableGrads(
            () => loss.compute(y, m.apply(x, ctx)),
            params.map((p) => p.variable),
          );
          const out = { loss: value.dataSync()[0]!, grads: params.map((p) => Array.from(grads[p.variable.name]!.dataSync())) };
          tf.dispose([value, ...Object.values(grads)]);
          m.dispose();
          return out;
        };
        const full = run(false);
        const trimmed = run(true);
        expect(trimmed.loss).toBeCloseTo(full.loss, 5);
        full.grads.forEach((g, i) => g.forEach((v, j) => expect(trimmed.grads[i]![j]!).toBeCloseTo(v, 5)));
        tf.dispose([x, y]);
      }),
      { numRuns: 6 },
    );
  });
});
