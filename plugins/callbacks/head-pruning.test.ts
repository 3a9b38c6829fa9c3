/**
 * Head gates and head pruning (Michel et al. 2019): gates of 1 change nothing, bit for bit, on every CPU backend
 * (the native one runs the fused attention kernel); the importance is |∂L/∂ξ_h| at ξ = 1, checked against central
 * finite differences of the loss in the gate; a pruned head computes what a gate of 0 computes (its slice of W^O's
 * input zeroed); pruned heads survive save and load; the order is by importance normalized per layer; the callback
 * prunes the requested number of heads at the end of a run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildModel,
  epochOrder,
  FUSED_KERNELS,
  hasKernel,
  loadModel,
  Rng,
  saveModel,
  selectBackend,
  Trainer,
  TensorDataset,
  trainerOptionsSchema,
  type Loss,
  type Model,
  type ModelConfig,
  type PluginRegistry,
} from '../../core';
import { conformanceRegistry } from '../../test/harness';
import type { HeadGateContext } from '../layers/multi-head-attention';
import { attentionLayers, gatedLoss, headImportance, headsToPrune, normalizeByLayer, prunedHeads, pruneHeads, type LayerImportance } from './head-pruning';

const { registry, backends } = await conformanceRegistry();
const bertSpec = (seed: number) => ({
  type: 'bert',
  name: 'bert',
  vocabSize: 11,
  maxLength: 6,
  dModel: 8,
  numHeads: 2,
  layers: 2,
  dropout: 0,
  head: 'classifier',
  classes: 3,
  seed,
});

/** A BERT classifier (2 layers × 2 heads) with weights drawn from `seed`. */
function bert(seed: number, r: PluginRegistry = registry): Model {
  const { seed: _, ...spec } = bertSpec(seed);
  const m = buildModel(spec as unknown as ModelConfig, r);
  m.build(m.inputShape, new Rng(seed));
  return m;
}

/** Ids [batch, time] in [1, 11) with the last positions of some rows padded (0), and labels in [0, 3). */
function batch(seed: number, b = 3, t = 5): { x: tf.Tensor; y: tf.Tensor } {
  const rng = new Rng(seed);
  const ids = Int32Array.from({ length: b * t }, (_, i) => (i % t > 2 && rng.next() < 0.5 ? 0 : 1 + rng.int(10)));
  for (let r = 0; r < b; r++) ids[r * t] = 1 + rng.int(10); // [CLS]-like first token, never padding
  return {
    x: tf.tensor2d(ids, [b, t], 'int32'),
    y: tf.tensor1d(
      Int32Array.from({ length: b }, () => rng.int(3)),
      'int32',
    ),
  };
}

const ce = (): Loss => registry.create('loss', 'sparse-categorical-crossentropy');
const run = (m: Model, x: tf.Tensor, headGate?: HeadGateContext['headGate']) =>
  tf.tidy(() =>
    m
      .apply(x, { training: false, rng: new Rng(0), headGate } as HeadGateContext)
      .dataSync()
      .slice(),
  );
/** Equal bit for bit, except that 0 and −0 are equal. */
const same = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((v, i) => v === b[i]);

