/**
 * loom's native kernels (native/, a C++ N-API addon built by node-gyp at install) installed into tfjs's `cpu`
 * backend: they replace the hot kernels (matrix products, convolutions and their gradients, pooling, softmax)
 * and read and write the backend's Float32Arrays in place, without copies. Cases a native kernel does not cover
 * (other dtypes, NCHW, unusual broadcasting or activations) go to the original JavaScript kernel.
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { FUSED_KERNELS } from '../../core/kernels';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

interface Addon {
  batchMatMul(a: Float32Array, b: Float32Array, c: Float32Array, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean, strideA: number, strideB: number, bias: Float32Array | null, relu: boolean): void;
  conv2d(x: Float32Array, w: Float32Array, y: Float32Array, bias: Float32Array | null, relu: boolean, ...shape: number[]): void;
  conv2dBackpropInput(dy: Float32Array, w: Float32Array, dx: Float32Array, ...shape: number[]): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, ...shape: number[]): void;
  pool(x: Float32Array, y: Float32Array, isMax: boolean, ...shape: number[]): void;
  maxPoolGrad(dy: Float32Array, x: Float32Array, dx: Float32Array, ...shape: number[]): void;
  avgPoolGrad(dy: Float32Array, dx: Float32Array, ...shape: number[]): void;
  softmax(x: Float32Array, y: Float32Array, rows: number, cols: number): void;
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, dims: Float64Array): void;
  unary(op: number, x: Float32Array, y: Float32Array, alpha: number): void;
  sum(x: Float32Array, y: Float32Array, outer: number, reduce: number, inner: number): void;
  adam(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, p2: Float32Array, m2: Float32Array, v2: Float32Array, lr: number, beta1: number, beta2: number, epsilon: number, c1: number, c2: number): void;
  info(): { simd: string; threads: number };
}

const ADDON_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native/build/Release/loom_native.node');

let addon: Addon | null | undefined;
let loadError = '';

/** Loads the addon once; null (with the reason kept) when it was not built or cannot load here. */
export function loadAddon(): Addon | null {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
    } catch (e) {
      addon = null;
      loadError = `native kernels not available (${(e as Error).message.split('\n')[0]}); build them with \`npm run build:native\``;
    }
  }
  return addon;
}

export function nativeAddonInfo(): { loaded: boolean; simd: string; threads: number; reason?: string } {
  const a = loadAddon();
  return a ? { loaded: true, ...a.info() } : { loaded: false, simd: 'none', threads: 0, reason: loadError };
}

type KernelArgs = { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: tf.KernelBackend };
type Info = tf.TensorInfo;
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function values(backend: MathBackendCPU, t: Info): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

/** Flattens tfjs's Conv2DInfo into the 15 integers the addon takes (see native/src/conv.h). */
function shapeArgs(c: tf.backend_util.Conv2DInfo): number[] {
  return [
    c.batchSize, c.inHeight, c.inWidth, c.inChannels, c.filterHeight, c.filterWidth, c.outChannels,
    c.outHeight, c.outWidth, c.strideHeight, c.strideWidth, c.padInfo.top, c.padInfo.left, c.dilationHeight, c.dilationWidth,
  ];
}

/** Codes of native/src/elementwise.h's Binary and Unary enums. */
const BINARY: Record<string, number> = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, Maximum: 4, Minimum: 5, SquaredDifference: 6 };
const UNARY: Record<string, number> = { Relu: 0, Step: 1, Sqrt: 2, Square: 3, Exp: 4, Log: 5, Neg: 6, Tanh: 7, Sigmoid: 8, Abs: 9, Rsqrt: 10, Reciprocal: 11 };

/**
 * Broadcasting as strides: [size, strideA, strideB] per output dimension (stride 0 where an operand is broadcast),
 * with adjacent dimensions merged when both operands stay contiguous across them.
 */
