/**
 * A fully connected product with bias and activation on tfjs's `_FusedMatMul` kernel, and that kernel's gradient:
 * tfjs's own `tf.fused.matMul` takes its gradient through `customGrad`, which computes every input's gradient,
 * including the input's when nothing needs it (a model's first layer), and it stops fusing relu as soon as
 * gradients are recorded. PyTorch skips what is not needed; so does this gradient, registered by
 * `installOpGradients` (core/ops/index.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../errors';
import { FUSED_KERNELS, hasKernel } from '../kernels';

export type LinearActivation = 'linear' | 'relu';

/**
 * y = act(x·W + b) for x of shape [..., in] and W of shape [in, out]: one `_FusedMatMul` kernel, whose gradient
 * (below) computes dx, dW and db only when something needs them.
 */
export function linear(x: tf.Tensor, w: tf.Tensor2D, bias?: tf.Tensor1D | null, activation: LinearActivation = 'linear'): tf.Tensor {
  const [inF, outF] = w.shape;
  if (x.shape.at(-1) !== inF) throw new ShapeError('linear', `[..., ${inF}] (the weight is [${w.shape}])`, x.shape);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outF)) throw new ShapeError('linear bias', `[${outF}]`, bias.shape);
  const lead = x.shape.slice(0, -1);
  const rows = lead.reduce((a, b) => a * b, 1);
  if (!hasKernel('_FusedMatMul')) {
    // A backend without the fused kernel: the same maths from tfjs ops (and tfjs's gradients).
    const z = tf.matMul(tf.reshape(x, [rows, inF]), w);
    const zb = bias ? tf.add(z, bias) : z;
    return tf.reshape(activation === 'relu' ? tf.relu(zb) : zb, [...lead, outF]);
  }
  const a = tf.reshape(x, [1, rows, inF]);
  const b = tf.reshape(w, [1, inF, outF]);
  const inputs: tf.NamedTensorMap = bias ? { a, b, bias } : { a, b };
  // loomBias tells the gradient below that a bias gradient will be asked for, so it can come with the weight's.
  const attrs = { transposeA: false, transposeB: false, activation, loomBias: !!bias };
  const y = tf.engine().runKernel('_FusedMatMul', inputs, attrs as never) as tf.Tensor;
  return tf.reshape(y, [...lead, outF]);
}

/** dy masked by relu's output y (dy where y > 0): one kernel where the backend has it. */
function reluGrad(dy: tf.Tensor, y: tf.Tensor): tf.Tensor {
  if (hasKernel(FUSED_KERNELS.reluGrad)) return tf.engine().runKernel(FUSED_KERNELS.reluGrad, { dy, y }) as tf.Tensor;
  return tf.mul(dy, tf.step(y));
}

type Attrs = { transposeA: boolean; transposeB: boolean; activation: string; loomBias?: boolean };

/**
 * The gradient of `_FusedMatMul` as `linear` calls it (equal batch dimensions, a bias row, linear or relu): the
 * four transpose cases of op(A)·op(B), each input's gradient computed only when asked for. When `linear` has a
 * bias and the backend has `FUSED_KERNELS.matMulBiasGrad`, the weight's gradient brings the bias's along (for a
 * batch's tokens dz is summed while in cache for the product, not read again by a Sum that ran at DRAM speed);
 * tfjs asks for the inputs' gradients in order, and a bias gradient asked for without the weight's falls back to
 * the Sum.
 */
function fusedMatMulGradient(dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap): Record<string, () => tf.Tensor> {
  const [a, b, y] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
  const { transposeA: tA, transposeB: tB, activation, loomBias } = attrs as unknown as Attrs;
  if (activation !== 'linear' && activation !== 'relu') throw new Error(`linear: no gradient for activation '${activation}' (linear or relu)`);
  const dz = activation === 'relu' ? reluGrad(dy as tf.Tensor, y) : (dy as tf.Tensor);
  const mm = (p: tf.Tensor, q: tf.Tensor, tp: boolean, tq: boolean) => tf.matMul(p, q, tp, tq);
  // Values, not a tensor: a tensor kept for a bias gradient that is never asked for would leak.
  let biasGrad: Float32Array | null = null;
  const weightAndBias = () => {
    const [dw, db] = tf.engine().runKernel(FUSED_KERNELS.matMulBiasGrad, { x: a, dz }) as tf.Tensor[];
    biasGrad = db!.dataSync() as Float32Array;
    db!.dispose();
    return tf.reshape(dw!, b.shape);
  };
  const fuseBias = loomBias === true && !tA && !tB && dz.dtype === 'float32' && hasKernel(FUSED_KERNELS.matMulBiasGrad);
  return {
    a: () => (tA ? (tB ? mm(b, dz, true, true) : mm(b, dz, false, true)) : tB ? mm(dz, b, false, false) : mm(dz, b, false, true)),
    b: () => (fuseBias ? weightAndBias() : tA ? (tB ? mm(dz, a, true, true) : mm(a, dz, false, false)) : tB ? mm(dz, a, true, false) : mm(a, dz, true, false)),
    bias: () => (biasGrad ? tf.tensor1d(biasGrad) : tf.sum(dz, dz.shape.map((_, i) => i).slice(0, -1))),
  };
}

/** loom's gradient of tfjs's `_FusedMatMul` kernel (tfjs registers none: its fused op uses customGrad). */
export const fusedMatMulGradConfig: tf.GradConfig = {
  kernelName: '_FusedMatMul',
  inputsToSave: ['a', 'b'],
  outputsToSave: [true],
  gradFunc: fusedMatMulGradient,
};
