import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin,
  FUSED_KERNELS,
  hasKernel,
  hostFloats,
  int8Linear,
  LayerBase,
  layerOptions,
  linear,
  selfAttention,
  softmax,
  pluginSpecSchema,
  productQuant,
  quantizationOption,
  quantizedWeights,
  ShapeError,
  type ForwardContext,
  type Initializer,
  type Parameter,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';
import { dropoutMask } from './dropout';

const schema = layerOptions.extend({
  numHeads: z.number().int().positive(),
  /** Mask attention to later positions (decoder self-attention, GPT). */
  causal: z.boolean().default(false),
  /** Dropout on the attention weights (Vaswani et al. 2017 apply it after the softmax). */
  dropout: z.number().min(0).lt(1).default(0),
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
  /**
   * The output projection W^O's initializer, where it differs from the others: GPT-2 (Radford et al. 2019, §2.3)
   * scales the projections that write into the residual stream by 1/√N, N the number of residual layers.
   */
  outputInitializer: pluginSpecSchema.optional(),
  /**
   * Post-training int8 (docs/quantization.md): the q,k,v projection and the output projection W^O take int8 weights
   * per output channel and a uint8 input per tensor; the scores QKᵀ, the softmax and the product with V stay in
   * float32. In static mode `inputs` holds the calibrated inputs of `qkv` (the queries' input), `memory` (the
   * source's, in cross-attention) and `out` (the heads' concatenated context). Written by `quantizeModel`.
   */
  quantization: quantizationOption.optional(),
});

/**
 * Keys and values of the positions seen so far, per head ([batch, heads, time, d_k]), so incremental decoding costs
 * one position a step instead of recomputing the prefix. For cross-attention they are the projected encoder memory,
 * computed at the first step and reused. The owner disposes them with {@link disposeCache}.
 */
export interface KVCache {
  k?: tf.Tensor;
  v?: tf.Tensor;
  /**
   * Set while the self-attention cache is in the fused decoding kernel's layout (`FUSED_KERNELS.cachedAttention`):
   * k and v then have room for more positions ([batch, heads, capacity, d_k]) and hold `length` of them; the
   * kernel writes each new position into them in place instead of copying the whole cache into a longer tensor.
   */
  length?: number;
  /**
   * The positions this decoding will cache at most, when its caller knows (a beam search's or greedy decoding's
   * maximum length, generation's prompt plus new tokens): the fused layout's first allocation makes room for that
   * many instead of {@link FIRST_CAPACITY}, so it never grows (each growth copies the cache) and a reorder or
   * growth does not handle spare room beyond it. Only a size: more positions still fit, by doubling.
   */
  capacity?: number;
  /**
   * Set on a cross-attention cache whose k and v hold the memory of each item once ([items, heads, keys, d_k]) for
   * `repeat` consecutive query rows each (a beam search's hypotheses of one source): the fused kernel
   * (`FUSED_KERNELS.memoryAttention`) reads them so; the composed ops repeat them on first use.
   */
  repeat?: number;
  /**
   * In the fused layout, after a reorder: the buffers the cache held before it, of k's and v's shape, zero from
   * `length` on (decoding never writes past the positions in use). The next reorder writes into them in place and
   * they swap with k and v, so a beam search's reorders allocate nothing and write no zeros. Decoding writes the
   * cache's tensors in place: they are its own, shared with nothing.
   */
  back?: { k: tf.Tensor; v: tf.Tensor };
}

export function disposeCache(cache: KVCache): void {
  tf.dispose([cache.k!, cache.v!].filter(Boolean));
  delete cache.k;
  delete cache.v;
  delete cache.length;
  delete cache.repeat;
  dropBack(cache);
}

/** Releases a cache's previous buffers ({@link KVCache.back}). */
function dropBack(cache: KVCache): void {
  if (cache.back) tf.dispose([cache.back.k, cache.back.v]);
  delete cache.back;
}

/**
 * Moves cached rows to follow their hypotheses (beam search): row r takes the keys and values of row origin[r].
 * In the fused decoding kernel's layout only the positions in use are copied (`FUSED_KERNELS.cacheReorder`); a
 * gather of whole rows would copy the spare capacity too, which made beam search on that layout slower than on the
 * composed ops' (80-90 against 120-140 words/s for G2P, quiet, 2-core Zen 4; commit 62d45ae).
 */
