import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, layerOptions, type ForwardContext, type PluginContext, type Rng, type Shape } from '../../core';

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
    this.gamma = this.addWeight('gamma', [d], this.ctx.registry.create('initializer', 'ones'), rng, 'norm');
    this.beta = this.addWeight('beta', [d], this.ctx.registry.create('initializer', 'zeros'), rng, 'norm');
    return inputShape;
  }
  /**
   * The gradient is written out (x̂ = (x − μ)·r with r = 1/√(σ² + ε)): dβ = Σ dy, dγ = Σ dy·x̂ over all but the last
   * axis, and dx = r · (g − mean(g) − x̂ · mean(g·x̂)) with g = dy·γ and means over the last axis; about a third of
   * the kernels the taped moments, division and square root take.
   */
  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const eps = this.epsilon;
    const norm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [xs, gamma, beta] = args as tf.Tensor[];
      const save = args[3] as tf.GradSaveFunc;
      const centred = tf.sub(xs!, tf.mean(xs!, -1, true));
      const r = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), eps));
      const xhat = tf.mul(centred, r);
      save([xhat, r, gamma!]);
      return {
        value: tf.add(tf.mul(xhat, gamma!), beta!),
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sx, sr, sg] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
          const d = sg.shape[0]!;
          const g = tf.mul(dy, sg);
          const dx = tf.mul(sr, tf.sub(tf.sub(g, tf.mean(g, -1, true)), tf.mul(sx, tf.mean(tf.mul(g, sx), -1, true))));
          const rows = (t: tf.Tensor) => tf.reshape(t, [-1, d]);
          return [dx, tf.sum(rows(tf.mul(dy, sx)), 0), tf.sum(rows(dy), 0)];
        },
      };
    });
    return norm(x, this.gamma, this.beta);
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
