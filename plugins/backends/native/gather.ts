/**
 * Embedding lookups and their gradient in plain JavaScript: GatherV2 along axis 0 as row copies, and
 * UnsortedSegmentSum as one scatter-add pass (tfjs's cpu kernels compute every element's index separately, and
 * its segment sum loops over every segment with a mask over all rows).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { size, values, f32, type Info, type KernelFamily } from './kernel';

export const gatherFamily: KernelFamily = {
  overrides: ({ buffers }) => ({
    // Row gathers along axis 0 (embedding lookups): tfjs's kernel computes every element's index separately.
    GatherV2(args) {
      const backend = args.backend as MathBackendCPU;
      const { x, indices } = args.inputs as { x: Info; indices: Info };
      const { axis, batchDims } = (args.attrs ?? {}) as { axis: number; batchDims?: number };
      const src = backend.data.get(x.dataId).values as tf.TypedArray;
      const ids = backend.data.get(indices.dataId).values as tf.TypedArray;
      if ((batchDims ?? 0) !== 0 || tf.util.parseAxisParam(axis, x.shape)[0] !== 0 || x.shape.length === 0) return null;
      if (!(src instanceof Float32Array || src instanceof Int32Array) || !(ids instanceof Int32Array || ids instanceof Float32Array)) return null;
      const rows = x.shape[0]!,
        inner = size(x.shape.slice(1));
      for (let r = 0; r < ids.length; r++) if (!(ids[r]! >= 0 && ids[r]! < rows && Number.isInteger(ids[r]!))) return null; // the original reports it
      // Every element is written: a float output comes from the pool (an embedding lookup's is one per step).
      const n = ids.length * inner;
      const out = src instanceof Float32Array ? buffers.fresh(n) : new Int32Array(n);
      for (let r = 0; r < ids.length; r++) {
        const o = ids[r]! * inner;
        if (inner >= 16) out.set(src.subarray(o, o + inner), r * inner);
        else for (let j = 0; j < inner; j++) out[r * inner + j] = src[o + j]!;
      }
      return backend.makeTensorInfo([...indices.shape, ...x.shape.slice(1)], x.dtype, out);
    },
    // The gradient of an embedding lookup (gather). tfjs's cpu kernel loops over every segment with a mask over
    // all rows (O(segments · rows · width): seconds for a 10k vocabulary); a scatter-add is one pass, and plain
    // JavaScript suffices.
    UnsortedSegmentSum(args) {
      const backend = args.backend as MathBackendCPU;
      const { x, segmentIds } = args.inputs as { x: Info; segmentIds: Info };
      const { numSegments } = (args.attrs ?? {}) as { numSegments: number };
      const k = segmentIds.shape.length;
      if (!f32(x) || k > x.shape.length || segmentIds.shape.some((d, i) => d !== x.shape[i])) return null;
      const ids = backend.data.get(segmentIds.dataId).values as Int32Array;
      const xv = values(backend, x);
      const inner = size(x.shape.slice(k));
      const out = buffers.zeroed(numSegments * inner);
      for (let r = 0; r < ids.length; r++) {
        const seg = ids[r]!;
        if (seg < 0 || seg >= numSegments) continue; // tfjs (and TensorFlow) drop out-of-range ids
        const o = seg * inner;
        const xo = r * inner;
        for (let j = 0; j < inner; j++) out[o + j]! += xv[xo + j]!;
      }
      return backend.makeTensorInfo([numSegments, ...x.shape.slice(k)], 'float32', out);
    },
  }),
};
