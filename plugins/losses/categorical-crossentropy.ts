import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, ShapeError } from '../../core';

/**
 * log p from predicted probabilities (`fromLogits: false`), as Keras computes it: each row divided by its sum (scores
 * that do not sum to 1 are read as unnormalised probabilities), then clipped to [1e-7, 1 − 1e-7] so that a zero
 * probability gives a large finite loss instead of infinity.
 */
export function logOfProbabilities(p: tf.Tensor2D | tf.Tensor): tf.Tensor {
  return tf.log(tf.clipByValue(tf.div(p, tf.sum(p, -1, true)), 1e-7, 1 - 1e-7));
}

/**
 * Cross-entropy between target distributions q (one-hot or soft, same shape as the predictions) and predicted
 * scores: L = −(1/N) Σ_n Σ_k q_nk log softmax(z_n)_k, log-softmax in the stable z − logsumexp(z) form.
 * `labelSmoothing` ε mixes the target with the uniform distribution, q ← (1 − ε)q + ε/K (Szegedy et al. 2016, §7).
 * Masked variant: rows whose target is all zeros are padding and count in neither the sum nor N. With `fromLogits:
 * false` the predictions are probabilities, normalised per row and clipped (Keras's form, {@link logOfProbabilities}).
 */
export default definePlugin({
  kind: 'loss',
  name: 'categorical-crossentropy',
  aliases: ['ce'],
  description: '-mean(sum(q * log softmax(z))) for target distributions q; all-zero target rows are padding and ignored',
  schema: z.object({
    fromLogits: z.boolean().default(true),
    labelSmoothing: z.number().min(0).lt(1).default(0),
  }),
  examples: [
    { inputShape: [4, 5], target: 'same' },
    { options: { labelSmoothing: 0.1 }, inputShape: [2, 3, 4], target: 'same' },
  ],
  properties: ['equals sparse cross-entropy on one-hot targets', 'all-zero target rows are ignored', 'label smoothing equals (1 − ε)·CE + ε·mean_k(−log p_k)'],
  create: ({ fromLogits, labelSmoothing }) => ({
    compute(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
      if (yTrue.shape.join() !== yPred.shape.join()) {
        throw new ShapeError('loss "categorical-crossentropy"', `targets of the predictions' shape [${yPred.shape}]`, yTrue.shape);
      }
      return tf.tidy(() => {
        const classes = yPred.shape.at(-1)!;
        const n = yPred.size / classes;
        const logits = tf.reshape(yPred, [n, classes]);
        const logp = fromLogits ? tf.logSoftmax(logits) : logOfProbabilities(logits);
        const q = tf.reshape(tf.cast(yTrue, 'float32'), [n, classes]);
        const real = tf.cast(tf.greater(tf.sum(tf.abs(q), 1), 0), 'float32');
        const target = labelSmoothing > 0 ? tf.add(tf.mul(q, 1 - labelSmoothing), tf.mul(tf.expandDims(real, 1), labelSmoothing / classes)) : q;
        const perRow = tf.neg(tf.sum(tf.mul(target, logp), 1));
        return tf.div(tf.sum(tf.mul(perRow, real)), tf.maximum(tf.sum(real), 1)) as tf.Scalar;
      });
    },
  }),
});
