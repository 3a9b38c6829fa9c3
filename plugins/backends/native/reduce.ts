/**
 * Sum and Mean over one block of adjacent axes on the addon (other reductions go to tfjs's kernels), and their
 * gradients, swapped for ones that broadcast dy with the native Tile while these kernels are installed; and
 * LoomMinMax, a tensor's range in one vectorised pass (dynamic int8 quantization's, core/quantization.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS } from '../../../core/kernels';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { size, values, f32, type Info, type KernelArgs, type KernelFamily } from './kernel';

/**
 * Sum's and Mean's gradient: dy broadcast back over the reduced axes (divided by their size for Mean). tfjs's own
 * multiplies dy by a ones tensor that JavaScript allocates and fills element by element (1.3 ms per step for the
 * 524k outputs the Transformer benchmark sums); the native Tile kernel makes the same values in one copy.
 */
function broadcastGradient(kernelName: 'Sum' | 'Mean'): tf.GradConfig {
  return {
    kernelName,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      const x = saved[0]!;
      const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
      const kept = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
      const reduced = axes.reduce((n, a) => n * x.shape[a]!, 1);
      const g = dy as tf.Tensor;
      return { x: () => tf.broadcastTo(tf.reshape(kernelName === 'Mean' ? tf.div(g, reduced) : g, kept), x.shape) };
    },
  };
}

export const reduceFamily: KernelFamily = {
  overrides: ({ native, buffers }) => {
    /** Sum over one block of adjacent axes (any other reduction goes to tfjs's kernel). */
    const sum = (args: KernelArgs): Info | null => {
      const backend = args.backend as MathBackendCPU;
      const { x } = args.inputs as { x: Info };
      const { axis, keepDims } = (args.attrs ?? {}) as { axis: number | number[]; keepDims: boolean };
      if (!f32(x) || size(x.shape) === 0) return null;
      const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
      if (axes.length === 0 || axes.some((v, i) => i > 0 && v !== axes[i - 1]! + 1)) return null; // not one block
      const first = axes[0]!,
        last = axes.at(-1)!;
      const outer = size(x.shape.slice(0, first)),
        reduce = size(x.shape.slice(first, last + 1)),
        inner = size(x.shape.slice(last + 1));
      const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
      const out = buffers.fresh(outer * inner);
      native.sum(values(backend, x), out, outer, reduce, inner);
      return backend.makeTensorInfo(outShape, 'float32', out);
    };
    return {
      Mean(args) {
        const { x } = args.inputs as { x: Info };
        const summed = sum(args);
        if (!summed) return null;
        const backend = args.backend as MathBackendCPU;
        const vals = values(backend, summed);
        const count = size(x.shape) / vals.length;
        for (let i = 0; i < vals.length; i++) vals[i]! /= count;
        return summed;
      },
      Sum: (args) => sum(args),
    };
  },
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.minMax]: (args: KernelArgs) => {
      const backend = args.backend as MathBackendCPU;
      const { x } = args.inputs as { x: Info };
      if (x.dtype !== 'float32') throw new Error(`${FUSED_KERNELS.minMax}: x is ${x.dtype}, not float32`);
      const out = buffers.fresh(2);
      native.minMax(values(backend, x), out, size(x.shape));
      return backend.makeTensorInfo([2], 'float32', out);
    },
  }),
  gradients: [broadcastGradient('Sum'), broadcastGradient('Mean')],
};