export function broadcastDims(aShape: readonly number[], bShape: readonly number[], outShape: readonly number[]): number[][] {
  const r = outShape.length;
  const strides = (shape: readonly number[]) => {
    const s = new Array<number>(r).fill(0);
    let acc = 1;
    for (let d = r - 1; d >= 0; d--) {
      const dim = shape[d - (r - shape.length)] ?? 1;
      s[d] = dim === 1 ? 0 : acc;
      acc *= dim;
    }
    return s;
  };
  const sa = strides(aShape), sb = strides(bShape);
  const dims: number[][] = [];
  for (let d = 0; d < r; d++) {
    if (outShape[d] === 1) continue;
    const last = dims.at(-1);
    if (last && last[1] === sa[d]! * outShape[d]! && last[2] === sb[d]! * outShape[d]!) {
      last[0]! *= outShape[d]!;
      last[1] = sa[d]!;
      last[2] = sb[d]!;
    } else dims.push([outShape[d]!, sa[d]!, sb[d]!]);
  }
  return dims.length ? dims : [[1, 0, 0]];
}

/** Native implementations; each returns null to hand the call to the original kernel. */
function nativeKernels(native: Addon): Record<string, (args: KernelArgs) => Info | null> {
  // float32 tensors whose storage is a Float32Array (tfjs's cast from bool keeps a Uint8Array under dtype float32).
  const f32 = (...ts: (Info | undefined)[]) => ts.every((t) => !t || (t.dtype === 'float32' && (tf.backend() as MathBackendCPU).data.get(t.dataId)?.values instanceof Float32Array));

  function matMul(args: KernelArgs, fused: boolean): Info | null {
    const backend = args.backend as MathBackendCPU;
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, Info | undefined>;
    const { transposeA, transposeB, activation } = (args.attrs ?? {}) as { transposeA: boolean; transposeB: boolean; activation?: string };
    if (!a || !b || !f32(a, b, bias) || preluActivationWeights) return null;
    if (fused && activation !== 'linear' && activation !== 'relu') return null;
    const ra = a.shape.length, rb = b.shape.length;
    const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
    const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
    const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
    if ((transposeB ? b.shape[rb - 1] : b.shape[rb - 2]) !== k) return null;
    const batchA = a.shape.slice(0, -2), batchB = b.shape.slice(0, -2);
    const ba = size(batchA), bb = size(batchB);
    let outBatch: number[];
    if (ba === bb && batchA.join() === batchB.join()) outBatch = batchA;
    else if (bb === 1) outBatch = batchA.length >= batchB.length ? batchA : [...batchB.slice(0, batchB.length - batchA.length), ...batchA];
    else if (ba === 1) outBatch = batchB.length >= batchA.length ? batchB : [...batchA.slice(0, batchA.length - batchB.length), ...batchB];
    else return null; // general broadcasting: the original kernel
    if (bias && size(bias.shape) !== n) return null;
    const batch = Math.max(ba, bb);
    const out = new Float32Array(batch * m * n);
    native.batchMatMul(values(backend, a), values(backend, b), out, batch, m, n, k, transposeA, transposeB, ba === 1 ? 0 : m * k, bb === 1 ? 0 : k * n, bias ? values(backend, bias) : null, fused && activation === 'relu');
    return backend.makeTensorInfo([...outBatch, m, n], 'float32', out);
  }

  function conv(args: KernelArgs, fused: boolean): Info | null {
    const backend = args.backend as MathBackendCPU;
    const { x, filter, bias, preluActivationWeights } = args.inputs as Record<string, Info | undefined>;
    const at = (args.attrs ?? {}) as Record<string, never>;
    if (!x || !filter || !f32(x, filter, bias) || preluActivationWeights || at.dataFormat === 'NCHW') return null;
    if (fused && at.activation !== 'linear' && at.activation !== 'relu') return null;
    const info = tf.backend_util.computeConv2DInfo(x.shape as never, filter.shape as never, at.strides, at.dilations ?? 1, at.pad, at.dimRoundingMode, false, 'channelsLast');
    if (bias && size(bias.shape) !== info.outChannels) return null;
    const out = new Float32Array(size(info.outShape));
    native.conv2d(values(backend, x), values(backend, filter), out, bias ? values(backend, bias) : null, fused && at.activation === 'relu', ...shapeArgs(info));
    return backend.makeTensorInfo(info.outShape, 'float32', out);
  }

  function pool(args: KernelArgs, isMax: boolean): Info | null {
    const backend = args.backend as MathBackendCPU;
    const { x } = args.inputs as { x: Info };
    const at = (args.attrs ?? {}) as Record<string, never>;
    if (!f32(x) || x.shape.length !== 4) return null;
    const info = tf.backend_util.computePool2DInfo(x.shape as never, at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode);
    const out = new Float32Array(size(info.outShape));
    native.pool(values(backend, x), out, isMax, ...shapeArgs(info));
    return backend.makeTensorInfo(info.outShape, 'float32', out);
  }

  const binary = (code: number) => (args: KernelArgs): Info | null => {
    const backend = args.backend as MathBackendCPU;
    const { a, b } = args.inputs as { a: Info; b: Info };
    if (!f32(a, b) || size(a.shape) === 0 || size(b.shape) === 0) return null;
    const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const out = new Float32Array(size(outShape));
    native.binary(code, values(backend, a), values(backend, b), out, Float64Array.from(broadcastDims(a.shape, b.shape, outShape).flat()));
    return backend.makeTensorInfo(outShape, 'float32', out);
  };
  const unary = (code: number) => (args: KernelArgs): Info | null => {
    const backend = args.backend as MathBackendCPU;
    const { x } = args.inputs as { x: Info };
    if (!f32(x) || size(x.shape) === 0) return null;
    const out = new Float32Array(size(x.shape));
    native.unary(code, values(backend, x), out, Number((args.attrs as { alpha?: number } | undefined)?.alpha ?? 0));
    return backend.makeTensorInfo(x.shape, 'float32', out);
  };

  return {
    ...Object.fromEntries(Object.entries(BINARY).map(([name, code]) => [name, binary(code)])),
    ...Object.fromEntries(Object.entries(UNARY).map(([name, code]) => [name, unary(code)])),
    Sum(args) {
      const backend = args.backend as MathBackendCPU;
      const { x } = args.inputs as { x: Info };
      const { axis, keepDims } = (args.attrs ?? {}) as { axis: number | number[]; keepDims: boolean };
      if (!f32(x) || size(x.shape) === 0) return null;
      const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
      if (axes.length === 0 || axes.some((v, i) => i > 0 && v !== axes[i - 1]! + 1)) return null; // not one block
      const first = axes[0]!, last = axes.at(-1)!;
      const outer = size(x.shape.slice(0, first)), reduce = size(x.shape.slice(first, last + 1)), inner = size(x.shape.slice(last + 1));
      const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
      const out = new Float32Array(outer * inner);
      native.sum(values(backend, x), out, outer, reduce, inner);
      return backend.makeTensorInfo(outShape, 'float32', out);
    },
    BatchMatMul: (args) => matMul(args, false),
    _FusedMatMul: (args) => matMul(args, true),
    Conv2D: (args) => conv(args, false),
    FusedConv2D: (args) => conv(args, true),
    Conv2DBackpropInput(args) {
      const backend = args.backend as MathBackendCPU;
      const { dy, filter } = args.inputs as { dy: Info; filter: Info };
      const at = (args.attrs ?? {}) as Record<string, never>;
      if (!f32(dy, filter) || at.dataFormat === 'NCHW') return null;
      const info = tf.backend_util.computeConv2DInfo(at.inputShape, filter.shape as never, at.strides, 1, at.pad, at.dimRoundingMode, false, 'channelsLast');
      const out = new Float32Array(size(info.inShape));
      native.conv2dBackpropInput(values(backend, dy), values(backend, filter), out, ...shapeArgs(info));
      return backend.makeTensorInfo(info.inShape, 'float32', out);
    },
    Conv2DBackpropFilter(args) {
      const backend = args.backend as MathBackendCPU;
      const { x, dy } = args.inputs as { x: Info; dy: Info };
      const at = (args.attrs ?? {}) as Record<string, never>;
      if (!f32(x, dy) || at.dataFormat === 'NCHW') return null;
      const info = tf.backend_util.computeConv2DInfo(x.shape as never, at.filterShape, at.strides, 1, at.pad, at.dimRoundingMode, false, 'channelsLast');
      const out = new Float32Array(size(info.filterShape));
      native.conv2dBackpropFilter(values(backend, x), values(backend, dy), out, ...shapeArgs(info));
      return backend.makeTensorInfo(info.filterShape, 'float32', out);
    },
    MaxPool: (args) => pool(args, true),
    AvgPool: (args) => pool(args, false),
    MaxPoolGrad(args) {
      const backend = args.backend as MathBackendCPU;
      const { dy, input } = args.inputs as { dy: Info; input: Info };
      const at = (args.attrs ?? {}) as Record<string, never>;
      if (!f32(dy, input)) return null;
      const info = tf.backend_util.computePool2DInfo(input.shape as never, at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode);
      const out = new Float32Array(size(input.shape));
      native.maxPoolGrad(values(backend, dy), values(backend, input), out, ...shapeArgs(info));
      return backend.makeTensorInfo(input.shape, 'float32', out);
    },
    AvgPoolGrad(args) {
      const backend = args.backend as MathBackendCPU;
      const { dy, input } = args.inputs as { dy: Info; input: Info };
      const at = (args.attrs ?? {}) as Record<string, never>;
      if (!f32(dy, input)) return null;
      const info = tf.backend_util.computePool2DInfo(input.shape as never, at.filterSize, at.strides, 1, at.pad);
      const out = new Float32Array(size(input.shape));
      native.avgPoolGrad(values(backend, dy), out, ...shapeArgs(info));
      return backend.makeTensorInfo(input.shape, 'float32', out);
    },
    Softmax(args) {
      const backend = args.backend as MathBackendCPU;
      const { logits } = args.inputs as { logits: Info };
      const { dim } = (args.attrs ?? {}) as { dim: number };
      const rank = logits.shape.length;
      if (!f32(logits) || rank === 0 || (dim !== -1 && dim !== rank - 1)) return null;
      const cols = logits.shape[rank - 1]!;
      const out = new Float32Array(size(logits.shape));
      native.softmax(values(backend, logits), out, size(logits.shape) / cols, cols);
      return backend.makeTensorInfo(logits.shape, 'float32', out);
    },
  };
}

