/**
 * 2-D convolutions (NHWC) on the addon: Conv2D, FusedConv2D (bias row, linear or relu), both gradients, and the
 * fused filter-and-bias gradient of core/ops's conv2d (relu's gradient applied on the way). NCHW,
 * other activations and column biases go to tfjs's kernels. Their outputs come from the pool unzeroed (`fresh`): each
 * addon function writes every element (the forward pass and the filter gradient by products with beta 0, the input
 * gradient after clearing it itself), and zeroing a reused buffer first was ~2.5 % of a CPU profile of `npm start`.
 */
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS } from '../../../core/kernels';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { floatValues, isRow, shapeArgs, size, values, f32, type Info, type KernelArgs, type KernelContext, type KernelFamily } from './kernel';

function conv({ native, buffers }: KernelContext, args: KernelArgs, fused: boolean): Info | null {
  const backend = args.backend as MathBackendCPU;
  const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, Info | undefined>;
  const at = (args.attrs ?? {}) as Record<string, never>;
  if (!x || !filter || !f32(x, filter, bias) || preluActivationWeights || at.dataFormat === 'NCHW') return null;
  if (fused && at.activation !== 'linear' && at.activation !== 'relu') return null;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as never,
    filter.shape as never,
    at.strides,
    at.dilations ?? 1,
    at.pad,
    at.dimRoundingMode,
    false,
    'channelsLast',
  );
  if (bias && !isRow(bias.shape, info.outChannels)) return null;
  const out = buffers.fresh(size(info.outShape));
  native.conv2d(values(backend, x), values(backend, filter), out, bias ? values(backend, bias) : null, fused && at.activation === 'relu', ...shapeArgs(info));
  return backend.makeTensorInfo(info.outShape, 'float32', out);
}

export const convFamily: KernelFamily = {
  overrides: (ctx) => {
    const { native, buffers } = ctx;
    return {
      Conv2D: (args) => conv(ctx, args, false),
      FusedConv2D: (args) => conv(ctx, args, true),
      Conv2DBackpropInput(args) {
        const backend = args.backend as MathBackendCPU;
        const { dy, filter } = args.inputs as { dy: Info; filter: Info };
        const at = (args.attrs ?? {}) as Record<string, never>;
        if (!f32(dy, filter) || at.dataFormat === 'NCHW') return null;
        const info = tf.backend_util.computeConv2DInfo(at.inputShape, filter.shape as never, at.strides, 1, at.pad, at.dimRoundingMode, false, 'channelsLast');
        const out = buffers.fresh(size(info.inShape));
        native.conv2dBackpropInput(values(backend, dy), values(backend, filter), out, ...shapeArgs(info));
        return backend.makeTensorInfo(info.inShape, 'float32', out);
      },
      Conv2DBackpropFilter(args) {
        const backend = args.backend as MathBackendCPU;
        const { x, dy } = args.inputs as { x: Info; dy: Info };
        const at = (args.attrs ?? {}) as Record<string, never>;
        if (!f32(x, dy) || at.dataFormat === 'NCHW') return null;
        const info = tf.backend_util.computeConv2DInfo(x.shape as never, at.filterShape, at.strides, 1, at.pad, at.dimRoundingMode, false, 'channelsLast');
        const out = buffers.fresh(size(info.filterShape));
        native.conv2dBackpropFilter(values(backend, x), values(backend, dy), out, ...shapeArgs(info));
        return backend.makeTensorInfo(info.filterShape, 'float32', out);
      },
    };
  },
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.conv2dFilterBiasGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { x, dy, y } = args.inputs as { x: Info; dy: Info; y?: Info };
      const at = (args.attrs ?? {}) as Record<string, never>;
      const info = tf.backend_util.computeConv2DInfo(x.shape as never, at.filterShape, at.strides, 1, at.pad, at.dimRoundingMode, false, 'channelsLast');
      for (const [name, t] of [
        ['dy', dy],
        ['y', y],
      ] as const)
        if (t && t.shape.join() !== info.outShape.join())
          throw new Error(`${FUSED_KERNELS.conv2dFilterBiasGrad}: ${name} [${t.shape}] must be the convolution's output [${info.outShape}]`);
      const dw = buffers.fresh(size(info.filterShape)),
        db = buffers.fresh(info.outChannels);
      const v = (t: Info) => floatValues(backend, t);
      native.conv2dFilterBiasGrad(v(x), v(dy), y ? v(y) : null, dw, db, ...shapeArgs(info));
      return [backend.makeTensorInfo(info.filterShape, 'float32', dw), backend.makeTensorInfo([info.outChannels], 'float32', db)];
    },
    [FUSED_KERNELS.conv2dMaxPool]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { x, filter, bias } = args.inputs as { x: Info; filter: Info; bias?: Info };
      const at = (args.attrs ?? {}) as Record<string, never>;
      const [ph, pw] = at.poolSize as [number, number];
      const info = tf.backend_util.computeConv2DInfo(x.shape as never, filter.shape as never, at.strides, 1, at.pad, undefined, false, 'channelsLast');
      const shape = [info.batchSize, Math.floor(info.outHeight / ph), Math.floor(info.outWidth / pw), info.outChannels];
      const y = buffers.fresh(size(shape)),
        taps = buffers.fresh(size(shape));
      const v = (t: Info) => floatValues(backend, t);
      native.conv2dMaxPool(v(x), v(filter), y, taps, bias ? v(bias) : null, at.activation === 'relu', ...shapeArgs(info), ph, pw);
      return [backend.makeTensorInfo(shape, 'float32', y), backend.makeTensorInfo(shape, 'float32', taps)];
    },
    [FUSED_KERNELS.conv2dMaxPoolGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { x, dy, y, at: taps } = args.inputs as { x: Info; dy: Info; y: Info; at: Info };
      const at = (args.attrs ?? {}) as Record<string, never>;
      const [ph, pw] = at.poolSize as [number, number];
      const info = tf.backend_util.computeConv2DInfo(x.shape as never, at.filterShape, at.strides, 1, at.pad, undefined, false, 'channelsLast');
      const dw = buffers.fresh(size(info.filterShape)),
        db = buffers.fresh(info.outChannels);
      const v = (t: Info) => floatValues(backend, t);
      native.conv2dMaxPoolFilterGrad(v(x), v(dy), v(y), v(taps), dw, db, at.activation === 'relu', ...shapeArgs(info), ph, pw);
      return [backend.makeTensorInfo(info.filterShape, 'float32', dw), backend.makeTensorInfo([info.outChannels], 'float32', db)];
    },
  }),
};