describe('head gates', () => {
  for (const backend of backends) {
    it(`gates of 1 give bit-identical outputs and gradients (${backend})`, async () => {
      await selectBackend(registry, backend);
      // native-cpu runs attention in its fused kernel (the gate multiplies the kernel's context); cpu in tfjs ops.
      expect(hasKernel(FUSED_KERNELS.attention)).toBe(backend === 'native-cpu');
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 2 ** 30 }), (seed) => {
          const m = bert(seed);
          const { x, y } = batch(seed + 1);
          try {
            const ones = (_: string, h: number) => tf.ones([h]);
            expect(same(run(m, x, ones), run(m, x))).toBe(true);
            // And the training gradients (the fused kernel's backward on native-cpu).
            const grads = (gate?: HeadGateContext['headGate']) =>
              tf.tidy(() => {
                const ctx = { training: false, rng: new Rng(0), headGate: gate } as HeadGateContext;
                const { grads } = tf.variableGrads(() => ce().compute(y, m.apply(x, ctx), x));
                return Object.keys(grads)
                  .sort()
                  .flatMap((k) => Array.from(grads[k]!.dataSync()));
              });
            expect(same(grads(ones), grads())).toBe(true);
          } finally {
            tf.dispose([x, y]);
            m.dispose();
          }
        }),
        { numRuns: 4 },
      );
    });
  }

  it("reaches the decoder's self- and cross-attention (transformer-seq2seq), and a gate of 0 there changes the output", () => {
    const spec = { type: 'transformer-seq2seq', srcVocab: 6, tgtVocab: 5, srcLen: 3, tgtLen: 3, dModel: 4, numHeads: 2, ff: 6, layers: 1, dropout: 0 };
    const m = buildModel(spec as unknown as ModelConfig, registry);
    m.build(m.inputShape, new Rng(0));
    const x = tf.tensor2d(
      [
        [1, 2, 3, 1, 2, 4],
        [2, 3, 0, 1, 3, 0],
      ],
      [2, 6],
      'int32',
    );
    try {
      const layers = attentionLayers(m, x).map((l) => l.layer);
      expect(layers).toHaveLength(3);
      expect(layers.filter((l) => /cross/.test(l))).toHaveLength(1);
      for (const layer of layers) {
        const off = (name: string, h: number) => (name === layer ? tf.tensor1d([0, ...Array(h - 1).fill(1)]) : null);
        expect(same(run(m, x, off), run(m, x))).toBe(false);
      }
    } finally {
      x.dispose();
      m.dispose();
    }
  });

  it('finds every attention layer with its head count, in order', () => {
    const m = bert(0);
    const { x, y } = batch(0);
    expect(attentionLayers(m, x)).toEqual([
      { layer: 'bert/encoder_1/attention', numHeads: 2 },
      { layer: 'bert/encoder_2/attention', numHeads: 2 },
    ]);
    tf.dispose([x, y]);
    m.dispose();
  });
});

describe('head importance (Michel et al. 2019, eq. 2)', () => {
  it('equals the mean over batches of |central finite difference of the loss in ξ_h| at ξ = 1', async () => {
    await selectBackend(registry, 'cpu');
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 2 ** 30 }), async (seed) => {
        const m = bert(seed);
        const batches = [batch(seed + 1), batch(seed + 2, 2, 4)];
        const before = tf.memory().numTensors;
        try {
          const got = await headImportance(m, ce(), batches);
          expect(tf.memory().numTensors).toBe(before); // nothing kept
          const layers = attentionLayers(m, batches[0]!.x);
          const eps = 1e-2;
          for (const [li, l] of layers.entries()) {
            for (let h = 0; h < l.numHeads; h++) {
              let want = 0;
              for (const { x, y } of batches) {
                const at = (delta: number) =>
                  tf.tidy(() => {
                    const gate = tf.tensor1d(Array.from({ length: l.numHeads }, (_, j) => (j === h ? 1 + delta : 1)));
                    return gatedLoss(m, ce(), x, y, { [l.layer]: gate }).dataSync()[0]!;
                  });
                want += Math.abs((at(eps) - at(-eps)) / (2 * eps)) / batches.length;
              }
              const g = got[li]!.importance[h]!;
              expect(Math.abs(g - want), `layer ${l.layer} head ${h}: ${g} vs ${want}`).toBeLessThanOrEqual(2e-3 + 2e-2 * want);
            }
          }
        } finally {
          for (const b of batches) tf.dispose([b.x, b.y]);
          m.dispose();
        }
      }),
      { numRuns: 4 },
    );
  });
});

