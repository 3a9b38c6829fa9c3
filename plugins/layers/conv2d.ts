import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  conv2d,
  conv2dMaxPool,
  definePlugin,
  FUSED_KERNELS,
  hasKernel,
  LayerBase,
  layerOptions,
  pluginSpecSchema,
  type Activation,
  type ForwardContext,
  type Initializer,
  type Layer,
  type Regularizer,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';

const pair = z.union([z.number().int().positive(), z.tuple([z.number().int().positive(), z.number().int().positive()])]);
const schema = layerOptions.extend({
  filters: z.number().int().positive(),
  kernelSize: pair,
  strides: pair.default(1),
  padding: z.enum(['valid', 'same']).default('valid'),
  activation: pluginSpecSchema.default('linear'),
  useBias: z.boolean().default(true),
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
  biasInitializer: pluginSpecSchema.default('zeros'),
  /** A penalty on the kernel (l1, l2, l1l2) that the trainer adds to the loss. */
  kernelRegularizer: pluginSpecSchema.optional(),
});

const asPair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

/** Output length of a convolution or pooling window along one axis (TensorFlow's 'valid'/'same' rule). */
export function convOutLength(n: number, k: number, s: number, padding: 'valid' | 'same'): number {
  return padding === 'same' ? Math.ceil(n / s) : Math.floor((n - k) / s) + 1;
}

/**
 * 2-D convolution over NHWC images (LeCun et al. 1989): y = f(x ⋆ W + b), W of shape [kh, kw, inChannels, filters].
 * relu and linear are fused into the convolution kernel, in training too (core/ops's conv2d and its gradient).
 */
export class Conv2D extends LayerBase {
  private readonly activation: Activation;
  private readonly kernelInit: Initializer;
  private readonly biasInit: Initializer;
  private readonly regularizer?: Regularizer;
  private kernel!: tf.Variable;
  private bias: tf.Variable | null = null;

  constructor(
    private readonly opts: z.output<typeof schema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'conv2d');
    this.activation = ctx.create('activation', opts.activation, 'activation');
    this.kernelInit = ctx.create('initializer', opts.kernelInitializer, 'kernelInitializer');
    this.biasInit = ctx.create('initializer', opts.biasInitializer, 'biasInitializer');
    if (opts.kernelRegularizer) this.regularizer = ctx.create('regularizer', opts.kernelRegularizer, 'kernelRegularizer');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 4, '[batch, height, width, channels]');
    const [, h, w, c] = inputShape as [null, number, number, number];
    const [kh, kw] = asPair(this.opts.kernelSize);
    const [sh, sw] = asPair(this.opts.strides);
    const oh = convOutLength(h, kh, sh, this.opts.padding);
    const ow = convOutLength(w, kw, sw, this.opts.padding);
    if (oh <= 0 || ow <= 0) throw this.shapeError(`images of at least ${kh}x${kw} for 'valid' padding`, inputShape);
    this.kernel = this.addWeight('kernel', [kh, kw, c, this.opts.filters], this.kernelInit, rng, 'kernel', this.regularizer);
    if (this.opts.useBias) this.bias = this.addWeight('bias', [this.opts.filters], this.biasInit, rng, 'bias');
    return [null, oh, ow, this.opts.filters];
  }

  /**
   * With a max pooling whose windows tile this layer's output next: one conv2dMaxPool op (core/ops), which never
   * writes the convolution's output where the backend has its kernel. Relu or linear, with a bias.
   */
  applyWithNext(next: Layer, x: tf.Tensor, _ctx: ForwardContext): tf.Tensor | null {
    const act = this.activation.spec.type;
    const pool = next.maxPoolWindow?.() ?? null;
    if (!pool || !this.bias || (act !== 'relu' && act !== 'linear') || !hasKernel(FUSED_KERNELS.conv2dMaxPool) || x.rank !== 4) return null;
    const [, h, w] = x.shape as [number, number, number, number];
    const [kh, kw] = asPair(this.opts.kernelSize);
    const [sh, sw] = asPair(this.opts.strides);
    const oh = convOutLength(h, kh, sh, this.opts.padding),
      ow = convOutLength(w, kw, sw, this.opts.padding);
    if (oh < pool[0] || ow < pool[1]) return null; // no whole window: the layers one by one say what is wrong
    return conv2dMaxPool(x as tf.Tensor4D, this.kernel as tf.Tensor4D, [sh, sw], this.opts.padding, this.bias as tf.Tensor1D, act, pool);
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const act = this.activation.spec.type;
    const strides = asPair(this.opts.strides);
    if (act === 'relu' || act === 'linear')
      return conv2d(x as tf.Tensor4D, this.kernel as tf.Tensor4D, strides, this.opts.padding, this.bias as tf.Tensor1D | null, act);
    const y = tf.conv2d(x as tf.Tensor4D, this.kernel as tf.Tensor4D, strides, this.opts.padding);
    return this.activation.apply(this.bias ? tf.add(y, this.bias) : y);
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'conv2d',
  description: '2-D convolution over NHWC images, y = f(x * W + b)',
  schema,
  examples: [
    { options: { filters: 2, kernelSize: 3 }, inputShape: [2, 5, 5, 1] },
    { options: { filters: 3, kernelSize: [2, 3], strides: 2, padding: 'same', activation: 'relu' }, inputShape: [1, 6, 7, 2] },
  ],
  create: (opts, ctx) => new Conv2D(opts, ctx),
});
