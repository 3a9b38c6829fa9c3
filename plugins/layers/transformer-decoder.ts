import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, type ForwardContext, type Layer, type Parameter, type PluginContext, type Rng, type Shape } from '../../core';
import { transformerLayerOptions } from './transformer-encoder';
import { disposeCache, type KVCache, type MultiHeadAttention } from './multi-head-attention';

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
export class TransformerDecoder extends LayerBase {
  private readonly selfAttention: MultiHeadAttention;
  private readonly crossAttention: MultiHeadAttention | null;
  private readonly norms: Layer[];
  private readonly ff1: Layer;
  private ff2!: Layer;
  private readonly drop: Layer;

  constructor(
    private readonly opts: z.output<typeof schema>,
    private readonly ctx: PluginContext,
  ) {
    super(opts.name ?? 'transformer-decoder');
    const make = (spec: object, part: string) => ctx.registry.create('layer', { ...spec, name: `${this.name}/${part}` } as never, `${ctx.path}.${part}`);
    this.selfAttention = make({ type: 'multi-head-attention', numHeads: opts.numHeads, causal: true }, 'self_attention') as MultiHeadAttention;
    this.crossAttention = opts.crossAttention ? (make({ type: 'multi-head-attention', numHeads: opts.numHeads }, 'cross_attention') as MultiHeadAttention) : null;
    this.norms = (opts.crossAttention ? ['norm1', 'norm2', 'norm3'] : ['norm1', 'norm3']).map((n) => make({ type: 'layer-norm' }, n));
    this.ff1 = make({ type: 'dense', units: opts.ff, activation: opts.activation }, 'ff1');
    this.drop = make({ type: 'dropout', rate: opts.dropout }, 'dropout');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, d_model]', [1]);
    this.ff2 = this.ctx.registry.create('layer', { type: 'dense', units: inputShape[2]!, name: `${this.name}/ff2` }, `${this.ctx.path}.ff2`);
    for (const l of [this.selfAttention, this.crossAttention, ...this.norms, this.drop]) l?.build(inputShape, rng);
    this.ff2.build(this.ff1.build(inputShape, rng), rng);
    return inputShape;
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
    return this.forward(x, ctx, cache);
  }

  newCache(): DecoderCache {
    return { self: {}, cross: {} };
  }

  releaseCache(cache: DecoderCache): void {
    disposeCache(cache.self);
    disposeCache(cache.cross);
  }

  private forward(x: tf.Tensor, ctx: ForwardContext, cache: DecoderCache | null): tf.Tensor {
    const sub = (input: tf.Tensor, f: (y: tf.Tensor) => tf.Tensor, norm: Layer) =>
      this.opts.preNorm
        ? tf.add(input, this.drop.apply(f(norm.apply(input, ctx)), ctx))
        : norm.apply(tf.add(input, this.drop.apply(f(input), ctx)), ctx);
    const [n1, n2, n3] = this.crossAttention ? this.norms : [this.norms[0], null, this.norms[1]];
    let y = sub(x, (v) => this.selfAttention.attend(v, null, ctx, { causal: true, keyMask: cache ? undefined : ctx.mask, cache: cache?.self }), n1!);
    if (this.crossAttention) {
      if (!ctx.memory) throw new Error(`layer "${this.name}" (transformer-decoder): crossAttention needs the encoder output in ctx.memory; use crossAttention: false for a decoder-only model`);
      const cross = this.crossAttention;
      y = sub(y, (v) => cross.attend(v, ctx.memory!, ctx, { keyMask: ctx.memoryMask, cache: cache?.cross }), n2!);
    }
    return sub(y, (v) => this.ff2.apply(this.ff1.apply(v, ctx), ctx), n3!);
  }

  override parameters(): Parameter[] {
    return [this.selfAttention, this.crossAttention, this.norms[0], ...this.norms.slice(1), this.ff1, this.ff2]
      .flatMap((l) => l?.parameters() ?? []);
  }

  override dispose(): void {
    for (const l of [this.selfAttention, this.crossAttention, ...this.norms, this.ff1, this.ff2]) l?.dispose();
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'transformer-decoder',
  description: 'Transformer decoder layer: causal self-attention, cross-attention, feed-forward (Vaswani et al. 2017, §3.1); decoder-only (GPT) without cross-attention',
  schema,
  examples: [
    { options: { numHeads: 2, ff: 6, dropout: 0, crossAttention: false }, inputShape: [2, 3, 4] },
    { options: { numHeads: 1, ff: 5, dropout: 0.2, preNorm: true, crossAttention: false, activation: 'gelu' }, inputShape: [1, 3, 4] },
  ],
  properties: [
    'with memory: gradients match finite differences and the output at t does not depend on targets after t',
    'cached step-by-step decoding equals full decoding',
  ],
  create: (opts, ctx) => new TransformerDecoder(opts, ctx),
});