export function reorderCache(cache: KVCache, origin: Int32Array): void {
  if (!cache.k) return;
  const length = cache.length;
  if (length !== undefined && hasKernel(FUSED_KERNELS.cacheReorder)) {
    // Into the buffers the cache held before the last reorder (zeros the first time), which then hold its present
    // ones: positions from `length` on were never written in either, so they are zero as the kernel requires.
    const shape = [origin.length, ...cache.k.shape.slice(1)];
    if (cache.back && cache.back.k.shape.join() !== shape.join()) dropBack(cache);
    const back = (cache.back ??= { k: tf.keep(tf.zeros(shape)), v: tf.keep(tf.zeros(shape)) });
    const [k, v] = tf.tidy(() => {
      const indices = tf.tensor1d(origin, 'int32');
      const move = (x: tf.Tensor, out: tf.Tensor) => tf.engine().runKernel(FUSED_KERNELS.cacheReorder, { x, indices, out }, { length }) as tf.Tensor;
      return [tf.keep(move(cache.k!, back.k)), tf.keep(move(cache.v!, back.v))];
    });
    tf.dispose([back.k, back.v]); // these handles only: k and v hold their data now
    cache.back = { k: cache.k, v: cache.v! };
    cache.k = k;
    cache.v = v;
    return;
  }
  const [k, v] = tf.tidy(() => [tf.keep(tf.gather(cache.k!, origin)), tf.keep(tf.gather(cache.v!, origin))]);
  tf.dispose([cache.k, cache.v!]);
  cache.k = k;
  cache.v = v;
}

/** Positions the fused decoding kernel's cache has room for at first; it doubles when full. */
const FIRST_CAPACITY = 32;

/**
 * A forward context that gates heads (Michel et al. 2019, §2.2): every multi-head attention layer asks `headGate`
 * with its name and head count; a [numHeads] tensor ξ it returns multiplies head h's context by ξ_h before the
 * output projection, Att(x) = Σ_h ξ_h · Att_h(x) (their eq. 1), so ∂L/∂ξ_h is the head's importance (eq. 2); null
 * leaves the layer as it is. Layers pass the context on (spread), so the gate reaches every attention in a model.
 */
export interface HeadGateContext extends ForwardContext {
  headGate?: (layer: string, numHeads: number) => tf.Tensor | null;
}

/** The gate ξ [h] spread over the heads' context columns: [h · d_k], head h's value in columns h·d_k.. (h+1)·d_k. */
export function headColumns(gate: tf.Tensor, dk: number): tf.Tensor {
  const h = gate.shape[0]!;
  return tf.reshape(tf.tile(tf.reshape(gate, [h, 1]), [1, dk]), [h * dk]);
}

export interface AttendOptions {
  /** [batch, keyTime] with 1 for real keys and 0 for padding: padded keys receive zero weight. */
  keyMask?: tf.Tensor;
  /** Query i may attend only to keys j ≤ i (offset by the cache length when decoding incrementally). */
  causal?: boolean;
  cache?: KVCache;
}

/**
 * Multi-head attention (Vaswani et al. 2017, §3.2.2, eq. 1):
 *   Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + M) V,  head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V),
 *   MultiHead = Concat(head_1..h) W^O,  d_k = d_model / h,
 * where the additive mask M is −1e9 at padded keys and, when causal, above the diagonal. As a layer it is
 * self-attention on its input, with the padding mask from `ctx.mask`; {@link attend} also does cross-attention
 * (queries from one sequence, keys and values from another) and cached incremental decoding.
 * Q, K and V share one [d, 3d] projection (cross-attention uses its first third for queries, the rest for memory).
 * With `quantization` (post-training int8, docs/quantization.md) both projections run on int8 weights quantized per
 * output channel with the input quantized per tensor (Jacob et al. 2018); QKᵀ, the softmax and the product with V
 * multiply two activations and stay float32, so the cached keys and values of incremental decoding are float32 too.
 */
export class MultiHeadAttention extends LayerBase {
  private qkv!: tf.Variable;
  private qkvBias!: tf.Variable;
  private out!: tf.Variable;
  private outBias!: tf.Variable;
  /** Quantized: the per-output-channel scales of the int8 `qkv` and `out` kernels. */
  private qkvScale: tf.Variable | null = null;
  private outScale: tf.Variable | null = null;
  /** Quantized: the int8 kernels, their scales and the biases, as buffers (saved, not trained). */
  private saved: Parameter[] = [];
  private readonly init: Initializer;
  private readonly outInit: Initializer;
  private readonly zeros: Initializer;