/** The original cpu kernels, kept to delegate to and for the property tests' reference. */
export const originalKernels = new Map<string, tf.KernelConfig>();

/**
 * Replaces the hot kernels of the `cpu` backend with native ones. Idempotent; never throws: when the addon is
 * missing it returns `installed: []` and the reason.
 */
export function installNativeKernels(): { installed: string[]; reason?: string } {
  const a = loadAddon();
  if (!a) return { installed: [], reason: loadError };
  const installed: string[] = [];
  for (const [name, impl] of Object.entries(nativeKernels(a))) {
    if (!originalKernels.has(name)) {
      const original = tf.getKernel(name, 'cpu');
      if (!original) continue;
      originalKernels.set(name, original);
      tf.unregisterKernel(name, 'cpu');
      tf.registerKernel({
        ...original,
        kernelFunc: ((args: KernelArgs) => impl(args) ?? original.kernelFunc(args as never)) as tf.KernelFunc,
      });
    }
    installed.push(name);
  }
  if (!tf.getKernel(FUSED_KERNELS.adam, 'cpu')) {
    tf.registerKernel({ kernelName: FUSED_KERNELS.adam, backendName: 'cpu', kernelFunc: ((args: KernelArgs) => fusedAdam(a, args)) as tf.KernelFunc });
  }
  installed.push(FUSED_KERNELS.adam);
  return { installed };
}

