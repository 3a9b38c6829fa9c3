import * as tf from '@tensorflow/tfjs-core';
import { definePlugin, LayerBase, layerOptions } from 'loom';
import { z } from 'zod';

const schema = layerOptions.extend({
  units: z.number().int().positive(),
  kernelInitializer: z.string().default('glorot-uniform'),
});

/**
 * A dense layer with weight normalization (Salimans & Kingma 2016, eq. 2): each output unit j has a direction v_j
 * and a length g_j, its weight vector is w_j = g_j · v_j / ‖v_j‖, and y = x W + b. The length of w_j is g_j
 * whatever v_j is, which decouples it from the direction and conditions the gradient better.
 */
export class WeightNormDense extends LayerBase {
  constructor(opts, ctx) {
    super(opts.name ?? 'weight-norm-dense');
    this.opts = opts;
    this.kernelInit = ctx.create('initializer', opts.kernelInitializer, 'kernelInitializer');
    this.ones = ctx.create('initializer', 'ones');
    this.zeros = ctx.create('initializer', 'zeros');
  }

  buildLayer(inputShape, rng) {
    if (inputShape.length !== 2) this.expectRank(inputShape, 2, '[batch, features]');
    this.v = this.addWeight('v', [inputShape[1], this.opts.units], this.kernelInit, rng, 'kernel');
    // g starts at 1 (the paper initialises it from data; 1 keeps the example deterministic); it is a scale, like a norm's gain.
    this.g = this.addWeight('g', [this.opts.units], this.ones, rng, 'norm');
    this.b = this.addWeight('bias', [this.opts.units], this.zeros, rng, 'bias');
    return [inputShape[0], this.opts.units];
  }

  apply(x) {
    return tf.tidy(() => {
      // ‖v_j‖ over the input axis (the columns of v are the units' directions).
      const norm = tf.sqrt(tf.sum(tf.square(this.v), 0));
      const w = tf.mul(this.v, tf.div(this.g, norm));
      return tf.add(tf.matMul(x, w), this.b);
    });
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'weight-norm-dense',
  description: 'dense layer with weight normalization w = g·v/‖v‖ (Salimans & Kingma 2016, eq. 2)',
  schema,
  examples: [
    { options: { units: 3 }, inputShape: [2, 4] },
    { options: { units: 1 }, inputShape: [3, 2] },
  ],
  create: (opts, ctx) => new WeightNormDense(opts, ctx),
});
