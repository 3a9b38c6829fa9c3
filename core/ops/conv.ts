/**
 * A 2-D convolution (NHWC) with bias and activation on tfjs's `FusedConv2D` kernel, and that kernel's gradient.
 * tfjs's own `tf.fused.conv2d` stops fusing relu while gradients are recorded: a separate Add and Relu, then Step,
 * Multiply and a Sum over the whole output in the backward pass, ~20 % of the MNIST CNN's training step on
 * native-cpu (benchmarks/profile-cnn.ts). As `linear` does for `_FusedMatMul`, this gradient computes only what is
 * asked for (never a first layer's input gradient), and where the backend has `FUSED_KERNELS.conv2dFilterBiasGrad`
 * the filter's and bias's gradients come from one pass over dy that applies relu's gradient on the way. Registered
 * by `installOpGradients` (core/ops/index.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from '../errors';
import { FUSED_KERNELS, hasKernel } from '../kernels';

export type ConvActivation = 'linear' | 'relu';

/**
 * y = act(x ⋆ W + b) for x [n, h, w, c] and W [kh, kw, c, co] (dilation 1, NHWC): one `FusedConv2D` kernel where
 * the backend has it, whose gradient (below) computes dx, dW and db only when something needs them.
 */
export function conv2d(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: [number, number],
  pad: 'valid' | 'same',
  bias?: tf.Tensor1D | null,
  activation: ConvActivation = 'linear',
): tf.Tensor4D {
  const co = filter.shape[3];
  if (x.rank !== 4 || x.shape[3] !== filter.shape[2])
    throw new ShapeError('conv2d', `[batch, height, width, ${filter.shape[2]}] (the filter is [${filter.shape}])`, x.shape);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== co)) throw new ShapeError('conv2d bias', `[${co}]`, bias.shape);
  if (!hasKernel('FusedConv2D')) {
    // A backend without the fused kernel: the same maths from tfjs ops (and tfjs's gradients).
    const z = tf.conv2d(x, filter, strides, pad);
    const zb = bias ? tf.add(z, bias) : z;
    return (activation === 'relu' ? tf.relu(zb) : zb) as tf.Tensor4D;
  }
  const inputs: tf.NamedTensorMap = bias ? { x, filter, bias } : { x, filter };
  // loomBias tells the gradient below that a bias gradient will be asked for, so it can come with the filter's.
  const attrs = { strides, pad, dataFormat: 'NHWC', dilations: [1, 1], activation, loomBias: !!bias };
  return tf.engine().runKernel('FusedConv2D', inputs, attrs as never) as tf.Tensor4D;
}

/** dy masked by relu's output y (dy where y > 0): one kernel where the backend has it. */
function reluGrad(dy: tf.Tensor, y: tf.Tensor): tf.Tensor {
  if (hasKernel(FUSED_KERNELS.reluGrad)) return tf.engine().runKernel(FUSED_KERNELS.reluGrad, { dy, y }) as tf.Tensor;
  return tf.mul(dy, tf.step(y));
}

type Attrs = {
  strides: [number, number] | number;
  pad: 'valid' | 'same' | number;
  dilations?: [number, number] | number;
  dimRoundingMode?: string;
  activation: string;
  loomBias?: boolean;
};

/**
 * The gradient of `FusedConv2D` as `conv2d` calls it (NHWC, dilation 1, a bias row, linear or relu), each input's
 * gradient computed only when asked for. With `FUSED_KERNELS.conv2dFilterBiasGrad` the filter's gradient reads dy
 * (and y, for relu) once and brings the bias's along; relu's masked gradient is then written out only for the input's
 * gradient (a layer after the first). tfjs asks for the inputs' gradients in order (x, filter, bias).
 */
function fusedConv2dGradient(dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap): Record<string, () => tf.Tensor> {
  const [x, filter, y] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
  const g = dy as tf.Tensor4D;
  const { strides, pad, dilations, dimRoundingMode, activation, loomBias } = attrs as unknown as Attrs;
  if (activation !== 'linear' && activation !== 'relu') throw new Error(`conv2d: no gradient for activation '${activation}' (linear or relu)`);
  if ([dilations ?? 1].flat().some((d) => d !== 1)) throw new Error('conv2d: gradients need dilation 1');
  const relu = activation === 'relu';
  const fuse = g.dtype === 'float32' && hasKernel(FUSED_KERNELS.conv2dFilterBiasGrad);
  // Without the fused kernel dz is written out once, here, for every gradient that reads it.
  const shared = fuse ? null : relu ? reluGrad(g, y) : g;
  const dz = () => shared ?? (relu ? reluGrad(g, y) : g);
  const convAttrs = { strides, pad, dataFormat: 'NHWC', dimRoundingMode };
  // Values, not a tensor: a tensor kept for a bias gradient that is never asked for would leak.
  let biasGrad: Float32Array | null = null;
  const filterGrad = () => {
    if (!fuse) return tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: dz() }, { ...convAttrs, filterShape: filter.shape } as never) as tf.Tensor;
    const inputs: tf.NamedTensorMap = relu ? { x, dy: g, y } : { x, dy: g };
    const [dw, db] = tf.engine().runKernel(FUSED_KERNELS.conv2dFilterBiasGrad, inputs, { ...convAttrs, filterShape: filter.shape } as never) as tf.Tensor[];
    if (loomBias) biasGrad = db!.dataSync() as Float32Array;
    db!.dispose();
    return dw!;
  };
  return {
    x: () => tf.engine().runKernel('Conv2DBackpropInput', { dy: dz(), filter }, { ...convAttrs, inputShape: x.shape } as never) as tf.Tensor,
    filter: filterGrad,
    bias: () => (biasGrad ? tf.tensor1d(biasGrad) : tf.sum(dz(), [0, 1, 2])),
  };
}

