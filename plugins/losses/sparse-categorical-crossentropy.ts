import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, ShapeError } from '../../core';

/**
 * Cross-entropy between integer class labels and predicted scores, averaged over the counted rows:
 * L = -(1/N) Σ_n log softmax(z_n)[y_n]. With `fromLogits` (the default) it takes raw scores and computes
 * log-softmax as z - logsumexp(z), which is stable for any magnitude of z and invariant to shifting z.
 * `labelSmoothing` ε replaces the one-hot target by (1 − ε)·onehot + ε/K (Szegedy et al. 2016, §7), so
 * L = (1 − ε)·CE + ε·mean_k(−log p_k). `ignoreIndex` drops rows whose label equals it (padding in sequences)
 * from both the sum and the count.
 */
export default definePlugin({
  kind: 'loss',
  name: 'sparse-categorical-crossentropy',
  aliases: ['sparse-ce'],
  description: '-mean(log softmax(z)[y]) for integer labels y (stable log-sum-exp form)',
  schema: z.object({
    fromLogits: z.boolean().default(true),
    labelSmoothing: z.number().min(0).lt(1).default(0),
    ignoreIndex: z.number().int().optional(),
  }),
  examples: [
    { inputShape: [4, 5], target: 'classes' },
    { options: { labelSmoothing: 0.1 }, inputShape: [2, 3, 4], target: 'classes' },
    { options: { ignoreIndex: 0 }, inputShape: [6, 3], target: 'classes' },
  ],
  properties: ['equals the mean of −log softmax(z)[y] computed in float64', 'invariant to adding a constant to a row of logits; finite for huge logits', 'label smoothing equals (1 − ε)·CE + ε·mean_k(−log p_k)', 'ignoreIndex averages over the other rows only (masked sequences)'],
  create: ({ fromLogits, labelSmoothing, ignoreIndex }) => ({
    compute(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
      const classes = yPred.shape.at(-1)!;
      const n = yPred.size / classes;
      if (yTrue.size !== n || yPred.rank < 2) {
        throw new ShapeError('loss "sparse-categorical-crossentropy"', `labels with one entry per row of predictions [${yPred.shape}]`, yTrue.shape);
      }
      return tf.tidy(() => {
        const logits = tf.reshape(yPred, [n, classes]);
        const logp = fromLogits ? tf.logSoftmax(logits) : tf.log(tf.clipByValue(logits, 1e-7, 1));
        const labels = tf.cast(tf.reshape(yTrue, [n]), 'int32');
        let target = tf.oneHot(labels, classes);
        if (labelSmoothing > 0) target = tf.add(tf.mul(target, 1 - labelSmoothing), labelSmoothing / classes);
        const perRow = tf.neg(tf.sum(tf.mul(target, logp), 1));
        if (ignoreIndex === undefined) return tf.div(tf.sum(perRow), n) as tf.Scalar;
        const keep = tf.cast(tf.notEqual(labels, ignoreIndex), 'float32');
        return tf.div(tf.sum(tf.mul(perRow, keep)), tf.maximum(tf.sum(keep), 1)) as tf.Scalar;
      });
    },
  }),
});
