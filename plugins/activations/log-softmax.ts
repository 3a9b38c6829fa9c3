import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** log softmax over the last axis, x − logsumexp(x), computed stably (never log of an underflowed softmax). */
export default definePlugin({
  kind: 'activation',
  name: 'log-softmax',
  description: 'x - logsumexp(x) over the last axis',
  schema: z.object({}),
  properties: ['equals the logarithm of softmax where that is representable'],
  create: () => ({ apply: (x: tf.Tensor) => tf.logSoftmax(x) }),
});
