import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, FUSED_KERNELS, hasKernel, pluginSpecSchema, type ForwardContext, type Initializer, type PluginContext, type Rng } from '../../core';
import { dropoutMask } from './dropout';
import { RecurrentLayer, recurrentOptions } from './recurrent';

const schema = recurrentOptions.extend({
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
  recurrentInitializer: pluginSpecSchema.default('glorot-uniform'),
  /** Jozefowicz et al. (2015): a forget-gate bias of 1 helps gradients flow early in training. */
  unitForgetBias: z.boolean().default(true),
  /**
   * Variational dropout on the recurrent connections (Gal & Ghahramani 2016, §4): one mask on h_{t−1} per sequence
   * (per batch), shared by every time step, z_t = x_t W + (h_{t−1} ⊙ m) U + b. Inputs and outputs are dropped by
   * `variational-dropout` layers around the LSTM; naive dropout (Zaremba et al. 2014) uses plain `dropout` layers
   * there and no recurrent dropout.
   */
  recurrentDropout: z.number().min(0).lt(1).default(0),
});

/**
 * Long short-term memory (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), gates in
 * Keras's order i, f, g, o:
 *   z_t = x_t W + h_{t-1} U + b,  i = σ(z_i), f = σ(z_f), g = tanh(z_g), o = σ(z_o),
 *   c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t).
 * The input projection x W is one matrix product over all time steps; only h U runs per step.
 */
export class LSTM extends RecurrentLayer<'h' | 'c', z.output<typeof schema>> {
  private bias!: tf.Variable;

  constructor(opts: z.output<typeof schema>, ctx: PluginContext) {
    super(opts, ctx, 'lstm', 4);
  }