  constructor(
    private readonly opts: z.output<typeof schema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'multi-head-attention');
    this.init = ctx.create('initializer', opts.kernelInitializer, 'kernelInitializer');
    this.outInit = opts.outputInitializer ? ctx.create('initializer', opts.outputInitializer, 'outputInitializer') : this.init;
    this.zeros = ctx.create('initializer', 'zeros');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, d_model]', [1]);
    const d = inputShape[2]!;
    if (d % this.opts.numHeads !== 0) throw this.shapeError(`d_model divisible by numHeads = ${this.opts.numHeads}`, inputShape);
    if (this.opts.quantization) {
      // The same names as the float layer's weights (qkv_kernel, ...), plus each kernel's scales.
      this.saved = [...quantizedWeights(this.name, [d, 3 * d], true, rng, 'qkv_'), ...quantizedWeights(this.name, [d, d], true, rng, 'out_')];
      [this.qkv, this.qkvScale, this.qkvBias, this.out, this.outScale, this.outBias] = this.saved.map((p) => p.variable);
      return inputShape;
    }
    this.qkv = this.addWeight('qkv_kernel', [d, 3 * d], this.init, rng, 'kernel');
    this.qkvBias = this.addWeight('qkv_bias', [3 * d], this.zeros, rng, 'bias');
    this.out = this.addWeight('out_kernel', [d, d], this.outInit, rng, 'kernel');
    this.outBias = this.addWeight('out_bias', [d], this.zeros, rng, 'bias');
    return inputShape;
  }

  buffers(): Parameter[] {
    return this.saved;
  }

  /**
   * x [rows, d] times a projection's kernel (columns `cols` of it: [start, size]) plus its bias: float32, or int8
   * when quantized, with x quantized as the input `product` (qkv, memory or out).
   */
  private project(x: tf.Tensor, which: 'qkv' | 'out', product: string, cols?: [number, number]): tf.Tensor2D {
    const [kernel, bias, scale] = which === 'qkv' ? [this.qkv, this.qkvBias, this.qkvScale] : [this.out, this.outBias, this.outScale];
    const part = (t: tf.Tensor): tf.Tensor => (cols ? tf.slice(t, t.rank === 2 ? [0, cols[0]] : [cols[0]], t.rank === 2 ? [-1, cols[1]] : [cols[1]]) : t);
    const [k, b] = [part(kernel) as tf.Tensor2D, part(bias) as tf.Tensor1D];
    const q = this.opts.quantization;
    if (!q) return linear(x as tf.Tensor2D, k, b) as tf.Tensor2D;
    // Per-channel scales: a slice of the columns is quantized exactly as the whole kernel is.
    return int8Linear(x as tf.Tensor2D, k, part(scale!) as tf.Tensor1D, b, productQuant(q, x, this.name, product), false);
  }

  override dispose(): void {
    for (const p of this.saved) p.variable.dispose();
    this.saved = [];
    super.dispose();
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return this.attend(x, null, ctx, { keyMask: ctx.mask, causal: this.opts.causal });
  }

  /** Attention of `query` to `source` (null: to itself), returning [batch, queryTime, d_model]. */
  attend(query: tf.Tensor, source: tf.Tensor | null, ctx: ForwardContext, o: AttendOptions = {}): tf.Tensor {
    const [b, t, d] = query.shape as [number, number, number];
    if (source === null && !o.cache && !(ctx.training && this.opts.dropout > 0) && hasKernel(FUSED_KERNELS.attention) && query.dtype === 'float32') {
      // One kernel from the packed projection to the context, each way (core/ops/attention.ts): the same maths as below.
      const proj = this.project(tf.reshape(query, [b * t, d]), 'qkv', 'qkv');
      const context = selfAttention(tf.reshape(proj, [b, t, 3 * d]), this.opts.numHeads, o.keyMask, o.causal ?? false);
      return tf.reshape(this.project(this.gated(tf.reshape(context, [b * t, d]), ctx), 'out', 'out'), [b, t, d]);
    }
    if (
      source === null &&
      o.cache &&
      t === 1 &&
      !o.keyMask &&
      !(ctx.training && this.opts.dropout > 0) &&
      hasKernel(FUSED_KERNELS.cachedAttention) &&
      query.dtype === 'float32'
    ) {
      // Incremental decoding, one position: one kernel appends its key and value to the cache in place and attends
      // over the cache (the same products, softmax and roundings as the composed ops below, without the causal
      // mask, which allows every key to a single query at the last position). With many rows too: beam search
      // reorders the rows every step with reorderCache, which copies only the positions in use.
      const context = this.cachedAttention(this.project(tf.reshape(query, [b, d]), 'qkv', 'qkv'), o.cache);
      return tf.reshape(this.project(this.gated(context, ctx), 'out', 'out'), [b, t, d]);
    }
    if (
      source !== null &&
      o.cache?.k &&
      t === 1 &&
      !(ctx.training && this.opts.dropout > 0) &&
      hasKernel(FUSED_KERNELS.memoryAttention) &&
      query.dtype === 'float32'
    ) {
      // Decoding's cross-attention, one position over the cached memory: one kernel from the queries to the context,
      // reading each source's keys and values once for all the rows that share it (the same products, roundings and
      // softmax as the composed ops below on the repeated memory).
      const q = this.project(tf.reshape(query, [b, d]), 'qkv', 'qkv', [0, d]);
      const inputs: tf.NamedTensorMap = { q, k: o.cache.k, v: o.cache.v! };
      if (o.keyMask) inputs.keep = tf.reshape(o.keyMask, [b, -1]);
      const context = tf.engine().runKernel(FUSED_KERNELS.memoryAttention, inputs, { numHeads: this.opts.numHeads, repeat: o.cache.repeat ?? 1 }) as tf.Tensor;
      return tf.reshape(this.project(this.gated(context, ctx), 'out', 'out'), [b, t, d]);
    }
    const weights = this.weights(query, source, ctx, o);
    const context = tf.reshape(tf.transpose(tf.matMul(weights.probs, weights.v), [0, 2, 1, 3]), [b * t, d]);
    return tf.reshape(this.project(this.gated(context, ctx), 'out', 'out'), [b, t, d]);
  }

  /** The heads' context [rows, d] times the context's head gate, if it gives this layer one ({@link HeadGateContext}). */
  private gated(context: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const h = this.opts.numHeads;
    const gate = (ctx as HeadGateContext).headGate?.(this.name, h) ?? null;
    if (!gate) return context;
    if (gate.shape.join() !== String(h)) throw new ShapeError(`head gate of "${this.name}"`, `[${h}]`, gate.shape);
    return tf.mul(context, headColumns(gate, context.shape[1]! / h));
  }

  /** The attention probabilities [batch, heads, queryTime, keyTime] (after dropout in training), and the values. */
  weights(query: tf.Tensor, source: tf.Tensor | null, ctx: ForwardContext, o: AttendOptions = {}): { probs: tf.Tensor; v: tf.Tensor } {
    const [b, t, d] = query.shape as [number, number, number];
    const h = this.opts.numHeads;
    const dk = d / h;
    const heads = (m: tf.Tensor, parts: number, time: number) => tf.transpose(tf.reshape(m, [b, time, parts, h, dk]), [2, 0, 3, 1, 4]);
    let q: tf.Tensor;
    let k: tf.Tensor;
    let v: tf.Tensor;
    const cache = o.cache;
    if (cache) {
      this.unpack(cache);
      this.unrepeat(cache);
    }
    if (source === null) {
      const proj = this.project(tf.reshape(query, [b * t, d]), 'qkv', 'qkv');
      [q, k, v] = tf.unstack(heads(proj, 3, t), 0) as [tf.Tensor, tf.Tensor, tf.Tensor];
      if (cache) {
        if (cache.k) [k, v] = [tf.concat([cache.k, k], 2), tf.concat([cache.v!, v], 2)];
        this.store(cache, k, v);
      }
    } else {
      q = tf.squeeze(heads(this.project(tf.reshape(query, [b * t, d]), 'qkv', 'qkv', [0, d]), 1, t), [0]);
      if (cache?.k) [k, v] = [cache.k, cache.v!];
      else {
        [k, v] = this.memoryKV(source);
        if (cache) this.store(cache, k, v);
      }
    }
    const keyTime = k.shape[2]!;
    const raw = tf.matMul(q, k, false, true); // [b, h, t, keyTime]
    const scale = 1 / Math.sqrt(dk);
    // A single query (at the last position: decoding one step) may attend every key, so its causal mask is all
    // true and is left out: s · 1/√d_k + 0 is s · 1/√d_k exactly.
    let allowed: tf.Tensor | null = o.causal && t > 1 ? causalMask(t, keyTime) : null;
    if (o.keyMask) {
      const keys = tf.reshape(tf.notEqual(o.keyMask, 0), [b, 1, 1, keyTime]);
      allowed = allowed ? tf.logicalAnd(allowed, keys) : keys;
    }
    // Masked scores are replaced by −1e9 (not offset by it: in float32, s − 1e9 rounds s away, which makes a row
    // whose keys are all masked a step function of s; replaced, it is a constant, with a zero gradient). As
    // s · m/√d_k + (m − 1) · 1e9 with m ∈ {0, 1}, the mask broadcasts over heads and queries instead of being tiled.
    let scores: tf.Tensor;
    if (allowed) {
      const m = tf.cast(allowed, 'float32');
      scores = tf.add(tf.mul(raw, tf.mul(m, scale)), tf.mul(tf.sub(m, 1), 1e9));
    } else scores = tf.mul(raw, scale);
    let probs = softmax(scores);
    if (ctx.training && this.opts.dropout > 0) probs = dropoutMask(probs, this.opts.dropout, ctx.rng.nextSeed(), probs.shape);
    return { probs, v };
  }

  /**
   * The context [batch, d] of one new position from its packed projection `qkv` [batch, 3·d], through
   * `FUSED_KERNELS.cachedAttention`, with the cache in that kernel's layout (converted on first use with room for
   * `cache.capacity` positions, or {@link FIRST_CAPACITY}, grown by doubling when full).
   */
  private cachedAttention(qkv: tf.Tensor, cache: KVCache): tf.Tensor {
    const { k, v, length } = this.cacheSlot(cache, qkv.shape[0]!);
    const context = tf.engine().runKernel(FUSED_KERNELS.cachedAttention, { qkv, k, v }, { numHeads: this.opts.numHeads, length }) as tf.Tensor;
    cache.length = length + 1;
    return context;
  }

  /**
   * The cache in `FUSED_KERNELS.cachedAttention`'s layout with room for one more position of `batch` rows (converted
   * on first use with room for `cache.capacity` positions, or {@link FIRST_CAPACITY}, grown by doubling when full),
   * and the positions it holds: a fused kernel writes the new one at row `length` in place, and its caller then
   * sets `cache.length` to length + 1.
   */
  cacheSlot(cache: KVCache, batch: number): { k: tf.Tensor; v: tf.Tensor; length: number } {
    const h = this.opts.numHeads;
    const dk = this.qkv.shape[0]! / h;
    const length = cache.length ?? cache.k?.shape[2] ?? 0;
    const capacity = cache.length === undefined ? 0 : cache.k!.shape[2]!;
    if (length + 1 > capacity) {
      const target = capacity === 0 ? Math.max(cache.capacity ?? FIRST_CAPACITY, length + 1) : Math.max(2 * capacity, length + 1);
      const room = target - (cache.length === undefined ? length : capacity);
      // Zeros after the positions held, as one pad (a new zeros tensor concatenated on was a second copy), and a new
      // cache's zeros in the backend's recycled memory (tf.zeros allocates a new array, never reused: with the
      // concatenation, ~180 MB per 50 words of G2P test decoding).
      const grow = (x: tf.Tensor | undefined) =>
        x
          ? tf.pad(x, [
              [0, 0],
              [0, 0],
              [0, room],
              [0, 0],
            ])
          : tf.tensor(hostFloats(batch * h * room * dk).fill(0), [batch, h, room, dk], 'float32');
      this.store(cache, grow(cache.k), grow(cache.v));
      dropBack(cache); // of the old capacity
      cache.length = length;
    }
    return { k: cache.k!, v: cache.v!, length };
  }

  /**
   * The layer as a fused decoding kernel takes it (FUSED_KERNELS.decoderStep), or null where that kernel would not
   * compute what {@link attend} does: int8 projections, a head gate in `ctx`, or attention dropout while training.
   */
  fusedForm(ctx: ForwardContext): { numHeads: number; qkvKernel: tf.Tensor; qkvBias: tf.Tensor; outKernel: tf.Tensor; outBias: tf.Tensor } | null {
    if (this.opts.quantization || (ctx as HeadGateContext).headGate || (ctx.training && this.opts.dropout > 0)) return null;
    return { numHeads: this.opts.numHeads, qkvKernel: this.qkv, qkvBias: this.qkvBias, outKernel: this.out, outBias: this.outBias };
  }

  /**
   * Fills a cross-attention cache with the keys and values of `source` [items, s, d] taken at `rows` (row r holds
   * item rows[r]'s): what {@link weights} would cache from the gathered source, the same ops on fewer rows (each
   * row's projection does not depend on the others), then gathered. Beam search repeats each item `beam` times, and
   * projecting the memory before the repetition does a beam's worth less of that product.
   */
  cacheMemory(source: tf.Tensor, cache: KVCache, rows: Int32Array): void {
    // Rows that repeat each item `repeat` times in order (a beam search's) keep the memory unrepeated where the fused
    // kernel reads it so (FUSED_KERNELS.memoryAttention): no gathered copy, each item's keys read once for its rows.
    const items = source.shape[0]!;
    const repeat = items > 0 && rows.length % items === 0 ? rows.length / items : 0;
    if (repeat > 0 && hasKernel(FUSED_KERNELS.memoryAttention) && rows.every((item, r) => item === Math.floor(r / repeat))) {
      const [k, v] = tf.tidy(() => this.memoryKV(source));
      this.store(cache, k!, v!);
      if (repeat > 1) cache.repeat = repeat;
      else delete cache.repeat;
      return;
    }
    const [k, v] = tf.tidy(() => this.memoryKV(source).map((t) => tf.gather(t, rows)));
    this.store(cache, k!, v!);
    delete cache.repeat;
  }

  /** Cross-attention's keys and values of the memory `source` [b, s, d]: each [b, heads, s, d_k]. */
  private memoryKV(source: tf.Tensor): [tf.Tensor, tf.Tensor] {
    const [b, s, d] = source.shape as [number, number, number];
    const h = this.opts.numHeads;
    const proj = this.project(tf.reshape(source, [b * s, d]), 'qkv', 'memory', [d, 2 * d]);
    return tf.unstack(tf.transpose(tf.reshape(proj, [b, s, 2, h, d / h]), [2, 0, 3, 1, 4]), 0) as [tf.Tensor, tf.Tensor];
  }

  /** Returns a cache in the fused decoding kernel's layout to the composed ops' ([batch, heads, time, d_k]). */
  private unpack(cache: KVCache): void {
    if (cache.length === undefined) return;
    const length = cache.length;
    delete cache.length;
    dropBack(cache);
    const valid = (x: tf.Tensor) => tf.slice(x, [0, 0, 0, 0], [-1, -1, length, -1]);
    this.store(cache, valid(cache.k!), valid(cache.v!));
  }

  /** Repeats a cross-attention cache's unrepeated memory ({@link KVCache.repeat}) for the composed ops: row by row. */
  private unrepeat(cache: KVCache): void {
    const repeat = cache.repeat;
    if (!repeat || !cache.k) return;
    delete cache.repeat;
    const rows = Int32Array.from({ length: cache.k.shape[0]! * repeat }, (_, r) => Math.floor(r / repeat));
    const [k, v] = tf.tidy(() => [tf.gather(cache.k!, rows), tf.gather(cache.v!, rows)]);
    this.store(cache, k!, v!);
  }

  /** Replaces the cached keys and values (kept across tidy scopes; the previous ones are released). */
  private store(cache: KVCache, k: tf.Tensor, v: tf.Tensor): void {
    const old = [cache.k, cache.v];
    cache.k = tf.keep(k);
    cache.v = tf.keep(v);
    for (const x of old) if (x && x !== cache.k && x !== cache.v) x.dispose();
  }
}

