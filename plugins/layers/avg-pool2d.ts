import { definePlugin } from '../../core';
import { Pool2D, poolSchema } from './max-pool2d';

export default definePlugin({
  kind: 'layer',
  name: 'avg-pool2d',
  aliases: ['avgpool2d'],
  description: 'average pooling over NHWC windows (LeCun et al. 1998 "subsampling"); padding "same" averages only the real pixels, as Keras does',
  schema: poolSchema,
  examples: [
    { options: { poolSize: 2 }, inputShape: [2, 4, 6, 2] },
    { options: { poolSize: 3, strides: 2, padding: 'same' }, inputShape: [1, 5, 5, 1] },
  ],
  properties: ['equals the mean over the real pixels of each window, for valid and same padding'],
  create: (opts) => new Pool2D(opts, 'avg'),
});
