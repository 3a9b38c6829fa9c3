import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** softmax(x)_i = exp(x_i) / Σ_j exp(x_j) over the last axis (computed stably by subtracting the max). */
export default definePlugin({
  kind: 'activation',
  name: 'softmax',
  description: 'exp(x_i) / sum_j exp(x_j) over the last axis',
  schema: z.object({}),
  properties: ['rows are non-negative and sum to 1, unchanged by adding a constant to a row'],
  create: () => ({ apply: (x: tf.Tensor) => tf.softmax(x) }),
});
