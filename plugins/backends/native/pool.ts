/**
 * 2-D max and average pooling (NHWC) and their gradients on the addon; ties go to the first maximum, as in tfjs.
 * Outputs come from the pool unzeroed (`fresh`): the pooling sets every output element, and the gradients clear
 * theirs before adding into it (zeroing a reused buffer here first was ~1.9 % of a CPU profile of `npm start`).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { shapeArgs, size, values, f32, type Info, type KernelArgs, type KernelContext, type KernelFamily } from './kernel';

function pool({ native, buffers }: KernelContext, args: KernelArgs, isMax: boolean): Info | null {
  const backend = args.backend as MathBackendCPU;
  const { x } = args.inputs as { x: Info };
  const at = (args.attrs ?? {}) as Record<string, never>;
  if (!f32(x) || x.shape.length !== 4) return null;
  const info = tf.backend_util.computePool2DInfo(x.shape as never, at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode);
  const out = buffers.fresh(size(info.outShape));
  native.pool(values(backend, x), out, isMax, ...shapeArgs(info));
  return backend.makeTensorInfo(info.outShape, 'float32', out);
}

/** The gradient of a pooling with respect to its input (tfjs's average pooling gradient ignores dimRoundingMode). */
function poolGrad({ native, buffers }: KernelContext, args: KernelArgs, isMax: boolean): Info | null {
  const backend = args.backend as MathBackendCPU;
  const { dy, input } = args.inputs as { dy: Info; input: Info };
  const at = (args.attrs ?? {}) as Record<string, never>;
  if (!f32(dy, input)) return null;
  const info = tf.backend_util.computePool2DInfo(input.shape as never, at.filterSize, at.strides, 1, at.pad, isMax ? at.dimRoundingMode : undefined);
  const out = buffers.fresh(size(input.shape));
  if (isMax) native.maxPoolGrad(values(backend, dy), values(backend, input), out, ...shapeArgs(info));
  else native.avgPoolGrad(values(backend, dy), out, ...shapeArgs(info));
  return backend.makeTensorInfo(input.shape, 'float32', out);
}

export const poolFamily: KernelFamily = {
  overrides: (ctx) => ({
    MaxPool: (args) => pool(ctx, args, true),
    AvgPool: (args) => pool(ctx, args, false),
    MaxPoolGrad: (args) => poolGrad(ctx, args, true),
    AvgPoolGrad: (args) => poolGrad(ctx, args, false),
  }),
};
