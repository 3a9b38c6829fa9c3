import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  batchesOf,
  ConfigError,
  definePlugin,
  epochOrder,
  pluginSpecSchema,
  readToHost,
  Rng,
  setMask,
  type Batch,
  type Callback,
  type DataSource,
  type Json,
  type Loss,
  type Model,
  type Parameter,
  type TrainingState,
} from '../../core';
import type { HeadGateContext } from '../layers/multi-head-attention';

/** One multi-head attention layer of a model, by name, and its head count. */
export interface AttentionLayer {
  layer: string;
  numHeads: number;
}

/** One head: its layer, the layer's head count and its index there. */
export interface HeadRef extends AttentionLayer {
  head: number;
}

/** An attention layer's heads' importance I_h (Michel et al. 2019, eq. 2), in head order. */
export interface LayerImportance extends AttentionLayer {
  importance: number[];
}

/** The multi-head attention layers a forward pass of `x` goes through (read from their head-gate calls), in order. */
export function attentionLayers(model: Model, x: tf.Tensor): AttentionLayer[] {
  const seen: AttentionLayer[] = [];
  const ctx: HeadGateContext = {
    training: false,
    rng: new Rng(0),
    headGate: (layer, numHeads) => {
      if (!seen.some((s) => s.layer === layer)) seen.push({ layer, numHeads });
      return null;
    },
  };
  tf.tidy(() => {
    model.apply(x, ctx);
  });
  return seen;
}

/**
 * The loss of `model` on (x, y) in inference mode with head gates ξ: `gates[layer]` ([numHeads]) multiplies each
 * head's output of that layer (Michel et al. 2019, §2.2); a layer without a gate is ungated (ξ = 1).
 */
export function gatedLoss(model: Model, loss: Loss, x: tf.Tensor, y: tf.Tensor, gates: Record<string, tf.Tensor>): tf.Scalar {
  const ctx: HeadGateContext = { training: false, rng: new Rng(0), headGate: (layer) => gates[layer] ?? null };
  return loss.compute(y, model.apply(x, ctx), x);
}

/**
 * Head importance (Michel et al. 2019, §4.1, eq. 2): I_h = E_x |∂L(x)/∂ξ_h| at ξ = 1, the expected sensitivity of
 * the loss to a gate ξ_h multiplying head h's output. The expectation is over `batches` (the loss of each being the
 * batch mean, as their code computes it; batches of one give the per-example expectation), in inference mode
 * (no dropout). Heads already pruned (zero weights) get 0. The batches stay the caller's.
 */
export async function headImportance(model: Model, loss: Loss, batches: readonly Batch[]): Promise<LayerImportance[]> {
  if (batches.length === 0) throw new ConfigError('head-pruning', 'importance needs at least one batch of data');
  const layers = attentionLayers(model, batches[0]!.x);
  if (layers.length === 0) throw new ConfigError('head-pruning', 'the model has no multi-head attention layer: there are no heads to prune');
  const sums = layers.map((l) => new Float64Array(l.numHeads));
  for (const { x, y } of batches) {
    const grads = tf.tidy(() => {
      const ones = layers.map((l) => tf.ones([l.numHeads]));
      const f = (...gates: tf.Tensor[]) => gatedLoss(model, loss, x, y, Object.fromEntries(layers.map((l, i) => [l.layer, gates[i]!])));
      return tf.grads(f)(ones);
    });
    try {
      const values = await Promise.all(grads.map((g) => g.data()));
      values.forEach((v, i) => v.forEach((g, h) => (sums[i]![h]! += Math.abs(g))));
    } finally {
      tf.dispose(grads);
    }
  }
  return layers.map((l, i) => ({ ...l, importance: Array.from(sums[i]!, (s) => s / batches.length) }));
}

/**
 * Each layer's importances divided by their ℓ2 norm (Michel et al. 2019, §4.1: "we normalize the importance scores
 * by layer (using the ℓ2 norm)" before comparing heads of different layers, after Molchanov et al. 2017). A layer
 * whose heads all have importance 0 stays 0.
 */
export function normalizeByLayer(layers: readonly LayerImportance[]): LayerImportance[] {
  return layers.map((l) => {
    const norm = Math.hypot(...l.importance); // scaled: no underflow of tiny importances
    return { ...l, importance: l.importance.map((v) => (norm > 0 ? v / norm : 0)) };
  });
}

/**
 * The `count` heads to prune: all heads of the model in order of increasing normalized importance
 * ({@link normalizeByLayer}), ties in model order (layer, then head), the first `count` of them.
 */
