import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, ShapeError } from '../../core';

/** Mean squared error, (1/N) Σ (y − ŷ)² over every element. */
export default definePlugin({
  kind: 'loss',
  name: 'mse',
  aliases: ['mean-squared-error'],
  description: 'mean of (y - y_pred)^2',
  schema: z.object({}),
  examples: [{ inputShape: [3, 4], target: 'same' }],
  create: () => ({
    compute(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
      if (yTrue.shape.join() !== yPred.shape.join()) throw new ShapeError('loss "mse"', `targets of the predictions' shape [${yPred.shape}]`, yTrue.shape);
      return tf.tidy(() => tf.mean(tf.squaredDifference(yTrue, yPred)) as tf.Scalar);
    },
  }),
});
