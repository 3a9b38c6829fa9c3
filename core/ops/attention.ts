/** Multi-head self-attention on the fused `FUSED_KERNELS.attention` kernel, and its gradient. */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../errors';
import { FUSED_KERNELS } from '../kernels';

/**
 * Multi-head self-attention of a packed projection qkv [batch, time, 3·d] → context [batch, time, d], in one kernel
 * each way (no head transposes). Only where the backend has `FUSED_KERNELS.attention` (multi-head-attention
 * composes tfjs ops otherwise). `keyMask` of shape [batch, time] (0 marks padding keys); `causal`: query i sees keys ≤ i.
 */
export function selfAttention(qkv: tf.Tensor, numHeads: number, keyMask: tf.Tensor | null | undefined, causal: boolean): tf.Tensor {
  const [b, t, d3] = qkv.shape as [number, number, number];
  if (qkv.rank !== 3 || d3 % (3 * numHeads) !== 0) {
    throw new ShapeError('selfAttention', `[batch, time, 3·d] with d divisible by ${numHeads} heads`, qkv.shape);
  }
  if (keyMask && (keyMask.rank !== 2 || keyMask.shape[0] !== b || keyMask.shape[1] !== t)) {
    throw new ShapeError('selfAttention key mask', `[${b}, ${t}]`, keyMask.shape);
  }
  return tf.tidy(() => {
    const keep = keyMask ? tf.cast(tf.notEqual(keyMask, 0), 'float32') : tf.ones([b, t]);
    const [context, probs] = tf.engine().runKernel(FUSED_KERNELS.attention, { qkv, keep }, { numHeads, causal }) as tf.Tensor[];
    probs!.dispose(); // the backward pass keeps its own reference
    return context!;
  });
}

/** The fused attention's gradient with respect to qkv (one `attentionGrad` kernel). */
export const selfAttentionGradConfig: tf.GradConfig = {
  kernelName: FUSED_KERNELS.attention,
  inputsToSave: ['qkv', 'keep'],
  outputsToSave: [false, true],
  // The probabilities are internal to selfAttention, so only the context's gradient flows back.
  gradFunc: (dys, saved, attrs) => {
    const [qkv, keep, probs] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    const dy = (dys as tf.Tensor[])[0]!;
    return {
      qkv: () => tf.engine().runKernel(FUSED_KERNELS.attentionGrad, { dy, qkv, keep, probs }, attrs) as tf.Tensor,
      keep: () => tf.zerosLike(keep),
    };
  },
};