export function headsToPrune(layers: readonly LayerImportance[], count: number): HeadRef[] {
  const all = normalizeByLayer(layers).flatMap((l, li) => l.importance.map((score, head) => ({ layer: l.layer, numHeads: l.numHeads, head, score, li })));
  if (count > all.length) throw new ConfigError('heads', `${count} heads to prune but the model has ${all.length}`);
  all.sort((a, b) => a.score - b.score || a.li - b.li || a.head - b.head);
  return all.slice(0, count).map(({ layer, numHeads, head }) => ({ layer, numHeads, head }));
}

/** The float parameters of attention layer `layer`: the packed q,k,v kernel [d, 3d] and bias [3d], and W^O [d, d]. */
function headParameters(model: Model, layer: string): { qkv: Parameter; qkvBias: Parameter; out: Parameter } {
  const byName = new Map(model.parameters().map((p) => [p.name, p]));
  const get = (w: string) => {
    const p = byName.get(`${layer}/${w}`);
    if (!p) throw new ConfigError('head-pruning', `attention layer "${layer}" has no trainable ${w} (a quantized model cannot be head-pruned: prune first)`);
    return p;
  };
  return { qkv: get('qkv_kernel'), qkvBias: get('qkv_bias'), out: get('out_kernel') };
}

/**
 * Prunes `heads`: masks (core/masks.ts) their columns of the q, k and v projections (kernel and bias) and their rows
 * of the output projection W^O, which is W^O's input slice the head writes, so the head's output is zero, as with
 * ξ_h = 0. The masks keep the heads at zero through further training, are saved with the model (format 3) and put
 * back by loadModel. Masks already there (earlier prunings, magnitude pruning) are kept: a pruned weight stays pruned.
 */
export function pruneHeads(model: Model, heads: readonly HeadRef[]): void {
  const byLayer = new Map<string, HeadRef[]>();
  for (const h of heads) byLayer.set(h.layer, [...(byLayer.get(h.layer) ?? []), h]);
  for (const [layer, hs] of byLayer) {
    const { qkv, qkvBias, out } = headParameters(model, layer);
    const d = out.variable.shape[0]!;
    const numHeads = hs[0]!.numHeads;
    const dk = d / numHeads;
    const keep = (p: Parameter) => (p.mask ? Float32Array.from(p.mask.dataSync()) : new Float32Array(p.variable.size).fill(1));
    const [mq, mb, mo] = [keep(qkv), keep(qkvBias), keep(out)];
    for (const { head } of hs) {
      if (!(head >= 0 && head < numHeads)) throw new ConfigError('heads', `head ${head} of "${layer}", which has ${numHeads}`);
      for (let i = head * dk; i < (head + 1) * dk; i++) {
        for (const block of [0, d, 2 * d]) {
          mb[block + i] = 0;
          for (let r = 0; r < d; r++) mq[r * 3 * d + block + i] = 0;
        }
        mo.fill(0, i * d, (i + 1) * d);
      }
    }
    setMask(qkv, tf.tensor(mq, qkv.variable.shape));
    setMask(qkvBias, tf.tensor(mb, qkvBias.variable.shape));
    setMask(out, tf.tensor(mo, out.variable.shape));
  }
}

/** The heads of `layers` whose rows of W^O are masked to zero (pruned by {@link pruneHeads}, kept through save and load). */
export function prunedHeads(model: Model, layers: readonly AttentionLayer[]): HeadRef[] {
  return layers.flatMap(({ layer, numHeads }) => {
    const { out } = headParameters(model, layer);
    if (!out.mask) return [];
    const m = out.mask.dataSync();
    const d = out.variable.shape[0]!;
    const dk = d / numHeads;
    return Array.from({ length: numHeads }, (_, head) => head).flatMap((head) =>
      m.subarray(head * dk * d, (head + 1) * dk * d).every((v) => v === 0) ? [{ layer, numHeads, head }] : [],
    );
  });
}

const schema = z
  .object({
    /** How many heads of the whole model to prune. */
    heads: z.number().int().min(0).optional(),
    /** Or the fraction of the model's heads to prune (rounded down). */
    fraction: z.number().min(0).max(1).optional(),
    /** The examples the importance is estimated on: a data source, its split, and how many examples (a seeded sample). */
    data: z
      .object({
        source: pluginSpecSchema,
        split: z.string().default('train'),
        samples: z.number().int().positive().default(256),
        seed: z.number().int().default(0),
      })
      .strict(),
    batchSize: z.number().int().positive().default(32),
    /** The loss L whose sensitivity to each head's gate is its importance. */
    loss: pluginSpecSchema.default('sparse-categorical-crossentropy'),
    /** Prune after this epoch (1-based) and train on with the heads masked; default: at the end of training, before the test and the save. */
    epoch: z.number().int().positive().optional(),
  })
  .strict();

