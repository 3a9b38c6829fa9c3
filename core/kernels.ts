/**
 * Fused kernels a backend may provide beyond tfjs's own (registered with `tf.registerKernel` under these names).
 * Plugins use them when the active backend has them (`hasKernel`) and fall back to composing tfjs ops, so every
 * plugin runs everywhere and runs fast where a backend offers more.
 */
import * as tf from '@tensorflow/tfjs-core';

export const FUSED_KERNELS = {
  /**
   * One Adam step on one tensor (Kingma & Ba 2015, Algorithm 1). Inputs `{ param, grad, m, v }`, attrs
   * `{ lr, beta1, beta2, epsilon, c1, c2 }` with c1 = 1 − β1^t and c2 = 1 − β2^t; outputs `[param', m', v']`.
   */
  adam: 'LoomAdam',
} as const;

export function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}
