import type * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin } from '../../core';

/** The identity: a layer with no nonlinearity (the default of Dense and Conv2D). */
export default definePlugin({
  kind: 'activation',
  name: 'linear',
  aliases: ['identity'],
  description: 'the identity, f(x) = x',
  schema: z.object({}),
  create: () => ({ apply: (x: tf.Tensor) => x }),
});
