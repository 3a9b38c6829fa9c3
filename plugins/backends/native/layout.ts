/**
 * Kernels that only move values, as strided copies on the addon: Slice, PadV2, Unpack, SplitV, Concat, Pack,
 * Transpose and Tile (Slice and Tile of int32 and bool in JavaScript). Copies are exact.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { size, values, f32, type Info, type KernelArgs, type KernelFamily } from './kernel';
import { copyDims, copyValues, stridesOf } from './strides';

export const layoutFamily: KernelFamily = {
  overrides: ({ native, buffers }) => {
    /** Copies the box `begin`/`size` of x into a new contiguous tensor. */
    const box = (backend: MathBackendCPU, x: Info, begin: number[], sz: number[]): Info => {
      const xs = stridesOf(x.shape);
      const out = buffers.fresh(size(sz));
      const offset = begin.reduce((acc, b, d) => acc + b * xs[d]!, 0);
      if (out.length) native.copy(values(backend, x), offset, out, 0, copyDims(sz, xs, stridesOf(sz)));
      return backend.makeTensorInfo(sz, 'float32', out);
    };
    /** Writes each input into its slot of a new tensor of `outShape` along `axis` (concat; stack when `stack`). */
    const join = (backend: MathBackendCPU, xs: Info[], axis: number, outShape: number[], stack: boolean): Info => {
      const out = buffers.fresh(size(outShape));
      const os = stridesOf(outShape);
      let at = 0;
      for (const x of xs) {
        const shape = stack ? [...x.shape.slice(0, axis), 1, ...x.shape.slice(axis)] : [...x.shape];
        if (size(shape) > 0) native.copy(values(backend, x), 0, out, at * os[axis]!, copyDims(shape, stridesOf(shape), os));
        at += shape[axis]!;
      }
      return backend.makeTensorInfo(outShape, 'float32', out);
    };
    const list = (inputs: tf.NamedTensorInfoMap) => Object.values(inputs) as Info[];

    /**
     * box for int32 and bool values, copied in JavaScript row by row (tfjs's own slice of them reads and writes
     * element by element through TensorBuffer, allocating index arrays for each: G2P's id slices every step).
     */
    const boxInts = (backend: MathBackendCPU, x: Info, begin: number[], sz: number[]): Info | null => {
      const src = backend.data.get(x.dataId).values;
      if (!(src instanceof Int32Array || src instanceof Uint8Array)) return null;
      const out = new (src.constructor as Int32ArrayConstructor)(size(sz));
      if (out.length) {
        const xs = stridesOf(x.shape);
        const offset = begin.reduce((acc, b, d) => acc + b * xs[d]!, 0);
        copyValues(src, offset, out, 0, copyDims(sz, xs, stridesOf(sz)));
      }
      return backend.makeTensorInfo(sz, x.dtype, out);
    };

    return {
      Slice(args) {
        const { x } = args.inputs as { x: Info };
        const { begin, size: sz } = (args.attrs ?? {}) as { begin: number | number[]; size?: number | number[] };
        if (x.shape.length === 0) return null;
        const [b, z] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, sz);
        if (!f32(x)) return x.dtype === 'int32' || x.dtype === 'bool' ? boxInts(args.backend as MathBackendCPU, x, b, z) : null;
        return box(args.backend as MathBackendCPU, x, b, z);
      },
      // tf.pad, and the gradient of every slice (Slice's gradient pads dy back to x's shape): the constant
      // everywhere, then x as one strided copy into its box (tfjs's own PadV2 goes element by element through
      // TensorBuffer, allocating index arrays for each: ~2 GB of garbage a minute in G2P training, the slices of the
      // attention's fused q|k|v kernel).
      PadV2(args) {
        const backend = args.backend as MathBackendCPU;
        const { x } = args.inputs as { x: Info };
        const { paddings, constantValue } = args.attrs as { paddings: [number, number][]; constantValue: number };
        if (!f32(x) || x.shape.length === 0 || paddings.length !== x.shape.length || paddings.some(([a, b]) => a < 0 || b < 0)) return null;
        const outShape = x.shape.map((d, i) => paddings[i]![0] + d + paddings[i]![1]);
        const n = size(outShape);
        const value = Math.fround(Number(constantValue ?? 0));
        const out = Object.is(value, 0) ? buffers.zeroed(n) : buffers.fresh(n).fill(value);
        const os = stridesOf(outShape);
        const offset = paddings.reduce((acc, [before], d) => acc + before * os[d]!, 0);
        if (size(x.shape) > 0) native.copy(values(backend, x), 0, out, offset, copyDims(x.shape, stridesOf(x.shape), os));
        return backend.makeTensorInfo(outShape, 'float32', out);
      },
      Unpack(args): Info | null {
        const { value } = args.inputs as { value: Info };
        const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, value.shape)[0]!;
        if (!f32(value)) return null;
        const sz = [...value.shape];
        sz[axis] = 1;
        const outShape = value.shape.filter((_, d) => d !== axis);
        return Array.from({ length: value.shape[axis]! }, (_, i) => {
          const begin = value.shape.map((_, d) => (d === axis ? i : 0));
          const t = box(args.backend as MathBackendCPU, value, begin, sz);
          return { ...t, shape: outShape };
        }) as unknown as Info;
      },
      SplitV(args): Info | null {
        const { x } = args.inputs as { x: Info };
        const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
        if (!f32(x)) return null;
        const ax = tf.util.parseAxisParam(axis, x.shape)[0]!;
        const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
        let start = 0;
        return sizes.map((n) => {
          const begin = x.shape.map((_, d) => (d === ax ? start : 0));
          const sz = x.shape.map((s, d) => (d === ax ? n : s));
          start += n;
          return box(args.backend as MathBackendCPU, x, begin, sz);
        }) as unknown as Info;
      },
      Concat(args) {
        const xs = list(args.inputs).filter((t) => size(t.shape) > 0);
        if (xs.length === 0 || !f32(...xs)) return null;
        const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, xs[0]!.shape)[0]!;
        const outShape = tf.backend_util.computeOutShape(
          xs.map((t) => t.shape),
          axis,
        );
        return join(args.backend as MathBackendCPU, xs, axis, outShape, false);
      },
      Pack(args) {
        const xs = list(args.inputs);
        if (xs.length === 0 || !f32(...xs) || xs.some((t) => t.shape.join() !== xs[0]!.shape.join())) return null;
        const rank = xs[0]!.shape.length + 1;
        const axis = tf.util.parseAxisParam((args.attrs as { axis: number }).axis, new Array(rank).fill(1))[0]!;
        const outShape = [...xs[0]!.shape.slice(0, axis), xs.length, ...xs[0]!.shape.slice(axis)];
        return join(args.backend as MathBackendCPU, xs, axis, outShape, true);
      },
      Transpose(args) {
        const backend = args.backend as MathBackendCPU;
        const { x } = args.inputs as { x: Info };
        const { perm } = args.attrs as { perm: number[] };
        if (!f32(x) || size(x.shape) === 0) return null;
        const outShape = perm.map((p) => x.shape[p]!);
        const xs = stridesOf(x.shape);
        const out = buffers.fresh(size(outShape));
        native.copy(
          values(backend, x),
          0,
          out,
          0,
          copyDims(
            outShape,
            perm.map((p) => xs[p]!),
            stridesOf(outShape),
          ),
        );
        return backend.makeTensorInfo(outShape, 'float32', out);
      },
      // tf.where broadcasts its operands with Tile, and masks are tiled over heads: the output viewed as
      // [r0, d0, r1, d1, ...] is one strided copy of x with stride 0 over every r axis.
      Tile(args: KernelArgs) {
        const backend = args.backend as MathBackendCPU;
        const { x } = args.inputs as { x: Info };
        const { reps } = args.attrs as { reps: number[] };
        const outShape = x.shape.map((d, i) => d * reps[i]!);
        if (size(outShape) === 0 || x.dtype === 'string') return null;
        const xs = stridesOf(x.shape);
        const view = x.shape.flatMap((d, i) => [reps[i]!, d]);
        const dims = copyDims(
          view,
          x.shape.flatMap((_, i) => [0, xs[i]!]),
          stridesOf(view),
        );
        const src = backend.data.get(x.dataId).values as tf.TypedArray;
        if (f32(x) && dims.length <= 24) {
          const out = buffers.fresh(size(outShape));
          native.copy(src as Float32Array, 0, out, 0, dims);
          return backend.makeTensorInfo(outShape, x.dtype, out);
        }
        if (!(src instanceof Float32Array || src instanceof Int32Array || src instanceof Uint8Array)) return null;
        const out = new (src.constructor as Float32ArrayConstructor)(size(outShape));
        copyValues(src, 0, out, 0, dims);
        return backend.makeTensorInfo(outShape, x.dtype, out);
      },
    };
  },
};
