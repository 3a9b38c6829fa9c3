import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, FUSED_KERNELS, hasKernel, type ForwardContext, type Layer, type PluginContext } from '../../core';
import { Dense } from './dense';
import { LayerNorm } from './layer-norm';
import { TransformerBlock, transformerLayerOptions } from './transformer-encoder';
import { disposeCache, MultiHeadAttention, type KVCache } from './multi-head-attention';

const schema = transformerLayerOptions.extend({
  /**
   * Attend to the encoder output in `ctx.memory` (the paper's decoder). Without it the layer is a decoder-only block
   * (masked self-attention and feed-forward), as in GPT (Radford et al. 2018; Brown et al. 2020).
   */
  crossAttention: z.boolean().default(true),
});

/** Per-layer state for incremental decoding: cached self-attention keys/values and projected memory. */
export interface DecoderCache {
  self: KVCache;
  cross: KVCache;
}

/**
 * One Transformer decoder layer (Vaswani et al. 2017, §3.1): masked (causal) self-attention, attention over the
 * encoder output, and a position-wise feed-forward network, each with dropout, a residual connection and layer norm.
 * Self-attention also honours the target padding mask `ctx.mask`; cross-attention the source mask `ctx.memoryMask`.
 */
export class TransformerDecoder extends TransformerBlock {
  private readonly selfAttention: MultiHeadAttention;
  private readonly crossAttention: MultiHeadAttention | null;
  private readonly norms: Layer[];

  constructor(opts: z.output<typeof schema>, ctx: PluginContext) {
    super(opts.name ?? 'transformer-decoder', opts, ctx);
    this.selfAttention = this.part('self_attention', this.attentionSpec('self_attention', { causal: true }), MultiHeadAttention);
    this.crossAttention = opts.crossAttention ? this.part('cross_attention', this.attentionSpec('cross_attention'), MultiHeadAttention) : null;
    this.norms = (opts.crossAttention ? ['norm1', 'norm2', 'norm3'] : ['norm1', 'norm3']).map((n) => this.part(n, this.normSpec()));
  }

  protected sublayerParts(): Layer[] {
    return [this.selfAttention, ...(this.crossAttention ? [this.crossAttention] : []), ...this.norms];
  }

  protected parts(): Layer[] {
    return [...this.sublayerParts(), this.ff1, ...(this.ff2 ? [this.ff2] : [])];
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return this.forward(x, ctx, null);
  }

  /**
   * Decodes the new positions `x` ([batch, newTime, d]) given the keys and values cached from earlier steps: the
   * result equals the last `newTime` rows of applying the layer to the whole prefix (causal attention makes earlier
   * rows independent of later ones). Create the cache with {@link newCache}; release it with {@link releaseCache}.
   */
  step(x: tf.Tensor, ctx: ForwardContext, cache: DecoderCache): tf.Tensor {
    return this.fusedStep(x, ctx, cache) ?? this.forward(x, ctx, cache);
  }

