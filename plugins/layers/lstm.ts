import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin, LayerBase, layerOptions, pluginSpecSchema, type ForwardContext, type Initializer, type PluginContext,
  type Rng, type Shape,
} from '../../core';

const schema = layerOptions.extend({
  units: z.number().int().positive(),
  /** Output every time step ([batch, time, units]) or only the last ([batch, units]). */
  returnSequences: z.boolean().default(true),
  /**
   * Carry the final state of one batch into the next (truncated backpropagation through time, as language models
   * train); `resetStates()` zeroes it, e.g. at the start of an epoch.
   */
  stateful: z.boolean().default(false),
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
  recurrentInitializer: pluginSpecSchema.default('glorot-uniform'),
  /** Jozefowicz et al. (2015): a forget-gate bias of 1 helps gradients flow early in training. */
  unitForgetBias: z.boolean().default(true),
});

/**
 * Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), gates in
 * Keras's order i, f, g, o:
 *   z_t = x_t W + h_{t-1} U + b,  i = σ(z_i), f = σ(z_f), g = tanh(z_g), o = σ(z_o),
 *   c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t).
 * The input projection x W is one matrix product over all time steps; only h U runs per step.
 */
export class LSTM extends LayerBase {
  private kernel!: tf.Variable;
  private recurrent!: tf.Variable;
  private bias!: tf.Variable;
  private readonly kernelInit: Initializer;
  private readonly recurrentInit: Initializer;
  private state: { h: tf.Tensor; c: tf.Tensor } | null = null;

  constructor(
    private readonly opts: z.output<typeof schema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'lstm');
    this.kernelInit = ctx.registry.create('initializer', opts.kernelInitializer, `${ctx.path}.kernelInitializer`);
    this.recurrentInit = ctx.registry.create('initializer', opts.recurrentInitializer, `${ctx.path}.recurrentInitializer`);
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, features]');
    const [, time, features] = inputShape as [null, number, number];
    const u = this.opts.units;
    this.kernel = this.addWeight('kernel', [features, 4 * u], this.kernelInit, rng, 'kernel');
    this.recurrent = this.addWeight('recurrent_kernel', [u, 4 * u], this.recurrentInit, rng, 'kernel');
    const forget = this.opts.unitForgetBias;
    this.bias = this.addWeight('bias', [4 * u], { init: (shape: number[]) => tf.tensor1d(Array.from({ length: shape[0]! }, (_, i) => (forget && i >= u && i < 2 * u ? 1 : 0))) } as unknown as Initializer, rng, 'bias');
    return this.opts.returnSequences ? [null, time, u] : [null, u];
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const [batch, time, features] = x.shape as [number, number, number];
    const u = this.opts.units;
    const xw = tf.reshape(tf.add(tf.matMul(tf.reshape(x, [batch * time, features]), this.kernel), this.bias), [batch, time, 4 * u]);
    const steps = tf.unstack(xw, 1);
    let h = this.state?.h ?? tf.zeros([batch, u]);
    let c = this.state?.c ?? tf.zeros([batch, u]);
    if (this.state && this.state.h.shape[0] !== batch) {
      throw this.shapeError(`a batch of ${this.state.h.shape[0]} (stateful layers keep their batch size)`, [batch, time, features]);
    }
    const outputs: tf.Tensor[] = [];
    for (const zx of steps) {
      const z = tf.add(zx, tf.matMul(h, this.recurrent));
      const [zi, zf, zg, zo] = tf.split(z, 4, 1) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
      c = tf.add(tf.mul(tf.sigmoid(zf), c), tf.mul(tf.sigmoid(zi), tf.tanh(zg)));
      h = tf.mul(tf.sigmoid(zo), tf.tanh(c));
      if (this.opts.returnSequences) outputs.push(h);
    }
    if (this.opts.stateful) this.keepState(h, c);
    return this.opts.returnSequences ? tf.stack(outputs, 1) : h;
  }

  /** Stores the final state for the next batch, detached from this batch's gradient tape. */
  private keepState(h: tf.Tensor, c: tf.Tensor): void {
    const old = this.state;
    this.state = { h: tf.keep(tf.clone(h)), c: tf.keep(tf.clone(c)) };
    if (old) tf.dispose([old.h, old.c]);
  }

  /** Zeroes the carried state (stateful layers); the next batch starts from h = c = 0. */
  resetStates(): void {
    if (this.state) tf.dispose([this.state.h, this.state.c]);
    this.state = null;
  }

  override dispose(): void {
    this.resetStates();
    super.dispose();
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'lstm',
  description: 'LSTM with forget gate (Hochreiter & Schmidhuber 1997; Gers et al. 2000), Keras gate order',
  schema,
  examples: [
    { options: { units: 3 }, inputShape: [2, 4, 5] },
    { options: { units: 2, returnSequences: false }, inputShape: [3, 3, 2] },
  ],
  create: (opts, ctx) => new LSTM(opts, ctx),
});
