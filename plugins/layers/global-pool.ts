import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, layerOptions, type ForwardContext, type Shape } from '../../core';

const schema = layerOptions.extend({
  /** Mean or maximum over every axis between the batch and the last (time steps, or height and width). */
  op: z.enum(['avg', 'max']).default('avg'),
});

/**
 * Global pooling (Lin et al. 2014, "Network in Network", §3.2): [batch, ..., features] -> [batch, features].
 * On sequences ([batch, time, features]) it respects the padding mask in `ctx.mask`: the mean is over real positions
 * only and the maximum ignores padding, so padded and unpadded copies of a sequence pool to the same vector.
 */
export class GlobalPool extends LayerBase {
  constructor(private readonly opts: z.output<typeof schema>) {
    super(opts.name ?? `global-${opts.op}-pool`);
  }

  protected buildLayer(inputShape: Shape): Shape {
    if (inputShape.length < 3) throw this.shapeError('[batch, ..., features] with at least one axis to pool', inputShape);
    return [null, inputShape[inputShape.length - 1]!];
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const axes = Array.from({ length: x.rank - 2 }, (_, i) => i + 1);
    const mask = x.rank === 3 && ctx.mask ? tf.expandDims(tf.cast(ctx.mask, 'float32'), 2) : null; // [b, t, 1]
    if (this.opts.op === 'max') return tf.max(mask ? tf.add(x, tf.mul(tf.sub(1, mask), -1e9)) : x, axes);
    if (!mask) return tf.mean(x, axes);
    return tf.div(tf.sum(tf.mul(x, mask), 1), tf.maximum(tf.sum(mask, 1), 1));
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'global-pool',
  aliases: ['global-average-pool', 'global-pool1d', 'global-pool2d'],
  description: 'global average or max pooling over time or space, mask-aware on sequences (Lin et al. 2014)',
  schema,
  examples: [
    { options: { op: 'avg' }, inputShape: [2, 3, 4, 2] },
    { options: { op: 'max' }, inputShape: [2, 5, 3] },
  ],
  properties: ['a padded sequence pools to the same vector as the unpadded one when its mask is given'],
  create: (opts) => new GlobalPool(opts),
});
