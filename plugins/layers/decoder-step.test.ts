/**
 * The fused decoding step of a pre-norm decoder-only block (FUSED_KERNELS.decoderStep, plugins/backends/native/decoder.ts)
 * against the composed block it replaces: the same outputs and the same cached keys and values, bit for bit, step
 * by step through the cache's growth, for every activation it takes and the ones it declines (which must fall back
 * to the composed ops), with no tensor or backend buffer left behind; and a GPT's greedy generation, tokens and
 * logits, the same with the kernel and without. Needs the native backend's fused kernels (skipped, saying so,
 * under LOOM_BACKEND=cpu or without the addon).
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildModel, expectModel, FUSED_KERNELS, hasKernel, Rng, type ForwardContext, type PluginRegistry } from '../../core';
import { randomNormal, testRegistry } from '../../test/harness';
import { GPT } from '../models/gpt';
import type { TransformerDecoder } from './transformer-decoder';

const registry: PluginRegistry = await testRegistry();
const available = hasKernel(FUSED_KERNELS.decoderStep) && hasKernel(FUSED_KERNELS.cachedAttention);
if (!available) console.warn(`decoder-step tests skipped: the backend (${tf.getBackend()}) has no ${FUSED_KERNELS.decoderStep} kernel`);
const ctx: ForwardContext = { training: false, rng: new Rng(0) };

/** Runs `f` with the fused step unregistered (the composed block), then registers it again. */
function composed<T>(f: () => T): T {
  const config = tf.getKernel(FUSED_KERNELS.decoderStep, tf.getBackend())!;
  tf.unregisterKernel(FUSED_KERNELS.decoderStep, tf.getBackend());
  try {
    return f();
  } finally {
    tf.registerKernel(config);
  }
}

/** {@link composed} for an asynchronous `f`: the kernel is registered again once `f` has finished. */
async function composedAsync<T>(f: () => Promise<T>): Promise<T> {
  const config = tf.getKernel(FUSED_KERNELS.decoderStep, tf.getBackend())!;
  tf.unregisterKernel(FUSED_KERNELS.decoderStep, tf.getBackend());
  try {
    return await f();
  } finally {
    tf.registerKernel(config);
  }
}

/** The names of the kernels `f` runs. */
function kernelsOf(f: () => void): Promise<string[]> {
  return tf.profile(f).then((p) => p.kernels.map((k) => k.name));
}

const ACTIVATIONS = [
  { spec: { type: 'gelu', approximate: 'tanh' }, fused: true },
  { spec: 'relu', fused: true },
  { spec: 'linear', fused: true },
  { spec: 'gelu', fused: false }, // the exact (erf) form: not the kernel's
  { spec: 'tanh', fused: false },
] as const;

