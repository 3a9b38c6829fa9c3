import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin,
  LayerBase,
  linear,
  layerOptions,
  pluginSpecSchema,
  type Activation,
  type ForwardContext,
  type Initializer,
  type Regularizer,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';

const schema = layerOptions.extend({
  units: z.number().int().positive(),
  activation: pluginSpecSchema.default('linear'),
  useBias: z.boolean().default(true),
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
  biasInitializer: pluginSpecSchema.default('zeros'),
  /** A penalty on the kernel (l1, l2, l1l2) that the trainer adds to the loss. */
  kernelRegularizer: pluginSpecSchema.optional(),
});

/**
 * Fully connected layer, y = f(x W + b), applied to the last axis (so it also maps every position of a sequence).
 * W has shape [in, units]. relu and linear are fused into the matmul kernel.
 */
export class Dense extends LayerBase {
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
    super(opts.name ?? 'dense');
    this.activation = ctx.create('activation', opts.activation, 'activation');
    this.kernelInit = ctx.create('initializer', opts.kernelInitializer, 'kernelInitializer');
    this.biasInit = ctx.create('initializer', opts.biasInitializer, 'biasInitializer');
    if (opts.kernelRegularizer) this.regularizer = ctx.create('regularizer', opts.kernelRegularizer, 'kernelRegularizer');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    if (inputShape.length < 2 || inputShape.at(-1) === null) this.expectRank(inputShape, 2, '[batch, ..., features]');
    const inFeatures = inputShape.at(-1)!;
    this.kernel = this.addWeight('kernel', [inFeatures, this.opts.units], this.kernelInit, rng, 'kernel', this.regularizer);
    if (this.opts.useBias) this.bias = this.addWeight('bias', [this.opts.units], this.biasInit, rng, 'bias');
    return [...inputShape.slice(0, -1), this.opts.units];
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const lead = x.shape.slice(0, -1);
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, x.shape.at(-1)!]);
    const act = this.activation.spec.type;
    let y: tf.Tensor;
    if (act === 'relu' || act === 'linear') {
      y = linear(x2, this.kernel as tf.Tensor2D, this.bias as tf.Tensor1D | null, act);
    } else {
      y = this.activation.apply(this.bias ? tf.add(tf.matMul(x2, this.kernel), this.bias) : tf.matMul(x2, this.kernel));
    }
    return x.rank === 2 ? y : tf.reshape(y, [...lead, this.opts.units]);
  }

  /**
   * The layer as a fused kernel takes it (FUSED_KERNELS.decoderStep): its weights and an activation that kernel
   * computes (linear, relu, or GELU's tanh form), or null for any other activation.
   */
  fusedForm(): { kernel: tf.Tensor; bias: tf.Tensor | null; activation: 'linear' | 'relu' | 'gelu-tanh' } | null {
    const spec = this.activation.spec;
    const activation = spec.type === 'relu' || spec.type === 'linear' ? spec.type : spec.type === 'gelu' && spec.approximate === 'tanh' ? 'gelu-tanh' : null;
    return activation ? { kernel: this.kernel, bias: this.bias, activation } : null;
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'dense',
  aliases: ['linear'],
  description: 'fully connected layer y = f(xW + b) on the last axis',
  schema,
  examples: [
    { options: { units: 3 }, inputShape: [2, 4] },
    { options: { units: 2, activation: 'relu' }, inputShape: [3, 5] },
    { options: { units: 2, activation: 'softmax', useBias: false }, inputShape: [2, 3, 4] },
  ],
  create: (opts, ctx) => new Dense(opts, ctx),
});
