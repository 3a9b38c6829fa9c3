import type * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, layerOptions, type ForwardContext, type Shape } from '../../core';
import { dropoutMask } from './dropout';

const schema = layerOptions.extend({ rate: z.number().min(0).lt(1) });

/**
 * Variational ("locked") dropout (Gal & Ghahramani 2016, §3): on [batch, time, features] one Bernoulli mask per
 * sequence and feature, shared across all time steps (where standard dropout draws a new mask at every step).
 * Inverted scaling 1/(1 − rate); identity at inference.
 */
export class VariationalDropout extends LayerBase {
  constructor(
    private readonly rate: number,
    name: string,
  ) {
    super(name);
  }
  protected buildLayer(inputShape: Shape): Shape {
    this.expectRank(inputShape, 3, '[batch, time, features]');
    return inputShape;
  }
  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    if (!ctx.training || this.rate === 0) return x;
    const [b, , f] = x.shape as [number, number, number];
    return dropoutMask(x, this.rate, ctx.rng.nextSeed(), [b, 1, f]);
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'variational-dropout',
  aliases: ['locked-dropout'],
  description: 'one dropout mask per sequence shared over time (Gal & Ghahramani 2016)',
  schema,
  examples: [{ options: { rate: 0.3 }, inputShape: [2, 4, 3] }],
  properties: [
    'one mask per sequence shared by all time steps, different masks for different sequences; unlike standard dropout, whose mask changes every step',
  ],
  create: (opts) => new VariationalDropout(opts.rate, opts.name ?? 'variational-dropout'),
});
