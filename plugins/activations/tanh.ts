import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** The hyperbolic tangent, (e^x − e^{−x}) / (e^x + e^{−x}). */
export default definePlugin({
  kind: 'activation',
  name: 'tanh',
  description: 'hyperbolic tangent',
  schema: z.object({}),
  create: () => ({ apply: (x: tf.Tensor) => tf.tanh(x) }),
});
