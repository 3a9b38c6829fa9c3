import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, pluginSpecSchema, type ForwardContext, type Initializer, type PluginContext, type Rng } from '../../core';
import { RecurrentLayer, recurrentOptions } from './recurrent';

const schema = recurrentOptions.extend({
  /**
   * Apply the reset gate after the recurrent product, h̃ = tanh(xW + r ⊙ (hU + b_U)) (cuDNN's and Keras's default),
   * instead of the paper's h̃ = tanh(xW + (r ⊙ h)U + b).
   */
  resetAfter: z.boolean().default(false),
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
  recurrentInitializer: pluginSpecSchema.default('orthogonal'),
});

/**
 * Gated recurrent unit (Cho et al. 2014, eq. 5-8), gates in Keras's order z, r, h:
 *   z = σ(x W_z + h U_z + b_z),  r = σ(x W_r + h U_r + b_r),
 *   h̃ = tanh(x W_h + (r ⊙ h) U_h + b_h),  h_t = z ⊙ h_{t-1} + (1 − z) ⊙ h̃.
 * The input projection is one product over all time steps; autograd differentiates the unrolled steps.
 */
export class GRU extends RecurrentLayer<'h', z.output<typeof schema>> {
  private bias!: tf.Variable;
  private recurrentBias: tf.Variable | null = null;
  private readonly zeros: Initializer;

  constructor(opts: z.output<typeof schema>, ctx: PluginContext) {
    super(opts, ctx, 'gru', 3);
    this.zeros = ctx.create('initializer', 'zeros');
  }

  protected buildBiases(rng: Rng): void {
    const u = this.opts.units;
    this.bias = this.addWeight('bias', [3 * u], this.zeros, rng, 'bias');
    if (this.opts.resetAfter) this.recurrentBias = this.addWeight('recurrent_bias', [3 * u], this.zeros, rng, 'bias');
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const [batch, time, features] = x.shape as [number, number, number];
    const u = this.opts.units;
    this.expectCarriedBatch(x);
    const xw = tf.reshape(tf.add(tf.matMul(tf.reshape(x, [batch * time, features]), this.kernel), this.bias), [batch, time, 3 * u]);
    const [uzr, uh] = tf.split(this.recurrent, [2 * u, u], 1) as [tf.Tensor, tf.Tensor];
    let h: tf.Tensor = this.state.value?.h ?? tf.zeros([batch, u]);
    const outs: tf.Tensor[] = [];
    for (const xt of tf.unstack(xw, 1)) {
      const [xz, xr, xh] = tf.split(xt, 3, 1) as [tf.Tensor, tf.Tensor, tf.Tensor];
      let candidate: tf.Tensor;
      let zGate: tf.Tensor;
      if (this.recurrentBias) {
        const hu = tf.add(tf.matMul(h, this.recurrent), this.recurrentBias);
        const [hz, hr, hh] = tf.split(hu, 3, 1) as [tf.Tensor, tf.Tensor, tf.Tensor];
        zGate = tf.sigmoid(tf.add(xz, hz));
        const r = tf.sigmoid(tf.add(xr, hr));
        candidate = tf.tanh(tf.add(xh, tf.mul(r, hh)));
      } else {
        const [hz, hr] = tf.split(tf.matMul(h, uzr), 2, 1) as [tf.Tensor, tf.Tensor];
        zGate = tf.sigmoid(tf.add(xz, hz));
        const r = tf.sigmoid(tf.add(xr, hr));
        candidate = tf.tanh(tf.add(xh, tf.matMul(tf.mul(r, h), uh)));
      }
      h = tf.add(tf.mul(zGate, h), tf.mul(tf.sub(1, zGate), candidate));
      outs.push(h);
    }
    if (this.opts.stateful) this.state.carry({ h });
    return this.opts.returnSequences ? tf.stack(outs, 1) : h;
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'gru',
  description: 'gated recurrent unit (Cho et al. 2014, eq. 5-8), Keras gate order z, r, h',
  schema,
  examples: [
    { options: { units: 3 }, inputShape: [2, 4, 5] },
    { options: { units: 2, returnSequences: false, resetAfter: true }, inputShape: [3, 3, 2] },
  ],
  properties: ["matches a float64 loop over the paper's equations 5-8", 'stateful: two half sequences give the output of the whole'],
  create: (opts, ctx) => new GRU(opts, ctx),
});
