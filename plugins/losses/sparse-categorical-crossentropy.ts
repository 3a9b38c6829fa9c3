import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, ShapeError } from '../../core';

/**
 * Cross-entropy between integer class labels and predicted scores, averaged over the batch:
 * L = -(1/N) Σ_n log softmax(z_n)[y_n]. With `fromLogits` (the default) it takes raw scores and computes
 * log-softmax as z - logsumexp(z), which is stable for any magnitude of z and invariant to shifting z.
 */
export default definePlugin({
  kind: 'loss',
  name: 'sparse-categorical-crossentropy',
  aliases: ['sparse-ce'],
  description: '-mean(log softmax(z)[y]) for integer labels y (stable log-sum-exp form)',
  schema: z.object({ fromLogits: z.boolean().default(true) }),
  examples: [{ inputShape: [4, 5], target: 'classes' }, { options: { fromLogits: true }, inputShape: [2, 3, 4], target: 'classes' }],
  create: ({ fromLogits }) => ({
    compute(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
      const classes = yPred.shape.at(-1)!;
      const n = yPred.size / classes;
      if (yTrue.size !== n || yPred.rank < 2) {
        throw new ShapeError('loss "sparse-categorical-crossentropy"', `labels with one entry per row of predictions [${yPred.shape}]`, yTrue.shape);
      }
      return tf.tidy(() => {
        const logits = tf.reshape(yPred, [n, classes]);
        const logp = fromLogits ? tf.logSoftmax(logits) : tf.log(tf.clipByValue(logits, 1e-7, 1));
        const onehot = tf.oneHot(tf.cast(tf.reshape(yTrue, [n]), 'int32'), classes);
        return tf.neg(tf.div(tf.sum(tf.mul(onehot, logp)), n)) as tf.Scalar;
      });
    },
  }),
});
