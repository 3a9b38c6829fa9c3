import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin, LayerBase, layerOptions, pluginSpecSchema, type ForwardContext, type Initializer, type PluginContext,
  type Rng, type Shape,
} from '../../core';
import { dropoutMask } from './dropout';

const schema = layerOptions.extend({
  numHeads: z.number().int().positive(),
  /** Mask attention to later positions (decoder self-attention, GPT). */
  causal: z.boolean().default(false),
  /** Dropout on the attention weights (Vaswani et al. 2017 apply it after the softmax). */
  dropout: z.number().min(0).lt(1).default(0),
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
});

/**
 * Multi-head self-attention (Vaswani et al. 2017, §3.2.2, eq. 1):
 *   Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V,  head_i = Attention(X W_i^Q, X W_i^K, X W_i^V),
 *   MultiHead(X) = Concat(head_1..h) W^O,  d_k = d_model / h.
 * Q, K and V come from one [d, 3d] projection; the causal mask adds −∞ (−1e9) above the diagonal.
 */
export class MultiHeadAttention extends LayerBase {
  private qkv!: tf.Variable;
  private qkvBias!: tf.Variable;
  private out!: tf.Variable;
  private outBias!: tf.Variable;
  private readonly init: Initializer;
  private readonly zeros: Initializer;

  constructor(
    private readonly opts: z.output<typeof schema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'multi-head-attention');
    this.init = ctx.registry.create('initializer', opts.kernelInitializer, `${ctx.path}.kernelInitializer`);
    this.zeros = ctx.registry.create('initializer', 'zeros');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, d_model]');
    const d = inputShape[2]!;
    if (d % this.opts.numHeads !== 0) throw this.shapeError(`d_model divisible by numHeads = ${this.opts.numHeads}`, inputShape);
    this.qkv = this.addWeight('qkv_kernel', [d, 3 * d], this.init, rng, 'kernel');
    this.qkvBias = this.addWeight('qkv_bias', [3 * d], this.zeros, rng, 'bias');
    this.out = this.addWeight('out_kernel', [d, d], this.init, rng, 'kernel');
    this.outBias = this.addWeight('out_bias', [d], this.zeros, rng, 'bias');
    return inputShape;
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const [b, t, d] = x.shape as [number, number, number];
    const h = this.opts.numHeads;
    const dk = d / h;
    const proj = tf.fused.matMul({ a: tf.reshape(x, [b * t, d]) as tf.Tensor2D, b: this.qkv as tf.Tensor2D, bias: this.qkvBias });
    // [b·t, 3d] -> [3, b, h, t, dk]
    const heads = tf.transpose(tf.reshape(proj, [b, t, 3, h, dk]), [2, 0, 3, 1, 4]);
    const [q, k, v] = tf.unstack(heads, 0) as [tf.Tensor, tf.Tensor, tf.Tensor];
    let scores = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(dk)); // [b, h, t, t]
    if (this.opts.causal) scores = tf.add(scores, causalMask(t));
    let weights = tf.softmax(scores);
    if (ctx.training && this.opts.dropout > 0) weights = dropoutMask(weights, this.opts.dropout, ctx.rng.nextSeed(), weights.shape);
    const context = tf.reshape(tf.transpose(tf.matMul(weights, v), [0, 2, 1, 3]), [b * t, d]);
    return tf.reshape(tf.fused.matMul({ a: context as tf.Tensor2D, b: this.out as tf.Tensor2D, bias: this.outBias }), [b, t, d]);
  }
}

/** [t, t] additive mask: 0 on and below the diagonal, −1e9 above (position i may attend to j ≤ i). */
export function causalMask(t: number): tf.Tensor2D {
  return tf.tidy(() => tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([t, t]), -1, 0)), -1e9) as tf.Tensor2D);
}

export default definePlugin({
  kind: 'layer',
  name: 'multi-head-attention',
  aliases: ['mha'],
  description: 'multi-head scaled dot-product self-attention (Vaswani et al. 2017, eq. 1 and §3.2.2)',
  schema,
  examples: [
    { options: { numHeads: 2 }, inputShape: [2, 3, 4] },
    { options: { numHeads: 1, causal: true }, inputShape: [1, 4, 3] },
  ],
  create: (opts, ctx) => new MultiHeadAttention(opts, ctx),
});