  protected buildBiases(rng: Rng): void {
    const u = this.opts.units;
    const forget = this.opts.unitForgetBias;
    // b_f = 1 with unitForgetBias (Jozefowicz et al. 2015), every other gate's bias 0.
    const init = (shape: number[]) => tf.tensor1d(Array.from({ length: shape[0]! }, (_, i) => (forget && i >= u && i < 2 * u ? 1 : 0)));
    this.bias = this.addWeight('bias', [4 * u], { init } as unknown as Initializer, rng, 'bias');
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const [batch, time, features] = x.shape as [number, number, number];
    const u = this.opts.units;
    const rd = ctx.training ? this.opts.recurrentDropout : 0;
    // The recurrent mask, scaled by 1/(1 − rate) (inverted dropout); all ones without recurrent dropout.
    const mask = rd > 0 ? dropoutMask(tf.ones([batch, u]), rd, ctx.rng.nextSeed(), [batch, u]) : null;
    this.expectCarriedBatch(x);
    const h0 = this.state.value?.h ?? tf.zeros([batch, u]);
    const c0 = this.state.value?.c ?? tf.zeros([batch, u]);
    const seq = this.opts.returnSequences;
    // Backpropagation through time written out (rather than taped op by op): the recurrent-weight gradient is one
    // product over all steps, dU = Σ_t h_{t-1}ᵀ dz_t = H_prevᵀ · dZ, instead of T products and T additions.
    // The cell's fused kernels where the backend has them (the native CPU backend): the same values, bit for bit.
    const fused = x.dtype === 'float32' && hasKernel(FUSED_KERNELS.lstmCell) && hasKernel(FUSED_KERNELS.lstmCellGrad);
    const run = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [xs, kernel, recurrent, bias, hInit, cInit, m] = args as tf.Tensor[];
      const save = args[7] as tf.GradSaveFunc;
      const masked = (h: tf.Tensor) => (mask ? tf.mul(h, m!) : h);
      const xw = tf.reshape(tf.add(tf.matMul(tf.reshape(xs!, [batch * time, features]), kernel!), bias!), [batch, time, 4 * u]);
      let h = hInit!;
      let c = cInit!;
      const hs = [h];
      const cs = [c];
      const gates: tf.Tensor[] = [];
      if (fused) {
        // The cell's elementwise ops in one kernel per step (same roundings): reads step t of xw in place.
        for (let t = 0; t < time; t++) {
          const hu = tf.matMul(masked(h), recurrent!);
          const [hn, cn, gt] = tf.engine().runKernel(FUSED_KERNELS.lstmCell, { zx: xw, hu, c }, { t }) as tf.Tensor[];
          [h, c] = [hn!, cn!];
          hs.push(h);
          cs.push(c);
          gates.push(gt!);
        }
      } else {
        for (const zx of tf.unstack(xw, 1)) {
          const z = tf.add(zx, tf.matMul(masked(h), recurrent!));
          const [zi, zf, zg, zo] = tf.split(z, 4, 1) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
          const [i, f, g, o] = [tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)];
          c = tf.add(tf.mul(f, c), tf.mul(i, g));
          h = tf.mul(o, tf.tanh(c));
          hs.push(h);
          cs.push(c);
          gates.push(tf.concat([i, f, g, o], 1));
        }
      }
      save([xs!, kernel!, recurrent!, tf.stack(hs), tf.stack(cs), tf.stack(gates), m!]);
      const value = seq ? tf.stack(hs.slice(1), 1) : h;
      // Carried now, when the old state (hs[0], cs[0]) is no longer read: customGrad disposes the forward pass's
      // intermediates when it returns.
      if (this.opts.stateful) this.state.carry({ h, c });
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sx, sk, sr, hAll, cAll, gAll, sm] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
          const maskedG = (h: tf.Tensor) => (mask ? tf.mul(h, sm) : h);
          let dh: tf.Tensor = tf.zeros([batch, u]);
          let dc: tf.Tensor = tf.zeros([batch, u]);
          const dzs: tf.Tensor[] = new Array(time);
          const recurrentT = tf.transpose(sr); // one transpose, then every step's dh = dz · Uᵀ is a plain product
          const dZ = fused ? fusedBackward() : composedBackward();
          function fusedBackward() {
            for (let t = time - 1; t >= 0; t--) {
              const dyAt = seq ? 'sequence' : t === time - 1 ? 'last' : 'none';
              const inputs = { dh, gates: gAll, cs: cAll, dc, ...(dyAt === 'none' ? {} : { dy }) };
              const [dz, dcOut] = tf.engine().runKernel(FUSED_KERNELS.lstmCellGrad, inputs, { t, dyAt }) as tf.Tensor[];
              dzs[t] = dz!;
              dc = dcOut!;
              dh = maskedG(tf.matMul(dz!, recurrentT));
            }
            return tf.reshape(tf.stack(dzs, 1), [batch * time, 4 * u]);
          }
          function composedBackward() {
            const cList = tf.unstack(cAll);
            const gList = tf.unstack(gAll);
            const dys = seq ? tf.unstack(dy, 1) : null;
            for (let t = time - 1; t >= 0; t--) {
              const dht = dys ? tf.add(dys[t]!, dh) : t === time - 1 ? tf.add(dy, dh) : dh;
              const [i, f, g, o] = tf.split(gList[t]!, 4, 1) as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
              const tc = tf.tanh(cList[t + 1]!);
              const dct = tf.add(dc, tf.mul(tf.mul(dht, o), tf.sub(1, tf.square(tc))));
              const di = tf.mul(tf.mul(dct, g), tf.mul(i, tf.sub(1, i)));
              const df = tf.mul(tf.mul(dct, cList[t]!), tf.mul(f, tf.sub(1, f)));
              const dg = tf.mul(tf.mul(dct, i), tf.sub(1, tf.square(g)));
              const dO = tf.mul(tf.mul(dht, tc), tf.mul(o, tf.sub(1, o)));
              const dz = tf.concat([di, df, dg, dO], 1);
              dzs[t] = dz;
              dc = tf.mul(dct, f);
              dh = maskedG(tf.matMul(dz, recurrentT));
            }
            return tf.reshape(tf.stack(dzs, 1), [batch * time, 4 * u]);
          }
          const hStack = tf.transpose(tf.slice(hAll, [0, 0, 0], [time, batch, u]), [1, 0, 2]); // h_0..h_{T−1}: [batch, time, u]
          const hPrev = tf.reshape(mask ? tf.mul(hStack, tf.expandDims(sm, 1)) : hStack, [batch * time, u]);
          const xFlat = tf.reshape(sx, [batch * time, features]);
          return [
            tf.reshape(tf.matMul(dZ, sk, false, true), [batch, time, features]),
            tf.matMul(xFlat, dZ, true, false),
            tf.matMul(hPrev, dZ, true, false),
            tf.sum(dZ, 0),
            dh,
            dc,
            tf.zerosLike(sm),
          ];
        },
      };
    });
    return run(x, this.kernel, this.recurrent, this.bias, h0, c0, mask ?? tf.ones([batch, u]));
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
    { options: { units: 3, recurrentDropout: 0.4 }, inputShape: [2, 3, 2] },
  ],
  properties: [
    'stateful: two half sequences give the output of the whole; the trainer resets state at every epoch and evaluation',
    'recurrent dropout is one mask on h shared by every time step (Gal & Ghahramani 2016)',
  ],
  create: (opts, ctx) => new LSTM(opts, ctx),
});
