import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** The logistic function σ(x) = 1 / (1 + e^{−x}). */
export default definePlugin({
  kind: 'activation',
  name: 'sigmoid',
  description: 'logistic function 1 / (1 + exp(-x))',
  schema: z.object({}),
  create: () => ({ apply: (x: tf.Tensor) => tf.sigmoid(x) }),
});
