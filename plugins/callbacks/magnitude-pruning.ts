import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError, definePlugin, readToHost, setMask, type Callback, type Json, type Parameter, type TrainingState } from '../../core';

/**
 * Zhu & Gupta (2017), eq. 1: the sparsity at step t of a schedule that prunes every Δt steps from t0 for n prunings,
 * s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³, held at s_i before t0 and at s_f from t0 + nΔt on. It prunes fast
 * while there are many redundant weights and slowly as few remain.
 */
export function gradualSparsity(
  t: number,
  o: { initialSparsity: number; finalSparsity: number; beginStep: number; frequency: number; prunings: number },
): number {
  const span = o.prunings * o.frequency;
  const progress = Math.min(1, Math.max(0, (t - o.beginStep) / span));
  return o.finalSparsity + (o.initialSparsity - o.finalSparsity) * (1 - progress) ** 3;
}

/**
 * A 0/1 mask per weight keeping the largest magnitudes: the ⌊s·n⌋ smallest |w| of each tensor (`layer` scope) or of
 * all of them together (`global`) are pruned, those already pruned (`previous`, 0 = pruned) first, so masks only grow.
 * Ties break by position (the earlier weight is pruned first): the mask is deterministic.
 */
export function magnitudeMasks(values: Float32Array[], sparsity: number, scope: 'layer' | 'global', previous?: (Uint8Array | undefined)[]): Uint8Array[] {
  // The pruning key of each weight: |w|, or −1 where it is already pruned.
  const keys = values.map((v, t) => Float64Array.from(v, (w, i) => (previous?.[t]?.[i] === 0 ? -1 : Math.abs(w))));
  const masks = values.map((v) => new Uint8Array(v.length).fill(1));
  /** Prunes the ⌊s·n⌋ smallest keys of the tensors `ts` taken together: all below the threshold, then ties in order. */
  const prune = (ts: number[]) => {
    const n = ts.reduce((a, t) => a + keys[t]!.length, 0);
    const k = Math.floor(sparsity * n);
    if (k === 0) return;
    const all = new Float64Array(n);
    let o = 0;
    for (const t of ts) {
      all.set(keys[t]!, o);
      o += keys[t]!.length;
    }
    const threshold = all.sort()[k - 1]!;
    let below = 0;
    for (const t of ts) for (const a of keys[t]!) if (a < threshold) below++;
    let ties = k - below;
    for (const t of ts) {
      const key = keys[t]!;
      for (let i = 0; i < key.length; i++) {
        if (key[i]! < threshold) masks[t]![i] = 0;
        else if (key[i] === threshold && ties > 0) {
          masks[t]![i] = 0;
          ties--;
        }
      }
    }
  };
  if (scope === 'global') prune(values.map((_, t) => t));
  else values.forEach((_, t) => prune([t]));
  // A weight pruned before stays pruned even where it is more than ⌊s·n⌋ (a head pruned as a whole, a loaded pruned
  // model): the pruned set only grows.
  previous?.forEach((prev, t) => {
    if (prev) for (let i = 0; i < prev.length; i++) if (prev[i] === 0) masks[t]![i] = 0;
  });
  return masks;
}

/** A 0/1 mask as base64 bits (bit i%8 of byte i/8), and back: masks travel in the callback's JSON state. */
const packBits = (m: Uint8Array) => {
  const b = new Uint8Array(Math.ceil(m.length / 8));
  m.forEach((v, i) => {
    if (v) b[i >> 3]! |= 1 << (i & 7);
  });
  return Buffer.from(b).toString('base64');
};
const unpackBits = (s: string, n: number) => {
  const b = Buffer.from(s, 'base64');
  return Uint8Array.from({ length: n }, (_, i) => (b[i >> 3]! >> (i & 7)) & 1);
};
const maskOf = (p: Parameter) => (p.mask ? Uint8Array.from(p.mask.dataSync(), (v) => (v !== 0 ? 1 : 0)) : undefined);
const toTensor = (m: Uint8Array, shape: number[]) => tf.tensor(Float32Array.from(m), shape, 'float32');

/**
 * Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune", §3): every `frequency` optimizer steps
 * from `beginStep`, for `prunings` prunings, the smallest-magnitude weights of the selected parameters are masked to
 * reach the sparsity of eq. 1 ({@link gradualSparsity}), per tensor or globally. Masks are set on the parameters
 * (core/masks.ts), so the trainer keeps pruned weights at 0 after every optimizer step (Adam's moments cannot revive
 * them), saveModel stores them (sparsely when smaller) and loadModel puts them back. Which parameters: `roles`
 * (kernels by default: dense and convolution weights, not biases or norms) and optionally `match`, a regular
 * expression on the name. The masks travel in the callback's state, so a resumed run prunes identically.
 */
