import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** Every entry equal to `value` (e.g. a forget-gate bias of 1). */
export default definePlugin({
  kind: 'initializer',
  name: 'constant',
  description: 'every entry equal to value',
  schema: z.object({ value: z.number().default(0) }),
  create: ({ value }) => ({ init: (shape: number[]) => tf.fill(shape, value, 'float32') }),
});
