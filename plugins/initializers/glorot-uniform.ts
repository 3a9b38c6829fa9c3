import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { computeFans, definePlugin, type Rng } from '../../core';

/**
 * Glorot & Bengio (2010), eq. 16: W ~ U[-l, l] with l = sqrt(6 / (fanIn + fanOut)), so Var(W) = 2 / (fanIn + fanOut).
 * Keras's default kernel initializer. Drawn from the run's Rng, so it is the same on every backend.
 */
export default definePlugin({
  kind: 'initializer',
  name: 'glorot-uniform',
  aliases: ['xavier-uniform'],
  description: 'U[-l, l], l = sqrt(6/(fanIn+fanOut)) (Glorot & Bengio 2010, eq. 16)',
  schema: z.object({ gain: z.number().positive().default(1) }),
  properties: ['the sample mean and variance match the formula within 5 standard errors', 'stays inside ±√(6/(fanIn + fanOut)); fans computed as Keras does'],
  create: ({ gain }) => ({
    init(shape: number[], rng: Rng) {
      const { fanIn, fanOut } = computeFans(shape);
      const limit = gain * Math.sqrt(6 / (fanIn + fanOut));
      const n = shape.reduce((a, b) => a * b, 1);
      const v = new Float32Array(n);
      for (let i = 0; i < n; i++) v[i] = (2 * rng.next() - 1) * limit;
      return tf.tensor(v, shape, 'float32');
    },
  }),
});