describe('head pruning', () => {
  it('a pruned head computes what a gate of 0 computes (its slice of the output projection input zeroed)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 30 }), fc.subarray([0, 1, 2, 3], { minLength: 1 }), (seed, which) => {
        const heads = which.map((i) => ({ layer: `bert/encoder_${1 + (i >> 1)}/attention`, numHeads: 2, head: i & 1 }));
        const pruned = bert(seed);
        const gated = bert(seed);
        const { x, y } = batch(seed + 1);
        try {
          pruneHeads(pruned, heads);
          const gate = (layer: string, h: number) =>
            tf.tensor1d(Array.from({ length: h }, (_, j) => (heads.some((p) => p.layer === layer && p.head === j) ? 0 : 1)));
          expect(same(run(pruned, x), run(gated, x, gate))).toBe(true);
          expect(prunedHeads(pruned, attentionLayers(pruned, x))).toEqual(heads.sort((a, b) => a.layer.localeCompare(b.layer) || a.head - b.head));
          // Their weights are zero: W^O's rows 4h..4h+3 and the q, k, v columns of the head.
          for (const { layer, head } of heads) {
            const p = (w: string) =>
              pruned
                .parameters()
                .find((q) => q.name === `${layer}/${w}`)!
                .variable.arraySync() as number[][];
            expect(
              p('out_kernel')
                .slice(4 * head, 4 * head + 4)
                .flat()
                .every((v) => v === 0),
            ).toBe(true);
            const cols = [0, 8, 16].flatMap((b) => [0, 1, 2, 3].map((i) => b + 4 * head + i));
            expect(p('qkv_kernel').every((row) => cols.every((c) => row[c] === 0))).toBe(true);
          }
        } finally {
          tf.dispose([x, y]);
          pruned.dispose();
          gated.dispose();
        }
      }),
      { numRuns: 6 },
    );
  });

  it('pruned heads stay pruned through save and load, and through training', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-head-pruning-'));
    const m = bert(3);
    const { x, y } = batch(4);
    try {
      const heads = [{ layer: 'bert/encoder_2/attention', numHeads: 2, head: 1 }];
      pruneHeads(m, heads);
      saveModel(m, dir);
      const loaded = loadModel(dir, registry);
      expect(same(run(loaded, x), run(m, x))).toBe(true);
      expect(prunedHeads(loaded, attentionLayers(loaded, x))).toEqual(heads);
      // Training the loaded model (Adam, the trainer re-applies masks) leaves the head at zero.
      const trainer = new Trainer({
        model: loaded,
        loss: ce(),
        optimizer: registry.create('optimizer', { type: 'adam', lr: 0.05 }),
        tracker: registry.create('tracker', 'console'),
        strategy: registry.create('parallelism', 'single-process'),
        rng: new Rng(0),
        options: trainerOptionsSchema.parse({ epochs: 2, batchSize: 3 }),
      });
      const ids = Int32Array.from(x.dataSync());
      await trainer.fit(new TensorDataset('t', ids, [5], Int32Array.from(y.dataSync()), []));
      expect(prunedHeads(loaded, attentionLayers(loaded, x))).toEqual(heads);
      loaded.dispose();
    } finally {
      tf.dispose([x, y]);
      m.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('prunes in order of increasing importance normalized by each layer ℓ2 norm (invariant to scaling a layer)', () => {
    // Importances are means of float32 gradients' magnitudes: 0 or far above float64's denormals.
    const importanceArb = fc.oneof(fc.constant(0), fc.double({ min: 1e-40, max: 10, noNaN: true }));
    const layerArb = fc.array(importanceArb, { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(fc.array(layerArb, { minLength: 1, maxLength: 3 }), fc.double({ min: 0.01, max: 100, noNaN: true }), fc.nat(), (imps, scale, k) => {
        const layers: LayerImportance[] = imps.map((importance, i) => ({ layer: `l${i}`, numHeads: importance.length, importance }));
        const total = imps.flat().length;
        const count = k % (total + 1);
        const chosen = headsToPrune(layers, count);
        expect(chosen.length).toBe(count);
        const norm = normalizeByLayer(layers);
        for (const l of norm) {
          const n = Math.hypot(...l.importance);
          if (n > 0) expect(n).toBeCloseTo(1, 12);
        }
        const score = (h: { layer: string; head: number }) => norm.find((l) => l.layer === h.layer)!.importance[h.head]!;
        const kept = norm
          .flatMap((l) => l.importance.map((_, head) => ({ layer: l.layer, head })))
          .filter((h) => !chosen.some((c) => c.layer === h.layer && c.head === h.head));
        for (const c of chosen) for (const h of kept) expect(score(c)).toBeLessThanOrEqual(score(h));
        // Scaling one layer's importances (a layer whose gradients are larger) does not change the choice.
        const scaled = layers.map((l, i) => (i === 0 ? { ...l, importance: l.importance.map((v) => v * scale) } : l));
        expect(
          headsToPrune(scaled, count)
            .map((h) => `${h.layer}/${h.head}`)
            .sort(),
        ).toEqual(chosen.map((h) => `${h.layer}/${h.head}`).sort());
      }),
    );
  });
});

describe('head-pruning callback', () => {
  /** A 2-layer × 2-head GPT fitted one epoch on a few windows of Moby Dick, with `callbacks`. */
  async function trained(callbacks: ReturnType<PluginRegistry['create']>[], epochs = 1): Promise<Model> {
    await selectBackend(registry, 'cpu');
    const spec = { type: 'gpt', vocabSize: 96, context: 8, dModel: 8, numHeads: 2, layers: 2, dropout: 0 };
    const model = buildModel(spec as unknown as ModelConfig, registry);
    model.build(model.inputShape, new Rng(1));
    const data = registry.create('dataset', { type: 'char-text', context: 8, maxChars: 200 }).load('train');
    const trainer = new Trainer({
      model,
      loss: ce(),
      optimizer: registry.create('optimizer', { type: 'adam', lr: 0.01 }),
      tracker: registry.create('tracker', 'console'),
      strategy: registry.create('parallelism', 'single-process'),
      callbacks: callbacks as never,
      rng: new Rng(2),
      options: trainerOptionsSchema.parse({ epochs, batchSize: 16 }),
    });
    await trainer.fit(data);
    return model;
  }

  it('prunes, at the end of training, the heads an importance computed on the same sample ranks lowest', async () => {
    const data = { source: { type: 'char-text', context: 8, maxChars: 200 }, samples: 24, seed: 5 };
    const cb = registry.create('callback', { type: 'head-pruning', heads: 2, data, batchSize: 8 });
    const pruned = await trained([cb]);
    const plain = await trained([]); // the same training without the callback: the weights the callback saw
    const sample = registry.create('dataset', data.source).load('train');
    const order = Int32Array.from(epochOrder(sample.size, 5, 0, true).subarray(0, 24));
    const batches = [order.subarray(0, 8), order.subarray(8, 16), order.subarray(16, 24)].map((i) => sample.batch(i));
    try {
      const want = headsToPrune(await headImportance(plain, ce(), batches), 2);
      const layers = attentionLayers(pruned, batches[0]!.x);
      expect(layers).toHaveLength(2);
      const byOrder = (a: { layer: string; head: number }, b: { layer: string; head: number }) => a.layer.localeCompare(b.layer) || a.head - b.head;
      expect(prunedHeads(pruned, layers)).toEqual([...want].sort(byOrder));
      expect(cb.getState!()).toEqual({ pruned: want });
    } finally {
      for (const b of batches) tf.dispose([b.x, b.y]);
      pruned.dispose();
      plain.dispose();
    }
  });

  it('with epoch: prunes after that epoch and the heads stay zero through the epochs after it', async () => {
    const data = { source: { type: 'char-text', context: 8, maxChars: 200 }, samples: 16 };
    const cb = registry.create('callback', { type: 'head-pruning', fraction: 0.5, epoch: 1, data, batchSize: 8 });
    const model = await trained([cb], 3);
    const x = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8]], [1, 8], 'int32');
    try {
      const heads = prunedHeads(model, attentionLayers(model, x));
      expect(heads).toHaveLength(2);
      expect(heads).toEqual(expect.arrayContaining((cb.getState!() as { pruned: object[] }).pruned));
      // After two more epochs of Adam the pruned heads' rows of W^O are exactly zero; the kept heads' are not.
      const layers = attentionLayers(model, x).map((l) => l.layer);
      expect(layers).toEqual(['gpt/block_1/self_attention', 'gpt/block_2/self_attention']);
      for (const layer of layers) {
        const w = model
          .parameters()
          .find((p) => p.name === `${layer}/out_kernel`)!
          .variable.arraySync() as number[][];
        for (const head of [0, 1]) {
          const rows = w.slice(4 * head, 4 * head + 4).flat();
          const isPruned = heads.some((h) => h.layer === layer && h.head === head);
          expect(rows.every((v) => v === 0)).toBe(isPruned);
        }
      }
    } finally {
      x.dispose();
      model.dispose();
    }
  });

  it('refuses options naming neither or both of heads and fraction, and an unknown split', () => {
    const data = { source: { type: 'char-text', context: 8, maxChars: 200 } };
    expect(() => registry.create('callback', { type: 'head-pruning', data })).toThrow(/heads.*exactly one of heads and fraction/);
    expect(() => registry.create('callback', { type: 'head-pruning', heads: 1, fraction: 0.5, data })).toThrow(/exactly one/);
    expect(() => registry.create('callback', { type: 'head-pruning', heads: 1, data: { ...data, split: 'test' } })).toThrow(/data\.split.*train, valid/);
  });
});
