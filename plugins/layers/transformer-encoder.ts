import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, layerOptions, pluginSpecSchema, type ForwardContext, type Layer, type Parameter, type PluginContext, type Rng, type Shape } from '../../core';

/** Options shared by the Transformer's encoder and decoder layers. */
export const transformerLayerOptions = layerOptions.extend({
  numHeads: z.number().int().positive(),
  /** Inner width of the position-wise feed-forward network (d_ff; 4·d_model in the paper). */
  ff: z.number().int().positive(),
  dropout: z.number().min(0).lt(1).default(0.1),
  /** Post-norm LN(x + Sublayer(x)) as in the paper, or pre-norm x + Sublayer(LN(x)) (Xiong et al. 2020; GPT-2). */
  preNorm: z.boolean().default(false),
  /** Activation of the feed-forward network: ReLU in the paper, GELU in BERT and GPT. */
  activation: pluginSpecSchema.default('relu'),
});

const schema = transformerLayerOptions.extend({ causal: z.boolean().default(false) });

/**
 * One Transformer encoder layer (Vaswani et al. 2017, §3.1): self-attention and a position-wise feed-forward
 * network FFN(x) = max(0, xW₁ + b₁)W₂ + b₂ (eq. 2), each wrapped in a residual connection, dropout and layer norm.
 * Self-attention ignores padded positions given by `ctx.mask`.
 */
export class TransformerEncoder extends LayerBase {
  private readonly attention: Layer;
  private readonly norm1: Layer;
  private readonly norm2: Layer;
  private readonly ff1: Layer;
  private ff2!: Layer;
  private readonly drop: Layer;

  constructor(
    private readonly opts: z.output<typeof schema>,
    private readonly ctx: PluginContext,
  ) {
    super(opts.name ?? 'transformer-encoder');
    const make = (spec: object, part: string) => ctx.registry.create('layer', { ...spec, name: `${this.name}/${part}` } as never, `${ctx.path}.${part}`);
    this.attention = make({ type: 'multi-head-attention', numHeads: opts.numHeads, causal: opts.causal }, 'attention');
    this.norm1 = make({ type: 'layer-norm' }, 'norm1');
    this.norm2 = make({ type: 'layer-norm' }, 'norm2');
    this.ff1 = make({ type: 'dense', units: opts.ff, activation: opts.activation }, 'ff1');
    this.drop = make({ type: 'dropout', rate: opts.dropout }, 'dropout');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, d_model]', [1]);
    this.ff2 = this.ctx.registry.create('layer', { type: 'dense', units: inputShape[2]!, name: `${this.name}/ff2` }, `${this.ctx.path}.ff2`);
    for (const l of [this.attention, this.norm1, this.norm2, this.drop]) l.build(inputShape, rng);
    this.ff2.build(this.ff1.build(inputShape, rng), rng);
    return inputShape;
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const sub = (input: tf.Tensor, f: (y: tf.Tensor) => tf.Tensor, norm: Layer) =>
      this.opts.preNorm
        ? tf.add(input, this.drop.apply(f(norm.apply(input, ctx)), ctx))
        : norm.apply(tf.add(input, this.drop.apply(f(input), ctx)), ctx);
    const y = sub(x, (v) => this.attention.apply(v, ctx), this.norm1);
    return sub(y, (v) => this.ff2.apply(this.ff1.apply(v, ctx), ctx), this.norm2);
  }

  override parameters(): Parameter[] {
    return [this.attention, this.norm1, this.ff1, this.ff2, this.norm2].flatMap((l) => l.parameters());
  }

  override dispose(): void {
    for (const l of [this.attention, this.norm1, this.ff1, this.ff2, this.norm2]) l.dispose();
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'transformer-encoder',
  description: 'Transformer encoder layer: self-attention + feed-forward, residuals, layer norm (Vaswani et al. 2017, §3.1)',
  schema,
  examples: [
    { options: { numHeads: 2, ff: 6, dropout: 0 }, inputShape: [2, 3, 4] },
    { options: { numHeads: 1, ff: 5, dropout: 0.2, preNorm: true, causal: true }, inputShape: [1, 3, 4] },
  ],
  create: (opts, ctx) => new TransformerEncoder(opts, ctx),
});
