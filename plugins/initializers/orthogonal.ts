import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, ShapeError, type Rng } from '../../core';
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
        // As Keras: a vector has no orthogonal form (it was a plain N(0, 1) draw, without the gain).
        if (shape.length < 2) throw new ShapeError('initializer "orthogonal"', 'a shape of rank 2 or more (a matrix, or a kernel flattened to one)', shape);
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