  /**
   * One position of a pre-norm decoder-only block (GPT's) in one kernel where the backend has FUSED_KERNELS.decoderStep:
   * the composed block's kernels, in its order, without tfjs's bookkeeping for each of its ~25 ops (the same bits).
   * Null where that kernel does not compute what {@link forward} would: cross-attention, post-norm, several
   * positions, training, a gradient being recorded, or a part it does not take (int8, a head gate, an activation
   * other than linear, relu or GELU's tanh form).
   */
  private fusedStep(x: tf.Tensor, ctx: ForwardContext, cache: DecoderCache): tf.Tensor | null {
    const [rows, t, d] = x.shape as [number, number, number];
    if (this.crossAttention || !this.opts.preNorm || t !== 1 || ctx.training || x.dtype !== 'float32' || tf.engine().isTapeOn()) return null;
    if (!hasKernel(FUSED_KERNELS.decoderStep) || !hasKernel(FUSED_KERNELS.cachedAttention)) return null;
    const [n1, n2] = [this.norms[0], this.norms[1]];
    if (!(n1 instanceof LayerNorm && n2 instanceof LayerNorm && this.ff1 instanceof Dense && this.ff2 instanceof Dense)) return null;
    const [attention, ff1, ff2] = [this.selfAttention.fusedForm(ctx), this.ff1.fusedForm(), this.ff2.fusedForm()];
    if (!attention || !ff1 || !ff2 || ff2.activation === 'gelu-tanh') return null;
    const [norm1, norm2] = [n1.fusedForm(), n2.fusedForm()];
    const slot = this.selfAttention.cacheSlot(cache.self, rows);
    const inputs: tf.NamedTensorMap = {
      x: tf.reshape(x, [rows, d]),
      norm1Gamma: norm1.gamma,
      norm1Beta: norm1.beta,
      qkvKernel: attention.qkvKernel,
      qkvBias: attention.qkvBias,
      outKernel: attention.outKernel,
      outBias: attention.outBias,
      norm2Gamma: norm2.gamma,
      norm2Beta: norm2.beta,
      ff1Kernel: ff1.kernel,
      ff2Kernel: ff2.kernel,
      k: slot.k,
      v: slot.v,
      ...(ff1.bias ? { ff1Bias: ff1.bias } : {}),
      ...(ff2.bias ? { ff2Bias: ff2.bias } : {}),
    };
    const attrs = {
      numHeads: attention.numHeads,
      length: slot.length,
      epsilon1: norm1.epsilon,
      epsilon2: norm2.epsilon,
      activation: ff1.activation,
      ff2Activation: ff2.activation,
    };
    const y = tf.engine().runKernel(FUSED_KERNELS.decoderStep, inputs, attrs as never) as tf.Tensor;
    cache.self.length = slot.length + 1;
    return tf.reshape(y, [rows, 1, d]);
  }

  /** `capacity`: the positions the decoding will cache at most, when known (KVCache.capacity). */
  newCache(capacity?: number): DecoderCache {
    return { self: capacity === undefined ? {} : { capacity }, cross: {} };
  }

  /**
   * Fills the cross-attention cache from the encoder output `memory` [items, s, d] for rows that repeat its items
   * (row r is item rows[r]; MultiHeadAttention.cacheMemory): decoding then reads the cache, as it would after its
   * first step on the repeated memory. Nothing to do without cross-attention.
   */
  cacheMemory(cache: DecoderCache, memory: tf.Tensor, rows: Int32Array): void {
    this.crossAttention?.cacheMemory(memory, cache.cross, rows);
  }

  releaseCache(cache: DecoderCache): void {
    disposeCache(cache.self);
    disposeCache(cache.cross);
  }

  private forward(x: tf.Tensor, ctx: ForwardContext, cache: DecoderCache | null): tf.Tensor {
    const sub = (input: tf.Tensor, f: (y: tf.Tensor) => tf.Tensor, norm: Layer) => this.residual(input, f, norm, ctx);
    const [n1, n2, n3] = this.crossAttention ? this.norms : [this.norms[0], null, this.norms[1]];
    let y = sub(x, (v) => this.selfAttention.attend(v, null, ctx, { causal: true, keyMask: cache ? undefined : ctx.mask, cache: cache?.self }), n1!);
    if (this.crossAttention) {
      if (!ctx.memory)
        throw new Error(
          `layer "${this.name}" (transformer-decoder): crossAttention needs the encoder output in ctx.memory; use crossAttention: false for a decoder-only model`,
        );
      const cross = this.crossAttention;
      y = sub(y, (v) => cross.attend(v, ctx.memory!, ctx, { keyMask: ctx.memoryMask, cache: cache?.cross }), n2!);
    }
    return sub(y, (v) => this.feedForward(v, ctx), n3!);
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'transformer-decoder',
  description:
    'Transformer decoder layer: causal self-attention, cross-attention, feed-forward (Vaswani et al. 2017, §3.1); decoder-only (GPT) without cross-attention',
  schema,
  examples: [
    { options: { numHeads: 2, ff: 6, dropout: 0, crossAttention: false }, inputShape: [2, 3, 4] },
    { options: { numHeads: 1, ff: 5, dropout: 0.2, preNorm: true, crossAttention: false, activation: 'gelu' }, inputShape: [1, 3, 4] },
  ],
  properties: [
    'with memory: gradients match finite differences and the output at t does not depend on targets after t',
    'cached step-by-step decoding equals full decoding',
    "pre-norm, decoder-only: the fused decoding step (LoomDecoderStep) gives the composed block's outputs and cache bit for bit (plugins/layers/decoder-step.test.ts)",
  ],
  create: (opts, ctx) => new TransformerDecoder(opts, ctx),
});
