/**
 * The fused int8 kernels of core/quantization.ts (`LoomInt8Linear`, `LoomInt8Conv2D`) on the addon's integer GEMM
 * (native/src/int8.cc: AVX-512 VNNI, AVX2 or scalar). tfjs has no int8 tensors, so a quantized kernel is a float32
 * tensor of integers; its int8 copy, transposed to one row per output channel and packed for the GEMM's micro-kernel
 * (`int8Pack`, with each row's sum for the zero point's correction), is made once per tensor and kept while the
 * tensor lives (a WeakMap on its dataId, which a variable's `assign` replaces).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import type { Addon } from './addon';
import { floatValues, shapeArgs, size, type Info, type KernelArgs, type KernelFamily } from './kernel';

const packedCache = new WeakMap<object, Int8Array>();

/** kernel [..., out] (integers in [−128, 127]) as int8 rows [out × Π(...)], packed by the addon. */
function packed(native: Addon, backend: MathBackendCPU, kernel: Info): Int8Array {
  const cached = packedCache.get(kernel.dataId);
  if (cached) return cached;
  const v = floatValues(backend, kernel);
  const out = kernel.shape.at(-1)!,
    depth = v.length / out;
  const rows = new Int8Array(v.length);
  for (let p = 0; p < depth; p++) for (let j = 0; j < out; j++) rows[j * depth + p] = v[p * out + j]!;
  const result = native.int8Pack(out, depth, rows);
  packedCache.set(kernel.dataId, result);
  return result;
}

interface QuantAttrs {
  inputScale: number;
  inputZeroPoint: number;
  relu: boolean;
}

export const int8Family: KernelFamily = {
  fused: ({ native, buffers }) => ({
    [FUSED_KERNELS.int8Linear]: (args: KernelArgs) => {
      const backend = args.backend as MathBackendCPU;
      const { x, kernel, scale, bias } = args.inputs as { x: Info; kernel: Info; scale: Info; bias?: Info };
      const { inputScale, inputZeroPoint, relu } = args.attrs as unknown as QuantAttrs;
      const [m, k] = x.shape as [number, number];
      const n = kernel.shape[1]!;
      if (x.shape.length !== 2 || kernel.shape.length !== 2 || kernel.shape[0] !== k || size(scale.shape) !== n || (bias && size(bias.shape) !== n)) {
        throw new Error(
          `${FUSED_KERNELS.int8Linear}: x [${x.shape}], kernel [${kernel.shape}], scale [${scale.shape}] and bias [${bias?.shape ?? ''}] do not fit`,
        );
      }
      const y = buffers.fresh(m * n);
      const b = bias ? floatValues(backend, bias) : null;
      native.int8Linear(m, n, k, floatValues(backend, x), inputScale, inputZeroPoint, packed(native, backend, kernel), floatValues(backend, scale), b, relu, y);
      return backend.makeTensorInfo([m, n], 'float32', y);
    },
    [FUSED_KERNELS.int8Conv2d]: (args: KernelArgs) => {
      const backend = args.backend as MathBackendCPU;
      const { x, kernel, scale, bias } = args.inputs as { x: Info; kernel: Info; scale: Info; bias?: Info };
      const at = args.attrs as unknown as QuantAttrs & { strides: [number, number]; pad: 'valid' | 'same' };
      const co = kernel.shape[3]!;
      if (
        x.shape.length !== 4 ||
        kernel.shape.length !== 4 ||
        kernel.shape[2] !== x.shape[3] ||
        size(scale.shape) !== co ||
        (bias && size(bias.shape) !== co)
      ) {
        throw new Error(
          `${FUSED_KERNELS.int8Conv2d}: x [${x.shape}], kernel [${kernel.shape}], scale [${scale.shape}] and bias [${bias?.shape ?? ''}] do not fit`,
        );
      }
      const info = tf.backend_util.computeConv2DInfo(x.shape as never, kernel.shape as never, at.strides, 1, at.pad, undefined, false, 'channelsLast');
      const y = buffers.fresh(size(info.outShape));
      const b = bias ? floatValues(backend, bias) : null;
      native.int8Conv2d(
        floatValues(backend, x),
        at.inputScale,
        at.inputZeroPoint,
        packed(native, backend, kernel),
        floatValues(backend, scale),
        b,
        at.relu,
        y,
        ...shapeArgs(info),
      );
      return backend.makeTensorInfo(info.outShape, 'float32', y);
    },
  }),
};
