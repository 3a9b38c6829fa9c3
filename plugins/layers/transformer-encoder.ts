import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { quantizedDenseSpec } from './quantized-dense';
import {
  createPart,
  definePlugin,
  LayerBase,
  layerOptions,
  pluginSpecSchema,
  quantizationOption,
  subQuantization,
  type ForwardContext,
  type Layer,
  type LayerClass,
  type Parameter,
  type PartSpec,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';

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
  /**
   * Dropout on the attention probabilities. The paper's residual dropout (§5.4) does not include it, so 0 here;
   * GPT-2 (attn_pdrop) and BERT (attention_probs_dropout_prob) use 0.1.
   */
  attentionDropout: z.number().min(0).lt(1).default(0),
  /** Initializer of every kernel of the layer (attention projections, feed-forward). */
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
  /**
   * Initializer of the two kernels that write into the residual stream (attention output W^O, feed-forward W₂),
   * where it differs: GPT-2's N(0, 0.02/√(2·layers)). Default: `kernelInitializer`.
   */
  residualInitializer: pluginSpecSchema.optional(),
  /** The layer norms' ε (1e-5 as in PyTorch; BERT uses 1e-12). */
  normEpsilon: z.number().positive().default(1e-5),
  /**
   * Post-training int8 (docs/quantization.md): the attention projections and both feed-forward products run in
   * int8; the layer norms, softmax and the attention's score and value products stay in float32. Static mode's
   * calibrated inputs are keyed by part: `ff1`, `ff2`, `attention/qkv` (`self_attention/...`, `cross_attention/...`
   * in the decoder). Written by `quantizeModel`.
   */
  quantization: quantizationOption.optional(),
});

type TransformerLayerOptions = z.output<typeof transformerLayerOptions>;

/**
 * What the Transformer's encoder and decoder layers share (Vaswani et al. 2017, §3.1-3.3): the position-wise
 * feed-forward network FFN(x) = act(xW₁ + b₁)W₂ + b₂ (eq. 2), dropout, and the wrapping of each sub-layer in a
 * residual connection and layer norm, post-norm LN(x + Dropout(Sublayer(x))) or pre-norm
 * x + Dropout(Sublayer(LN(x))). A subclass creates its attention parts and norms, and says in which order its
 * parameters are listed.
 */
export abstract class TransformerBlock extends LayerBase {
  protected readonly ff1: Layer;
  protected ff2!: Layer;
  protected readonly drop: Layer;

  constructor(
    name: string,
    protected readonly opts: TransformerLayerOptions,
    private readonly ctx: PluginContext,
  ) {
    super(name);
    this.ff1 = this.part(
      'ff1',
      quantizedDenseSpec({ type: 'dense', units: opts.ff, activation: opts.activation, kernelInitializer: opts.kernelInitializer }, opts.quantization, 'ff1'),
    );
    this.drop = this.part('dropout', { type: 'dropout', rate: opts.dropout });
  }

  /** The multi-head attention part `part` with this layer's attention dropout, initializers and quantization. */
  protected attentionSpec(part: string, extra: { causal?: boolean } = {}): PartSpec {
    const o = this.opts;
    return {
      type: 'multi-head-attention',
      numHeads: o.numHeads,
      dropout: o.attentionDropout,
      kernelInitializer: o.kernelInitializer,
      ...(o.residualInitializer ? { outputInitializer: o.residualInitializer } : {}),
      ...subQuantization(o.quantization, part),
      ...extra,
    };
  }

  /** A layer norm part with this layer's ε. */
  protected normSpec(): PartSpec {
    return { type: 'layer-norm', epsilon: this.opts.normEpsilon };
  }

  /** A sub-layer named `<layer>/<part>`. */
  protected part(part: string, spec: PartSpec): Layer;
  protected part<T extends Layer>(part: string, spec: PartSpec, type: LayerClass<T>): T;
  protected part(part: string, spec: PartSpec, type?: LayerClass<Layer>): Layer {
    return type ? createPart(this.ctx, this.name, part, spec, type) : createPart(this.ctx, this.name, part, spec);
  }

  /** The attention parts and the norms, built before the feed-forward network (their order fixes the initial weights). */
  protected abstract sublayerParts(): Layer[];
  /** Every part, in the order the layer's parameters are listed. */
  protected abstract parts(): Layer[];

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, d_model]', [1]);
    const ff2 = { type: 'dense', units: inputShape[2]!, kernelInitializer: this.opts.residualInitializer ?? this.opts.kernelInitializer };
    this.ff2 = this.part('ff2', quantizedDenseSpec(ff2, this.opts.quantization, 'ff2'));
    for (const l of [...this.sublayerParts(), this.drop]) l.build(inputShape, rng);
    this.ff2.build(this.ff1.build(inputShape, rng), rng);
    return inputShape;
  }

  /** `f` as a sub-layer: with dropout, the residual connection and layer norm `norm` (pre- or post-norm). */
  protected residual(input: tf.Tensor, f: (y: tf.Tensor) => tf.Tensor, norm: Layer, ctx: ForwardContext): tf.Tensor {
    return this.opts.preNorm ? tf.add(input, this.drop.apply(f(norm.apply(input, ctx)), ctx)) : norm.apply(tf.add(input, this.drop.apply(f(input), ctx)), ctx);
  }

  /** The position-wise feed-forward network (eq. 2). */
  protected feedForward(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return this.ff2.apply(this.ff1.apply(x, ctx), ctx);
  }

  override parameters(): Parameter[] {
    return this.parts().flatMap((l) => l.parameters());
  }

  /** The parts' buffers (a quantized layer's int8 weights and scales), in the order of {@link parts}. */
  buffers(): Parameter[] {
    return this.parts().flatMap((l) => l.buffers?.() ?? []);
  }

  override dispose(): void {
    for (const l of this.parts()) l.dispose();
  }
}

const schema = transformerLayerOptions.extend({ causal: z.boolean().default(false) });

/**
 * One Transformer encoder layer (Vaswani et al. 2017, §3.1): self-attention and a position-wise feed-forward
 * network, each wrapped in a residual connection, dropout and layer norm. Self-attention ignores padded positions
 * given by `ctx.mask`.
 */
export class TransformerEncoder extends TransformerBlock {
  private readonly attention: Layer;
  private readonly norm1: Layer;
  private readonly norm2: Layer;

  constructor(opts: z.output<typeof schema>, ctx: PluginContext) {
    super(opts.name ?? 'transformer-encoder', opts, ctx);
    this.attention = this.part('attention', this.attentionSpec('attention', { causal: opts.causal }));
    this.norm1 = this.part('norm1', this.normSpec());
    this.norm2 = this.part('norm2', this.normSpec());
  }

  protected sublayerParts(): Layer[] {
    return [this.attention, this.norm1, this.norm2];
  }

  protected parts(): Layer[] {
    return [this.attention, this.norm1, this.ff1, ...(this.ff2 ? [this.ff2] : []), this.norm2];
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const y = this.residual(x, (v) => this.attention.apply(v, ctx), this.norm1, ctx);
    return this.residual(y, (v) => this.feedForward(v, ctx), this.norm2, ctx);
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
