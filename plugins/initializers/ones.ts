import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** All ones: the usual initial scale of a normalisation layer. */
export default definePlugin({
  kind: 'initializer',
  name: 'ones',
  description: 'all ones (the default scale of normalisation layers)',
  schema: z.object({}),
  create: () => ({ init: (shape: number[]) => tf.ones(shape, 'float32') }),
});
