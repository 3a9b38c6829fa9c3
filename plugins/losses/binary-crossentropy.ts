import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, ShapeError } from '../../core';

/**
 * Binary cross-entropy from logits z and targets y ∈ [0, 1], averaged over elements, in the stable form
 * max(z, 0) − z·y + log(1 + e^{−|z|}) (equal to −y log σ(z) − (1 − y) log(1 − σ(z)) without overflow).
 */
export default definePlugin({
  kind: 'loss',
  name: 'binary-crossentropy',
  aliases: ['bce'],
  description: 'mean of -y log sigmoid(z) - (1-y) log(1 - sigmoid(z)), from logits, stable form',
  schema: z.object({}),
  examples: [{ inputShape: [4, 3], target: 'same' }],
  properties: ['matches the definition for any logits and targets in [0, 1]'],
  create: () => ({
    // Targets are probabilities: one outside [0, 1] gives a loss with no minimum (it falls without bound).
    checkTargets(targets) {
      for (let i = 0; i < targets.length; i++) {
        const v = targets[i]!;
        if (!(v >= 0 && v <= 1)) return { index: i, reason: `target ${v} is outside [0, 1] (binary cross-entropy takes probabilities)` };
      }
      return null;
    },
    compute(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
      if (yTrue.size !== yPred.size) throw new ShapeError('loss "binary-crossentropy"', `one target per logit [${yPred.shape}]`, yTrue.shape);
      return tf.tidy(() => {
        const y = tf.reshape(tf.cast(yTrue, 'float32'), yPred.shape);
        const z = yPred;
        return tf.mean(tf.add(tf.sub(tf.relu(z), tf.mul(z, y)), tf.log1p(tf.exp(tf.neg(tf.abs(z)))))) as tf.Scalar;
      });
    },
  }),
});
