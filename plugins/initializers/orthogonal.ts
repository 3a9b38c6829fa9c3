import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, type Rng } from '../../core';
import { sample } from './variance-scaling';

/**
 * A (semi-)orthogonal matrix times `gain` (Saxe et al. 2014): the Q of a QR decomposition of a Gaussian matrix,
 * with signs fixed by R's diagonal so the distribution is uniform (Haar). Shapes of rank > 2 are flattened to
 * [∏ leading, last]. Keras's default for recurrent kernels.
 */
export default definePlugin({
  kind: 'initializer',
  name: 'orthogonal',
  description: 'gain * Q from the QR decomposition of a Gaussian matrix (Saxe et al. 2014)',
  schema: z.object({ gain: z.number().positive().default(1) }),
  properties: ['gain times a matrix with orthonormal columns (tall) or rows (wide)'],
  create: ({ gain }) => ({
    init: (shape: number[], rng: Rng) =>
      tf.tidy(() => {
        if (shape.length < 2) return sample(shape, () => rng.normal());
        const cols = shape.at(-1)!;
        const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
        const [m, n] = rows >= cols ? [rows, cols] : [cols, rows];
        const [q, r] = tf.linalg.qr(sample([m, n], () => rng.normal()) as tf.Tensor2D);
        const d = tf.sign(tf.sum(tf.linalg.bandPart(r, 0, 0), 0)); // the signs of diag(R), as a row
        const qFixed = tf.mul(q, tf.where(tf.equal(d, 0), tf.onesLike(d), d));
        const mat = rows >= cols ? qFixed : tf.transpose(qFixed);
        return tf.mul(tf.reshape(mat, shape), gain);
      }),
  }),
});