/**
 * Structured pruning of attention heads (Michel et al. 2019, "Are Sixteen Heads Really Better than One?", §4): the
 * importance I_h = E_x |∂L/∂ξ_h| of every head (eq. 2) is estimated on a seeded sample of `data`, normalized per
 * layer by its ℓ2 norm, and the `heads` (or `fraction`) least important heads of the whole model are pruned at
 * once: their slices of the q, k, v and output projections are masked to zero ({@link pruneHeads}). By default at
 * the end of training, so the test scores and the saved model are those of the pruned model (as in their Fig. 3,
 * pruning without retraining); with `epoch`, after that epoch, training on with the heads held at zero.
 */
export default definePlugin({
  kind: 'callback',
  name: 'head-pruning',
  description: 'prunes the least important attention heads, importance E|dL/d(gate)| normalized per layer (Michel et al. 2019, eq. 2 and §4.1)',
  schema,
  examples: [
    {
      options: { heads: 1, data: { source: { type: 'char-text', context: 8, maxChars: 400 }, samples: 8 }, batchSize: 4 },
      model: { type: 'gpt', vocabSize: 96, context: 8, dModel: 8, numHeads: 2, layers: 2, dropout: 0 },
    },
    {
      options: { fraction: 0.5, epoch: 2, data: { source: { type: 'char-text', context: 8, maxChars: 400 }, samples: 6, seed: 3 }, batchSize: 4 },
      model: { type: 'gpt', vocabSize: 96, context: 8, dModel: 8, numHeads: 2, layers: 1, dropout: 0 },
    },
  ],
  properties: [
    'the importance equals |finite-difference derivative of the loss| with respect to the gate at ξ = 1, averaged over batches',
    'all gates 1 give bit-identical outputs to the ungated model (fused attention kernel and tfjs ops)',
    'a pruned head equals a gate of 0 (zeroing its slice of the output projection input); pruned heads stay zero through training, save and load',
    'heads are pruned in order of increasing importance normalized by the layer ℓ2 norm',
  ],
  create: (o, ctx): Omit<Callback, 'spec'> => {
    if ((o.heads === undefined) === (o.fraction === undefined)) throw new ConfigError('heads', 'give exactly one of heads and fraction');
    const source: DataSource = ctx.create('dataset', o.data.source, 'data.source');
    if (!source.splits.includes(o.data.split))
      throw new ConfigError('data.split', `"${o.data.split}" is not one of the source's splits: ${source.splits.join(', ')}`);
    const loss: Loss = ctx.create('loss', o.loss, 'loss');
    /** The heads pruned (null: not yet), and heads from a checkpoint to mask again at the next epoch's start. */
    let pruned: HeadRef[] | null = null;
    let pending: HeadRef[] | null = null;
    const prune = async (state: TrainingState) => {
      const data = source.load(o.data.split);
      const order = epochOrder(data.size, o.data.seed, 0, true).subarray(0, Math.min(o.data.samples, data.size));
      const batches = [...batchesOf(order, o.batchSize)].map((idx) => data.batch(idx));
      try {
        const importance = await headImportance(state.model, loss, batches);
        const total = importance.reduce((a, l) => a + l.numHeads, 0);
        const count = o.heads ?? Math.floor(o.fraction! * total);
        pruned = headsToPrune(importance, count);
        await readToHost(state.model); // pruneHeads reads the masks synchronously (webgpu: fetch them first)
        pruneHeads(state.model, pruned);
      } finally {
        for (const b of batches) tf.dispose([b.x, b.y]);
      }
    };
    return {
      onTrainBegin() {
        pruned = null;
        pending = null;
      },
      async onEpochBegin(state: TrainingState) {
        // Heads from a checkpoint's state are masked again; those pruned already are re-masked (a no-op under the
        // trainer, which keeps masked weights at zero, but it makes the epoch's start the same either way).
        if (pending) pruned = pending;
        pending = null;
        if (!pruned) return;
        await readToHost(state.model);
        pruneHeads(state.model, pruned);
      },
      async onEpochEnd(state: TrainingState) {
        if (o.epoch !== undefined && state.epoch + 1 === o.epoch && pruned === null) await prune(state);
      },
      async onTrainEnd(state: TrainingState) {
        if (o.epoch === undefined && pruned === null) await prune(state);
      },
      getState(): Json {
        return { pruned: pruned as unknown as Json };
      },
      setState(s: Json) {
        pruned = (s as { pruned: HeadRef[] | null }).pruned;
        pending = pruned;
      },
    };
  },
});