/**
 * [queries, keys] causal mask, true where attention is allowed: query i, being position keys − queries + i, may
 * attend to keys j at or before it. With equal lengths this is the usual lower triangle.
 */
export function causalMask(queries: number, keys = queries): tf.Tensor2D {
  return tf.tidy(() => tf.cast(tf.linalg.bandPart(tf.ones([queries, keys]), -1, keys - queries), 'bool') as tf.Tensor2D);
}

export default definePlugin({
  kind: 'layer',
  name: 'multi-head-attention',
  aliases: ['mha'],
  description: 'multi-head scaled dot-product attention with padding and causal masks (Vaswani et al. 2017, eq. 1 and §3.2.2)',
  schema,
  examples: [
    { options: { numHeads: 2 }, inputShape: [2, 3, 4] },
    { options: { numHeads: 1, causal: true }, inputShape: [1, 4, 3] },
  ],
  properties: [
    'padded keys receive zero attention weight',
    'causal: the output at t does not depend on inputs after t',
    'cached incremental attention equals full attention',
    'cross-attention gradients match finite differences',
    'quantized: within the error bound carried in float64 from the quantization steps through the projections, scores, softmax and context (runtime/quantize-module.test.ts)',
  ],
  create: (opts, ctx) => new MultiHeadAttention(opts, ctx),
});
