import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, layerOptions, type ForwardContext, type Shape } from '../../core';
import { convOutLength } from './conv2d';

const pair = z.union([z.number().int().positive(), z.tuple([z.number().int().positive(), z.number().int().positive()])]);
export const poolSchema = layerOptions.extend({
  poolSize: pair.default(2),
  /** Defaults to the pool size (non-overlapping windows), as in Keras. */
  strides: pair.optional(),
  padding: z.enum(['valid', 'same']).default('valid'),
});
const asPair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

/** Pooling over NHWC images: the maximum (or mean) of each poolSize window. No parameters. */
export class Pool2D extends LayerBase {
  constructor(
    private readonly opts: z.output<typeof poolSchema>,
    private readonly op: 'max' | 'avg',
  ) {
    super(opts.name ?? `${op}-pool2d`);
  }

  protected buildLayer(inputShape: Shape): Shape {
    this.expectRank(inputShape, 4, '[batch, height, width, channels]');
    const [, h, w, c] = inputShape as [null, number, number, number];
    const [ph, pw] = asPair(this.opts.poolSize);
    const [sh, sw] = asPair(this.opts.strides ?? this.opts.poolSize);
    return [null, convOutLength(h, ph, sh, this.opts.padding), convOutLength(w, pw, sw, this.opts.padding), c];
  }

  maxPoolWindow(): [number, number] | null {
    const size = asPair(this.opts.poolSize),
      strides = asPair(this.opts.strides ?? this.opts.poolSize);
    return this.op === 'max' && this.opts.padding === 'valid' && strides[0] === size[0] && strides[1] === size[1] ? size : null;
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const size = asPair(this.opts.poolSize);
    const strides = asPair(this.opts.strides ?? this.opts.poolSize);
    if (this.op === 'max') return tf.maxPool(x as tf.Tensor4D, size, strides, this.opts.padding);
    if (this.opts.padding === 'valid') return tf.avgPool(x as tf.Tensor4D, size, strides, 'valid');
    // "same": the mean over the real pixels of each window. tfjs's forward kernel does this, but its gradient
    // (AvgPoolGrad) divides by the full window size, which our conformance gradient check caught; so pad explicitly
    // and divide by the count of real pixels, which differentiates correctly.
    const [, h, w] = x.shape as [number, number, number, number];
    const pads = [h, w].map((n, i) => {
      const total = Math.max((Math.ceil(n / strides[i]!) - 1) * strides[i]! + size[i]! - n, 0);
      return [Math.floor(total / 2), total - Math.floor(total / 2)] as [number, number];
    });
    const padding: [number, number][] = [[0, 0], pads[0]!, pads[1]!, [0, 0]];
    const sum = tf.avgPool(tf.pad(x, padding) as tf.Tensor4D, size, strides, 'valid');
    const real = tf.avgPool(tf.pad(tf.ones([1, h, w, 1]), padding) as tf.Tensor4D, size, strides, 'valid');
    return tf.div(sum, real);
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'max-pool2d',
  aliases: ['maxpool2d'],
  description: 'max pooling over NHWC windows',
  schema: poolSchema,
  examples: [
    { options: { poolSize: 2 }, inputShape: [2, 4, 6, 2] },
    { options: { poolSize: 3, strides: 2, padding: 'same' }, inputShape: [1, 5, 5, 1] },
  ],
  create: (opts) => new Pool2D(opts, 'max'),
});