/**
 * conv2d (bias row, linear or relu, dilation 1) followed by max pooling over `pool` windows that tile its output
 * (stride = window, 'valid'), the values of `tf.maxPool(conv2d(...), pool, pool, 'valid')`. Where the backend has
 * `FUSED_KERNELS.conv2dMaxPool` the convolution's output is never written: each band of rows is pooled while in cache,
 * keeping each maximum's position for the gradient (the MNIST CNN's first layer wrote, pooled, re-read and
 * back-propagated through a 26×26×32 map per image, most of the step's memory traffic at batch 128).
 */
export function conv2dMaxPool(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  strides: [number, number],
  pad: 'valid' | 'same',
  bias: tf.Tensor1D,
  activation: ConvActivation,
  pool: [number, number],
): tf.Tensor4D {
  if (!hasKernel(FUSED_KERNELS.conv2dMaxPool) || x.dtype !== 'float32')
    return tf.maxPool(conv2d(x, filter, strides, pad, bias, activation), pool, pool, 'valid');
  if (x.rank !== 4 || x.shape[3] !== filter.shape[2])
    throw new ShapeError('conv2d', `[batch, height, width, ${filter.shape[2]}] (the filter is [${filter.shape}])`, x.shape);
  if (bias.rank !== 1 || bias.shape[0] !== filter.shape[3]) throw new ShapeError('conv2d bias', `[${filter.shape[3]}]`, bias.shape);
  const attrs = { strides, pad, activation, poolSize: pool };
  const [y] = tf.engine().runKernel(FUSED_KERNELS.conv2dMaxPool, { x, filter, bias }, attrs as never) as tf.Tensor[];
  return y as tf.Tensor4D;
}

type PoolAttrs = { strides: [number, number]; pad: 'valid' | 'same'; activation: ConvActivation; poolSize: [number, number] };

/**
 * The gradient of `conv2dMaxPool`'s kernel: the filter's and bias's from the pooled dy, y and each maximum's position
 * (one pass, the convolution's output gradient made chunk by chunk in cache); the input's, when asked for (a layer
 * after the first), by recomputing the convolution's output for tfjs's MaxPoolGrad and Conv2DBackpropInput.
 */
export const conv2dMaxPoolGradConfig: tf.GradConfig = {
  kernelName: FUSED_KERNELS.conv2dMaxPool,
  inputsToSave: ['x', 'filter', 'bias'],
  outputsToSave: [true, true],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter, bias, y, at] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor1D, tf.Tensor4D, tf.Tensor4D];
    const g = (Array.isArray(dy) ? dy[0] : dy) as tf.Tensor4D;
    const { strides, pad, activation, poolSize } = attrs as unknown as PoolAttrs;
    let biasGrad: Float32Array | null = null;
    const weights = () => {
      const [dw, db] = tf.engine().runKernel(FUSED_KERNELS.conv2dMaxPoolGrad, { x, dy: g, y, at }, {
        strides,
        pad,
        activation,
        poolSize,
        filterShape: filter.shape,
      } as never) as tf.Tensor[];
      biasGrad = db!.dataSync() as Float32Array;
      db!.dispose();
      return dw!;
    };
    const input = () => {
      const full = tf
        .engine()
        .runKernel('FusedConv2D', { x, filter, bias }, { strides, pad, dataFormat: 'NHWC', dilations: [1, 1], activation } as never) as tf.Tensor;
      const pooled = tf
        .engine()
        .runKernel('MaxPoolGrad', { dy: g, input: full, output: y }, { filterSize: poolSize, strides: poolSize, pad: 'valid' } as never) as tf.Tensor;
      const dz = activation === 'relu' ? reluGrad(pooled, full) : pooled;
      return tf.engine().runKernel('Conv2DBackpropInput', { dy: dz, filter }, { strides, pad, dataFormat: 'NHWC', inputShape: x.shape } as never) as tf.Tensor;
    };
    return {
      x: input,
      filter: weights,
      bias: () => {
        if (!biasGrad) weights().dispose();
        return tf.tensor1d(biasGrad!);
      },
    };
  },
};

/** loom's gradient of tfjs's `FusedConv2D` kernel (tfjs registers none: its fused op uses customGrad). */
export const fusedConv2dGradConfig: tf.GradConfig = {
  kernelName: 'FusedConv2D',
  inputsToSave: ['x', 'filter'],
  outputsToSave: [true],
  gradFunc: fusedConv2dGradient,
};
