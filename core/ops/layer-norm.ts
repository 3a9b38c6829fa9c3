/** Layer normalisation on the fused `FUSED_KERNELS.layerNorm` kernel where the backend has it, and its gradient. */
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, hasKernel } from '../kernels';

/**
 * Layer normalisation over the last axis (Ba, Kiros & Hinton 2016, eq. 4): y = γ · (x − μ)/√(σ² + ε) + β. The
 * gradient: with x̂ = (x − μ)·r, r = 1/√(σ² + ε) and g = dy·γ, dx = r · (g − mean(g) − x̂ · mean(g·x̂)) (means over the
 * last axis), dγ = Σ dy·x̂ and dβ = Σ dy over the other axes.
 */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): tf.Tensor {
  if (hasKernel(FUSED_KERNELS.layerNorm) && x.dtype === 'float32') {
    return tf.engine().runKernel(FUSED_KERNELS.layerNorm, { x, gamma, beta }, { epsilon }) as tf.Tensor;
  }
  const norm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xs, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const centred = tf.sub(xs!, tf.mean(xs!, -1, true));
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), epsilon));
    const xhat = tf.mul(centred, r);
    save([xhat, r, g!]);
    return {
      value: tf.add(tf.mul(xhat, g!), b!),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sr, sg] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const gy = tf.mul(dy, sg);
        const dx = tf.mul(sr, tf.sub(tf.sub(gy, tf.mean(gy, -1, true)), tf.mul(sx, tf.mean(tf.mul(gy, sx), -1, true))));
        const rows = (t: tf.Tensor) => tf.reshape(t, [-1, sg.shape[0]!]);
        return [dx, tf.sum(rows(tf.mul(dy, sx)), 0), tf.sum(rows(dy), 0)];
      },
    };
  });
  return norm(x, gamma, beta);
}

/** The fused layer norm's gradient: one `layerNormGrad` kernel gives dx, dγ and dβ. */
export const layerNormGradConfig: tf.GradConfig = {
  kernelName: FUSED_KERNELS.layerNorm,
  inputsToSave: ['x', 'gamma'],
  gradFunc: (dy, saved, attrs) => {
    const [x, gamma] = saved as [tf.Tensor, tf.Tensor];
    // One kernel gives all three; unused ones are released with the backward pass's scope.
    const [dx, dgamma, dbeta] = tf.engine().runKernel(FUSED_KERNELS.layerNormGrad, { dy: dy as tf.Tensor, x, gamma }, attrs) as tf.Tensor[];
    return { x: () => dx!, gamma: () => dgamma!, beta: () => dbeta! };
  },
};
