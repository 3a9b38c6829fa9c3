/**
 * Elementwise float32 maps on the addon: binary ops with broadcasting (as strides), unary ops, relu's gradient and
 * the tanh GELU (fused kernels), and the bool → float32 Cast in JavaScript.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import { floatValues, size, values, f32, type Info, type KernelArgs, type KernelFamily, type NativeKernel } from './kernel';
import { broadcastDims } from './strides';

/** Codes of native/src/elementwise.h's Binary and Unary enums. */
const BINARY: Record<string, number> = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, Maximum: 4, Minimum: 5, SquaredDifference: 6 };
const RELU_GRAD = 7; // Binary::ReluGrad: not a tfjs kernel, the fused kernel FUSED_KERNELS.reluGrad
const UNARY: Record<string, number> = {
  Relu: 0,
  Step: 1,
  Sqrt: 2,
  Square: 3,
  Exp: 4,
  Log: 5,
  Neg: 6,
  Tanh: 7,
  Sigmoid: 8,
  Abs: 9,
  Rsqrt: 10,
  Reciprocal: 11,
  Erf: 12,
};

export const elementwiseFamily: KernelFamily = {
  overrides: ({ native, buffers }) => {
    const binary =
      (code: number): NativeKernel =>
      (args) => {
        const backend = args.backend as MathBackendCPU;
        const { a, b } = args.inputs as { a: Info; b: Info };
        if (!f32(a, b) || size(a.shape) === 0 || size(b.shape) === 0) return null;
        const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
        const out = buffers.fresh(size(outShape));
        native.binary(code, values(backend, a), values(backend, b), out, Float64Array.from(broadcastDims(a.shape, b.shape, outShape).flat()));
        return backend.makeTensorInfo(outShape, 'float32', out);
      };
    const unary =
      (code: number): NativeKernel =>
      (args) => {
        const backend = args.backend as MathBackendCPU;
        const { x } = args.inputs as { x: Info };
        if (!f32(x) || size(x.shape) === 0) return null;
        const out = buffers.fresh(size(x.shape));
        native.unary(code, values(backend, x), out, Number((args.attrs as { alpha?: number } | undefined)?.alpha ?? 0));
        return backend.makeTensorInfo(x.shape, 'float32', out);
      };
    return {
      ...Object.fromEntries(Object.entries(BINARY).map(([name, code]) => [name, binary(code)])),
      ...Object.fromEntries(Object.entries(UNARY).map(([name, code]) => [name, unary(code)])),
      // Bool → float32: tfjs keeps the Uint8Array under dtype float32, which every later float kernel then takes
      // through its slow generic path (dropout masks); convert the storage once.
      Cast(args: KernelArgs) {
        const backend = args.backend as MathBackendCPU;
        const { x } = args.inputs as { x: Info };
        const { dtype } = args.attrs as { dtype: string };
        const src = backend.data.get(x.dataId).values;
        if (dtype !== 'float32' || x.dtype !== 'bool' || !(src instanceof Uint8Array)) return null;
        const out = buffers.fresh(src.length);
        out.set(src);
        return backend.makeTensorInfo(x.shape, 'float32', out);
      },
    };
  },
  fused: ({ native, buffers }) => ({
    // The composed tanh GELU's nine kernels (gelu.ts), each the same native map in the same order: the same bits,
    // without nine trips through tfjs's engine and their scalar tensors (54 a token in GPT decoding at batch 1).
    [FUSED_KERNELS.geluTanh]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { x } = args.inputs as { x: Info };
      if (x.dtype !== 'float32') throw new Error(`${FUSED_KERNELS.geluTanh}: x is ${x.dtype}, not float32`);
      const n = size(x.shape);
      const out = buffers.fresh(n);
      if (n === 0) return backend.makeTensorInfo(x.shape, 'float32', out);
      const xv = floatValues(backend, x);
      const [s1, s2] = [buffers.fresh(n), buffers.fresh(n)];
      const [both, xScalar, scalarX] = [[[n, 1, 1]], [[n, 1, 0]], [[n, 0, 1]]].map((d) => Float64Array.from(d.flat()));
      const c = (v: number) => Float32Array.of(v); // a number as tfjs makes it a float32 scalar
      const [mul, add] = [BINARY.Multiply!, BINARY.Add!];
      native.binary(mul, xv, xv, s1, both); // x·x
      native.binary(mul, s1, xv, s2, both); // (x·x)·x
      native.binary(mul, c(0.044715), s2, s1, scalarX);
      native.binary(add, xv, s1, s2, both);
      native.binary(mul, c(Math.sqrt(2 / Math.PI)), s2, s1, scalarX);
      native.unary(UNARY.Tanh!, s1, s2, 0);
      native.binary(add, c(1), s2, s1, scalarX);
      native.binary(mul, xv, c(0.5), s2, xScalar); // x·½
      native.binary(mul, s2, s1, out, both);
      buffers.release(s1);
      buffers.release(s2);
      return backend.makeTensorInfo(x.shape, 'float32', out);
    },
    [FUSED_KERNELS.reluGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { dy, y } = args.inputs as { dy: Info; y: Info };
      if (size(dy.shape) !== size(y.shape)) throw new Error(`${FUSED_KERNELS.reluGrad}: dy [${dy.shape}] and y [${y.shape}] differ in size`);
      const out = buffers.fresh(size(y.shape));
      native.binary(RELU_GRAD, floatValues(backend, dy), floatValues(backend, y), out, Float64Array.from([size(y.shape), 1, 1]));
      return backend.makeTensorInfo(y.shape, 'float32', out);
    },
  }),
};
