/** GPT: causal logits, cached generation = uncached forward passes, one shared tensor for the tied embeddings. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectModel, Rng, type PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';
import { GPT, sample } from './gpt';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const V = 11;
function gpt(seed: number): GPT {
  const m = expectModel(registry.create('model', { type: 'gpt', vocabSize: V, context: 8, dModel: 8, numHeads: 2, layers: 2, dropout: 0 }), GPT);
  m.build(m.inputShape, new Rng(seed));
  return m;
}
const ctx = { training: false, rng: new Rng(0) };
const ids = (rng: Rng, n: number) => Array.from({ length: n }, () => rng.int(V));

describe('gpt', () => {
  it('the logits at t do not change when later tokens change', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 0, max: 6 }), (seed, t) => {
        const m = gpt(seed);
        const rng = new Rng(seed);
        const a = ids(rng, 8);
        const b = [...a.slice(0, t + 1), ...ids(rng, 7 - t)];
        const [la, lb] = [a, b].map((r) => tf.tidy(() => tf.slice(m.apply(tf.tensor2d([r], undefined, 'int32'), ctx), [0, 0, 0], [1, t + 1, V])));
        Array.from(la!.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(lb!.dataSync()[i]!, 5));
        tf.dispose([la!, lb!]);
        m.dispose();
      }),
      { numRuns: 10 },
    );
  });

  it('cached generation gives the tokens and logits of uncached full forward passes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 1, max: 4 }), async (seed, promptLen) => {
        const m = gpt(seed);
        const prompt = ids(new Rng(seed), promptLen);
        const cached = await m.generate(prompt, 8 - promptLen, { temperature: 0, rng: new Rng(1) });
        // Uncached: the whole sequence so far through the model, the argmax of the last position, again and again.
        const seq = [...prompt];
        for (let i = 0; i < 8 - promptLen; i++) {
          const next = tf.tidy(
            () => tf.argMax(tf.squeeze(tf.slice(m.apply(tf.tensor2d([seq], undefined, 'int32'), ctx), [0, seq.length - 1, 0], [1, 1, V])), 0).dataSync()[0]!,
          );
          seq.push(next);
        }
        expect(cached).toEqual(seq.slice(promptLen));
        // Nothing to generate: no tokens, and no tensor left behind (the first step's logits were).
        const before = tf.memory().numTensors;
        expect(await m.generate(prompt, 0, { temperature: 1, rng: new Rng(1) })).toEqual([]);
        expect(tf.memory().numTensors).toBe(before);
        m.dispose();
      }),
      { numRuns: 8 },
    );
  });

  it('ties the output projection to the embedding: one tensor, listed once, trained through both uses', () => {
    const m = gpt(2);
    const params = m.parameters();
    expect(params.filter((p) => p.variable === m.tokenEmbedding)).toHaveLength(1);
    expect(params.some((p) => /head/.test(p.name))).toBe(false);
    // The gradient of a logit of a token that is not in the input reaches the embedding only through the output use.
    const x = tf.tensor2d([[1, 2, 3]], undefined, 'int32');
    const { grads } = tf.variableGrads(() => tf.sum(tf.slice(m.apply(x, ctx), [0, 2, 7], [1, 1, 1])) as tf.Scalar, [m.tokenEmbedding]);
    const row7 = Array.from(grads[m.tokenEmbedding.name]!.dataSync().slice(7 * 8, 8 * 8));
    expect(row7.some((v) => v !== 0)).toBe(true);
    tf.dispose([x, ...Object.values(grads)]);
    m.dispose();
  });

  it('samples: temperature 0 is argmax; top-k never picks outside the k largest; seeded', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: -5, max: 5, noNaN: true }), { minLength: 2, maxLength: 12 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 1e6 }),
        (logits, k, seed) => {
          expect(logits[sample(logits, 0, undefined, new Rng(seed))]).toBe(Math.max(...logits));
          const top = [...logits].sort((a, b) => b - a).slice(0, k);
          const picked = sample(logits, 1, k, new Rng(seed));
          expect(logits[picked]! >= top.at(-1)!).toBe(true);
          expect(sample(logits, 0.7, k, new Rng(seed))).toBe(sample(logits, 0.7, k, new Rng(seed)));
        },
      ),
    );
  });

  it('samples with the probabilities of the renormalised softmax(logits / T) over the top k (top-k 0: all)', () => {
    // A sampler that drew uniformly from the top k would pass the test above; the frequencies tell them apart.
    const logits = [0, 2, -1, 1];
    const n = 6000;
    for (const [T, k] of [
      [1, 3],
      [0.5, 0],
    ] as const) {
      const kept = k ? [1, 3, 0] : [0, 1, 2, 3];
      const w = kept.map((i) => Math.exp(logits[i]! / T));
      const z = w.reduce((a, b) => a + b, 0);
      const counts = new Map<number, number>();
      const rng = new Rng(9);
      for (let i = 0; i < n; i++) {
        const t = sample(logits, T, k, rng);
        counts.set(t, (counts.get(t) ?? 0) + 1);
      }
      for (const [j, i] of kept.entries()) {
        const p = w[j]! / z;
        expect(Math.abs((counts.get(i) ?? 0) / n - p), `T ${T}, top-k ${k}, token ${i}`).toBeLessThan(4 * Math.sqrt((p * (1 - p)) / n) + 1e-9);
      }
      if (k) expect(counts.get(2)).toBeUndefined(); // outside the top 3
    }
  });
});