export default definePlugin({
  kind: 'callback',
  name: 'magnitude-pruning',
  description: 'gradual magnitude pruning to a final sparsity with the cubic schedule of Zhu & Gupta (2017), eq. 1; masks kept through training and saving',
  schema: z.object({
    finalSparsity: z.number().min(0).lt(1),
    initialSparsity: z.number().min(0).lt(1).default(0),
    /** Optimizer step of the first pruning (t0). */
    beginStep: z.number().int().min(0).default(0),
    /** Steps between prunings (Δt). */
    frequency: z.number().int().positive().default(100),
    /** Number of prunings (n): the final sparsity is reached at step beginStep + prunings · frequency. */
    prunings: z.number().int().positive().default(10),
    scope: z.enum(['layer', 'global']).default('layer'),
    roles: z
      .array(z.enum(['kernel', 'bias', 'norm', 'embedding', 'other']))
      .min(1)
      .default(['kernel']),
    /** A regular expression: only parameters whose name matches it are pruned. */
    match: z.string().optional(),
  }),
  examples: [
    { options: { finalSparsity: 0.5, frequency: 1, prunings: 3 } },
    { options: { finalSparsity: 0.75, initialSparsity: 0.25, beginStep: 2, frequency: 2, prunings: 2, scope: 'global', roles: ['kernel', 'bias'] } },
  ],
  properties: [
    "the sparsity follows Zhu & Gupta's eq. 1 (s_i at t0, s_f from t0 + nΔt, cubic in between, non-increasing pruning rate)",
    'each pruning masks exactly ⌊s·n⌋ weights of the smallest magnitude (per layer or globally); masks only grow',
    'a pruned weight stays exactly 0 through Adam steps, saving and loading; biases are not pruned by default',
    'a run stopped mid-schedule and resumed from its checkpoint ends with the weights of one that never stopped',
  ],
  create: (o): Omit<Callback, 'spec'> => {
    if (o.initialSparsity > o.finalSparsity) throw new ConfigError('initialSparsity', `${o.initialSparsity} is above finalSparsity ${o.finalSparsity}`);
    let pattern: RegExp | null = null;
    try {
      pattern = o.match === undefined ? null : new RegExp(o.match);
    } catch (e) {
      throw new ConfigError('match', `not a regular expression: ${(e as Error).message}`);
    }
    /** The step whose pruning was last applied (-1: none yet). */
    let lastPruned = -1;
    /** The masks this callback has set, by parameter name (for its state). */
    let masks = new Map<string, Uint8Array>();
    /** Masks from a checkpoint's state, put on the model at the next epoch's start (before any step). */
    let pending: Map<string, Uint8Array> | null = null;
    const selected = (state: TrainingState): Parameter[] => {
      const ps = state.model.parameters().filter((p) => (o.roles as string[]).includes(p.role) && (!pattern || pattern.test(p.name)));
      if (ps.length === 0) {
        throw new ConfigError(
          'callbacks.magnitude-pruning',
          `no parameter of the model has a role in [${o.roles}]${o.match ? ` and a name matching /${o.match}/` : ''}`,
        );
      }
      return ps;
    };
    const prune = async (state: TrainingState, step: number) => {
      const params = selected(state);
      // The weights and masks on the host before the synchronous reads below (webgpu reads asynchronously; a no-op elsewhere).
      await readToHost(params.flatMap((p) => (p.mask ? [p.variable, p.mask] : [p.variable])));
      const next = magnitudeMasks(
        params.map((p) => p.variable.dataSync() as Float32Array),
        gradualSparsity(step, o),
        o.scope,
        params.map(maskOf),
      );
      params.forEach((p, i) => {
        setMask(p, toTensor(next[i]!, p.variable.shape));
        masks.set(p.name, next[i]!);
      });
      lastPruned = step;
    };
    /** Pruning steps: t0, t0 + Δt, ..., t0 + nΔt. */
    const due = (step: number) => step >= o.beginStep && step <= o.beginStep + o.prunings * o.frequency && (step - o.beginStep) % o.frequency === 0;
    return {
      onTrainBegin() {
        lastPruned = -1;
        masks = new Map();
        pending = null;
      },
      onEpochBegin(state: TrainingState) {
        const restore = pending;
        pending = null;
        for (const p of selected(state)) {
          const m = restore?.get(p.name) ?? masks.get(p.name);
          if (!m) continue;
          masks.set(p.name, m);
          setMask(p, toTensor(m, p.variable.shape)); // also zeroes the pruned weights
        }
      },
      async onBatchEnd(state: TrainingState) {
        // state.step counts the steps taken: the pruning of step t follows the t-th optimizer step.
        if (due(state.step) && state.step !== lastPruned) await prune(state, state.step);
      },
      getState(): Json {
        return { lastPruned, masks: Object.fromEntries([...masks].map(([k, m]) => [k, { n: m.length, bits: packBits(m) }])) };
      },
      setState(s: Json) {
        const st = s as { lastPruned: number; masks: Record<string, { n: number; bits: string }> };
        lastPruned = st.lastPruned;
        pending = new Map(Object.entries(st.masks).map(([k, { n, bits }]) => [k, unpackBits(bits, n)]));
      },
    };
  },
});
