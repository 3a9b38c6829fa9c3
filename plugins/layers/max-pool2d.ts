import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, layerOptions, type ForwardContext, type Shape } from '../../core';
import { convOutLength } from './conv2d';

const pair = z.union([z.number().int().positive(), z.tuple([z.number().int().positive(), z.number().int().positive()])]);
const schema = layerOptions.extend({
  poolSize: pair.default(2),
  /** Defaults to the pool size (non-overlapping windows), as in Keras. */
  strides: pair.optional(),
  padding: z.enum(['valid', 'same']).default('valid'),
});
const asPair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

/** Max pooling over NHWC images: the maximum of each poolSize window. No parameters. */
export class MaxPool2D extends LayerBase {
  constructor(private readonly opts: z.output<typeof schema>) {
    super(opts.name ?? 'max-pool2d');
  }

  protected buildLayer(inputShape: Shape): Shape {
    this.expectRank(inputShape, 4, '[batch, height, width, channels]');
    const [, h, w, c] = inputShape as [null, number, number, number];
    const [ph, pw] = asPair(this.opts.poolSize);
    const [sh, sw] = asPair(this.opts.strides ?? this.opts.poolSize);
    return [null, convOutLength(h, ph, sh, this.opts.padding), convOutLength(w, pw, sw, this.opts.padding), c];
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    return tf.maxPool(x as tf.Tensor4D, asPair(this.opts.poolSize), asPair(this.opts.strides ?? this.opts.poolSize), this.opts.padding);
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'max-pool2d',
  aliases: ['maxpool2d'],
  description: 'max pooling over NHWC windows',
  schema,
  examples: [
    { options: { poolSize: 2 }, inputShape: [2, 4, 6, 2] },
    { options: { poolSize: 3, strides: 2, padding: 'same' }, inputShape: [1, 5, 5, 1] },
  ],
  create: (opts) => new MaxPool2D(opts),
});