describe('fused decoder step (LoomDecoderStep)', () => {
  it.skipIf(!available)(
    'equals the composed pre-norm block bit for bit, step by step through cache growth, and declines what it does not compute',
    async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 4 }),
          fc.integer({ min: 1, max: 9 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 7 }),
          fc.constantFrom(...ACTIVATIONS),
          fc.integer({ min: 0, max: 1e6 }),
          async (heads, dk, ff, rows, steps, act, seed) => {
            const d = heads * dk;
            const layer = registry.create('layer', {
              type: 'transformer-decoder',
              numHeads: heads,
              ff,
              dropout: 0.1,
              preNorm: true,
              crossAttention: false,
              activation: act.spec,
            } as never) as TransformerDecoder;
            layer.build([null, null, d], new Rng(seed));
            const x = randomNormal([rows, steps, d], new Rng(seed + 1));
            // A first capacity of 2 positions: the cache grows (is copied into a longer one) at steps 3 and 5.
            const decode = () => {
              const cache = layer.newCache(2);
              const outs = Array.from({ length: steps }, (_, t) => tf.tidy(() => layer.step(tf.slice(x, [0, t, 0], [rows, 1, d]), ctx, cache)));
              const out = { y: tf.concat(outs, 1), k: tf.clone(cache.self.k!), v: tf.clone(cache.self.v!), length: cache.self.length };
              tf.dispose(outs);
              layer.releaseCache(cache);
              return out;
            };
            const before = { tensors: tf.memory().numTensors, buffers: tf.engine().backend.numDataIds() };
            const names = await kernelsOf(() => tf.dispose(Object.values(decode()).filter((t) => t instanceof tf.Tensor)));
            expect(names.includes(FUSED_KERNELS.decoderStep)).toBe(act.fused);
            expect({ tensors: tf.memory().numTensors, buffers: tf.engine().backend.numDataIds() }).toEqual(before);
            const [fused, plain] = [decode(), composed(decode)];
            expect(fused.length).toBe(steps);
            expect(plain.length).toBe(steps);
            expect(Array.from(fused.y.dataSync())).toEqual(Array.from(plain.y.dataSync()));
            expect(Array.from(fused.k.dataSync())).toEqual(Array.from(plain.k.dataSync()));
            expect(Array.from(fused.v.dataSync())).toEqual(Array.from(plain.v.dataSync()));
            // And both are the block's full causal forward pass (to float32 rounding: the products differ in shape).
            const full = layer.apply(x, ctx);
            const [a, b] = [fused.y.dataSync(), full.dataSync()];
            for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(b[i]!)));
            tf.dispose([fused.y, fused.k, fused.v, plain.y, plain.k, plain.v, full, x]);
            layer.dispose();
          },
        ),
        { numRuns: 40 },
      );
    },
  );

  it.skipIf(!available)('is not used while training', async () => {
    const layer = registry.create('layer', {
      type: 'transformer-decoder',
      numHeads: 2,
      ff: 8,
      dropout: 0,
      preNorm: true,
      crossAttention: false,
    } as never) as TransformerDecoder;
    layer.build([null, null, 4], new Rng(1));
    const x = randomNormal([1, 1, 4], new Rng(2));
    const cache = layer.newCache(4);
    const training = await kernelsOf(() => tf.dispose(layer.step(x, { training: true, rng: new Rng(0) }, cache)));
    expect(training).not.toContain(FUSED_KERNELS.decoderStep);
    const inference = await kernelsOf(() => tf.dispose(layer.step(x, ctx, cache)));
    expect(inference).toContain(FUSED_KERNELS.decoderStep);
    layer.releaseCache(cache);
    x.dispose();
    layer.dispose();
  });

  it.skipIf(!available)("a GPT's greedy generation gives the same tokens and logits with the fused step as without", async () => {
    const gpt = expectModel(buildModel({ type: 'gpt', vocabSize: 13, context: 40, dModel: 12, numHeads: 3, layers: 2, dropout: 0.1 } as never, registry), GPT);
    gpt.build(undefined, new Rng(3));
    // Greedy decoding of 30 tokens from a 3-token prompt; then the logits of one cached step after a 4-token prefix.
    const generate = () => gpt.generate([1, 5, 2], 30, { temperature: 0, rng: new Rng(0) });
    const logits = () => {
      // biome-ignore lint/complexity/useLiteralKeys: \`blocks\` is private; the test reads the model's own blocks
      const blocks = gpt['blocks'];
      const caches = blocks.map((b) => b.newCache(8));
      const out = tf.tidy(() => {
        tf.dispose(gpt.step(tf.tensor2d([[1, 5, 2, 7]], undefined, 'int32'), 0, caches, ctx));
        return gpt.step(tf.tensor2d([[4]], undefined, 'int32'), 4, caches, ctx);
      });
      blocks.forEach((b, i) => b.releaseCache(caches[i]!));
      const values = Array.from(out.dataSync());
      out.dispose();
      return values;
    };
    const fused = { tokens: await generate(), logits: logits() };
    const plain = { tokens: await composedAsync(generate), logits: composed(logits) };
    expect(fused).toEqual(plain);
    expect(await kernelsOf(() => tf.dispose(tf.tensor(logits())))).toContain(FUSED_KERNELS.decoderStep);
    gpt.dispose();
  });
});
