import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** All zeros: the usual bias initializer. */
export default definePlugin({
  kind: 'initializer',
  name: 'zeros',
  description: 'all zeros (the default bias initializer)',
  schema: z.object({}),
  create: () => ({ init: (shape: number[]) => tf.zeros(shape, 'float32') }),
});
