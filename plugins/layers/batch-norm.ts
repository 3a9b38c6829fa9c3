import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, layerOptions, type ForwardContext, type Parameter, type PluginContext, type Rng, type Shape } from '../../core';

const schema = layerOptions.extend({
  /** Weight of the old value in the running averages (Keras's convention: 0.99). */
  momentum: z.number().min(0).lt(1).default(0.99),
  epsilon: z.number().positive().default(1e-3),
});

/**
 * Batch normalisation (Ioffe & Szegedy 2015, Algorithm 1) over every axis but the last (channels): in training,
 * y = γ (x − μ_B) / √(σ²_B + ε) + β with the batch's statistics, which also update running averages; at inference
 * the running averages replace μ_B and σ²_B (Algorithm 2). The running statistics are buffers: saved, not trained.
 */
export class BatchNorm extends LayerBase {
  private gamma!: tf.Variable;
  private beta!: tf.Variable;
  private movingMean!: tf.Variable;
  private movingVar!: tf.Variable;
  private readonly stats: Parameter[] = [];

  constructor(
    private readonly opts: z.output<typeof schema>,
    private readonly ctx: PluginContext,
  ) {
    super(opts.name ?? 'batch-norm');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    const c = inputShape.at(-1);
    if (inputShape.length < 2 || !c) throw this.shapeError('[batch, ..., channels]', inputShape);
    const ones = this.ctx.create('initializer', 'ones');
    const zeros = this.ctx.create('initializer', 'zeros');
    this.gamma = this.addWeight('gamma', [c], ones, rng, 'norm');
    this.beta = this.addWeight('beta', [c], zeros, rng, 'norm');
    // In tidy: the initial zeros and ones are released (the variables share their data).
    this.movingMean = tf.tidy(() => tf.variable(tf.zeros([c]), false));
    this.movingVar = tf.tidy(() => tf.variable(tf.ones([c]), false));
    this.stats.push(
      { name: `${this.name}/moving_mean`, variable: this.movingMean, role: 'norm', trainable: false },
      { name: `${this.name}/moving_variance`, variable: this.movingVar, role: 'norm', trainable: false },
    );
    return inputShape;
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const axes = x.shape.slice(0, -1).map((_, i) => i);
    if (!ctx.training) return tf.batchNorm(x, this.movingMean, this.movingVar, this.beta, this.gamma, this.opts.epsilon);
    const { mean, variance } = tf.moments(x, axes);
    const m = this.opts.momentum;
    // The running variance averages the unbiased batch variance, m/(m−1)·σ²_B: Ioffe & Szegedy's Algorithm 2, step 10,
    // and PyTorch's running_var (Keras 3 averages the biased σ²_B; tf.keras 2's fused path the unbiased one). With
    // Keras's momentum convention (the old value's weight, 0.99). They are copies, outside the gradient.
    const n = x.size / x.shape.at(-1)!;
    tf.tidy(() => {
      this.movingMean.assign(tf.add(tf.mul(this.movingMean, m), tf.mul(mean, 1 - m)));
      this.movingVar.assign(tf.add(tf.mul(this.movingVar, m), tf.mul(variance, (1 - m) * (n > 1 ? n / (n - 1) : 1))));
    });
    return tf.batchNorm(x, mean, variance, this.beta, this.gamma, this.opts.epsilon);
  }

  buffers(): Parameter[] {
    return this.stats;
  }

  override dispose(): void {
    for (const s of this.stats) s.variable.dispose();
    this.stats.length = 0;
    super.dispose();
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'batch-norm',
  aliases: ['batchnorm'],
  description: 'batch normalisation with running statistics for inference (Ioffe & Szegedy 2015)',
  schema,
  examples: [{ inputShape: [4, 3] }, { options: { momentum: 0.9 }, inputShape: [2, 3, 3, 2] }],
  properties: ['normalises each channel in training, tracks running statistics, and uses them at inference'],
  create: (opts, ctx) => new BatchNorm(opts, ctx),
});
