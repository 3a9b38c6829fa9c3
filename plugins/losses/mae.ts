import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, ShapeError } from '../../core';

/** Mean absolute error, (1/N) Σ |y − ŷ| over every element. */
export default definePlugin({
  kind: 'loss',
  name: 'mae',
  aliases: ['mean-absolute-error'],
  description: 'mean of |y - y_pred|',
  schema: z.object({}),
  examples: [{ inputShape: [3, 4], target: 'same' }],
  create: () => ({
    compute(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
      if (yTrue.shape.join() !== yPred.shape.join()) throw new ShapeError('loss "mae"', `targets of the predictions' shape [${yPred.shape}]`, yTrue.shape);
      return tf.tidy(() => tf.mean(tf.abs(tf.sub(yTrue, yPred))) as tf.Scalar);
    },
  }),
});
