import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, hostFloats, LayerBase, layerOptions, uniformFloats, type ForwardContext, type Shape } from '../../core';

const schema = layerOptions.extend({ rate: z.number().min(0).lt(1) });

/**
 * Inverted dropout (Srivastava et al. 2014, with the 1/(1-p) scaling at training time): each element is kept with
 * probability 1 − rate and scaled by 1/(1 − rate), so the expected output equals the input; the identity at
 * inference. Masks come from the run's seeded Rng.
 */
export class Dropout extends LayerBase {
  constructor(
    private readonly rate: number,
    name: string,
  ) {
    super(name);
  }
  protected buildLayer(inputShape: Shape): Shape {
    return inputShape;
  }
  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    if (!ctx.training || this.rate === 0) return x;
    return dropoutMask(x, this.rate, ctx.rng.nextSeed(), x.shape);
  }
}

/**
 * x · mask / (1 − rate) with a Bernoulli(1 − rate) mask of `maskShape` (broadcast against x). The scaled mask is
 * drawn in one pass (uniformFloats) and applied with one multiply, instead of four tensor ops.
 */
export function dropoutMask(x: tf.Tensor, rate: number, seed: number, maskShape: number[]): tf.Tensor {
  const n = maskShape.reduce((a, b) => a * b, 1);
  const u = uniformFloats(seed, n, hostFloats(n)); // the backend's recycled memory where it has some (core/backend.ts)
  const scale = 1 / (1 - rate);
  for (let i = 0; i < u.length; i++) u[i] = u[i]! >= rate ? scale : 0;
  return tf.tidy(() => tf.mul(x, tf.tensor(u, maskShape, 'float32')));
}

export default definePlugin({
  kind: 'layer',
  name: 'dropout',
  description: 'inverted dropout: keep with probability 1-rate, scale by 1/(1-rate) (Srivastava et al. 2014)',
  schema,
  examples: [{ options: { rate: 0.3 }, inputShape: [3, 7] }],
  properties: ['inverted: the mean of the output equals the input within sampling error; identity at inference'],
  create: (opts) => new Dropout(opts.rate, opts.name ?? 'dropout'),
});
