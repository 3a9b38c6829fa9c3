import type * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, layerNorm, layerOptions, type ForwardContext, type PluginContext, type Rng, type Shape } from '../../core';

const schema = layerOptions.extend({ epsilon: z.number().positive().default(1e-5) });

/**
 * Layer normalisation (Ba, Kiros & Hinton 2016, eq. 4): over the last axis, y = γ · (x − μ) / √(σ² + ε) + β,
 * with γ initialised to ones and β to zeros. Independent of the batch, so training and inference agree.
 */
export class LayerNorm extends LayerBase {
  private gamma!: tf.Variable;
  private beta!: tf.Variable;
  constructor(
    private readonly epsilon: number,
    name: string,
    private readonly ctx: PluginContext,
  ) {
    super(name);
  }
  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    const d = inputShape.at(-1);
    if (inputShape.length < 2 || !d) throw this.shapeError('[batch, ..., features]', inputShape);
    this.gamma = this.addWeight('gamma', [d], this.ctx.create('initializer', 'ones'), rng, 'norm');
    this.beta = this.addWeight('beta', [d], this.ctx.create('initializer', 'zeros'), rng, 'norm');
    return inputShape;
  }
  /** The fused kernel where the backend has one, else composed; the gradient is written out (core/ops/layer-norm.ts). */
  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    return layerNorm(x, this.gamma as tf.Tensor1D, this.beta as tf.Tensor1D, this.epsilon);
  }

  /** The layer as a fused kernel takes it (FUSED_KERNELS.decoderStep). */
  fusedForm(): { gamma: tf.Tensor; beta: tf.Tensor; epsilon: number } {
    return { gamma: this.gamma, beta: this.beta, epsilon: this.epsilon };
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'layer-norm',
  aliases: ['layernorm'],
  description: 'layer normalisation over the last axis (Ba et al. 2016, eq. 4)',
  schema,
  examples: [{ inputShape: [2, 6] }, { inputShape: [2, 3, 5] }],
  create: (opts, ctx) => new LayerNorm(opts.epsilon, opts.name ?? 'layer-norm', ctx),
});
