import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** Leaky ReLU (Maas et al. 2013): x for x > 0, αx otherwise. */
export default definePlugin({
  kind: 'activation',
  name: 'leaky-relu',
  description: 'x if x > 0 else alpha x (Maas et al. 2013)',
  schema: z.object({ alpha: z.number().min(0).default(0.01) }),
  create: ({ alpha }) => ({ apply: (x: tf.Tensor) => tf.leakyRelu(x, alpha) }),
});
