/** Softmax over the last axis on the fused `FUSED_KERNELS.softmax` kernel where the backend has it, and its gradient. */
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS, hasKernel } from '../kernels';

/** Softmax over the last axis; its gradient is one kernel from the output where the backend has it. */
export function softmax(x: tf.Tensor): tf.Tensor {
  if (!hasKernel(FUSED_KERNELS.softmax) || x.dtype !== 'float32') return tf.softmax(x);
  return tf.engine().runKernel(FUSED_KERNELS.softmax, { logits: x }) as tf.Tensor;
}

/** The fused softmax's gradient from its output: one `softmaxGrad` kernel where the backend has it. */
export const softmaxGradConfig: tf.GradConfig = {
  kernelName: FUSED_KERNELS.softmax,
  outputsToSave: [true],
  gradFunc: (dy, saved) => {
    const [y] = saved as [tf.Tensor];
    const g = dy as tf.Tensor;
    return {
      logits: () =>
        hasKernel(FUSED_KERNELS.softmaxGrad)
          ? (tf.engine().runKernel(FUSED_KERNELS.softmaxGrad, { dy: g, y }) as tf.Tensor)
          : tf.mul(y, tf.sub(g, tf.sum(tf.mul(g, y), -1, true))),
    };
  },
};
