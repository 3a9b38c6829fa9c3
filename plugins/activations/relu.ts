import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** Rectified linear unit, max(0, x) (Nair & Hinton 2010). */
export default definePlugin({
  kind: 'activation',
  name: 'relu',
  description: 'max(0, x) (Nair & Hinton 2010)',
  schema: z.object({}),
  create: () => ({ apply: (x: tf.Tensor) => tf.relu(x) }),
});