/** The fused Adam step of core/kernels.ts: one pass over a tensor instead of a dozen elementwise kernels. */
function fusedAdam(native: Addon, args: KernelArgs): Info[] {
  const backend = args.backend as MathBackendCPU;
  const { param, grad, m, v } = args.inputs as Record<string, Info>;
  const at = args.attrs as Record<string, number>;
  const n = size(param!.shape);
  const out = [new Float32Array(n), new Float32Array(n), new Float32Array(n)] as const;
  const arr = (t: Info) => {
    const v = backend.data.get(t.dataId).values;
    return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
  };
  native.adam(arr(param!), arr(grad!), arr(m!), arr(v!), out[0], out[1], out[2], at.lr!, at.beta1!, at.beta2!, at.epsilon!, at.c1!, at.c2!);
  return out.map((o) => backend.makeTensorInfo(param!.shape, 'float32', o));
}

/** Puts tfjs's own JavaScript kernels back (selecting the plain `cpu` backend does this). */
export function uninstallNativeKernels(): void {
  for (const [name, original] of originalKernels) {
    tf.unregisterKernel(name, 'cpu');
    tf.registerKernel(original);
  }
  originalKernels.clear();
  if (tf.getKernel(FUSED_KERNELS.adam, 'cpu')) tf.unregisterKernel(FUSED_KERNELS.adam, 'cpu');
}
