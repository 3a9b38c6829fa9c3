import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, type PluginDefinition } from '../../core';

/** λ₁‖w‖₁ + λ₂‖w‖₂², added to the training loss for the parameter it is attached to (e.g. `kernelRegularizer`). */
export function penalty(w: tf.Tensor, l1: number, l2: number): tf.Scalar {
  return tf.tidy(() => {
    let p = tf.scalar(0);
    if (l1 > 0) p = tf.add(p, tf.mul(l1, tf.sum(tf.abs(w))));
    if (l2 > 0) p = tf.add(p, tf.mul(l2, tf.sum(tf.square(w))));
    return p as tf.Scalar;
  });
}

const strength = z.number().min(0);

/** L1 + L2 penalty (elastic net, Zou & Hastie 2005): λ₁‖w‖₁ + λ₂‖w‖₂². */
export const l1l2: PluginDefinition<'regularizer'> = definePlugin({
  kind: 'regularizer',
  name: 'l1l2',
  description: 'l1 * sum|w| + l2 * sum w^2 (elastic net)',
  schema: z.object({ l1: strength.default(0.01), l2: strength.default(0.01) }),
  properties: ['value and gradient of λ₁‖w‖₁ + λ₂‖w‖² match their formulas; the penalty is added to the loss by the layer that declares it'],
  create: ({ l1, l2 }) => ({ penalty: (w: tf.Tensor) => penalty(w, l1, l2) }),
});

/** L1 penalty λ‖w‖₁ (Tibshirani 1996, the lasso): drives weights to exactly zero. */
export const l1: PluginDefinition<'regularizer'> = definePlugin({
  kind: 'regularizer',
  name: 'l1',
  description: 'l1 * sum|w| (lasso)',
  schema: z.object({ l1: strength.default(0.01) }),
  properties: ['value and gradient (λ·sign(w)) match the formula'],
  create: ({ l1: s }) => ({ penalty: (w: tf.Tensor) => penalty(w, s, 0) }),
});

/** L2 penalty λ‖w‖₂² (Tikhonov; "weight decay" when added to the loss): its gradient is 2λw. */
export const l2: PluginDefinition<'regularizer'> = definePlugin({
  kind: 'regularizer',
  name: 'l2',
  description: 'l2 * sum w^2 (gradient 2 l2 w)',
  schema: z.object({ l2: strength.default(0.01) }),
  properties: ['the gradient of λ‖w‖² is 2λw'],
  create: ({ l2: s }) => ({ penalty: (w: tf.Tensor) => penalty(w, 0, s) }),
});
