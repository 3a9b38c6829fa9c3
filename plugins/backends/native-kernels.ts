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
  batchMatMul(a: Float32Array, b: Float32Array, c: Float32Array, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean, strideA: number, strideB: number, bias: Float32Array | null, relu: boolean, bColSums?: Float32Array): void;
  conv2d(x: Float32Array, w: Float32Array, y: Float32Array, bias: Float32Array | null, relu: boolean, ...shape: number[]): void;
  conv2dBackpropInput(dy: Float32Array, w: Float32Array, dx: Float32Array, ...shape: number[]): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, ...shape: number[]): void;
  pool(x: Float32Array, y: Float32Array, isMax: boolean, ...shape: number[]): void;
  maxPoolGrad(dy: Float32Array, x: Float32Array, dx: Float32Array, ...shape: number[]): void;
  avgPoolGrad(dy: Float32Array, dx: Float32Array, ...shape: number[]): void;
  softmax(x: Float32Array, y: Float32Array, rows: number, cols: number): void;
  crossEntropy(logits: Float32Array, labels: Int32Array, loss: Float32Array, rows: number, cols: number, eps: number): void;
  crossEntropyGrad(logits: Float32Array, labels: Int32Array, scale: Float32Array, dlogits: Float32Array, rows: number, cols: number, eps: number): void;
  softmaxGrad(dy: Float32Array, y: Float32Array, dx: Float32Array, rows: number, cols: number): void;
  layerNorm(x: Float32Array, gamma: Float32Array, beta: Float32Array, y: Float32Array, rows: number, cols: number, epsilon: number): void;
  attention(qkv: Float32Array, keep: Float32Array | null, context: Float32Array, probs: Float32Array, batch: number, time: number, heads: number, dk: number, causal: boolean): void;
  attentionGrad(dcontext: Float32Array, qkv: Float32Array, keep: Float32Array | null, probs: Float32Array, dqkv: Float32Array, batch: number, time: number, heads: number, dk: number, causal: boolean): void;
  layerNormGrad(dy: Float32Array, x: Float32Array, gamma: Float32Array, dx: Float32Array, dgamma: Float32Array, dbeta: Float32Array, rows: number, cols: number, epsilon: number): void;
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, dims: Float64Array): void;
  unary(op: number, x: Float32Array, y: Float32Array, alpha: number): void;
  sum(x: Float32Array, y: Float32Array, outer: number, reduce: number, inner: number): void;
  adam(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, p2: Float32Array, m2: Float32Array, v2: Float32Array, lr: number, beta1: number, beta2: number, epsilon: number, c1: number, c2: number): void;
  copy(src: Float32Array, srcOffset: number, dst: Float32Array, dstOffset: number, dims: Float64Array): void;
  info(): { simd: string; threads: number };
}

const ADDON_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native/build/Release/loom_native.node');

let addon: Addon | null | undefined;
let loadError = '';

/** Loads the addon once; null (with the reason kept) when it was not built or cannot load here. */
export function loadAddon(): Addon | null {
  if (process.env.LOOM_NATIVE === '0') {
    loadError = 'disabled by LOOM_NATIVE=0';
    return null;
  }
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
/** Whether a bias of this shape broadcasts as one row of `n` values over the last axis ([n], [1, n], ...). */
const isRow = (shape: readonly number[], n: number) => shape.every((d, i) => d === (i === shape.length - 1 ? n : 1)) && shape.length > 0;

function values(backend: MathBackendCPU, t: Info): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

/** A tensor's values as a Float32Array, converted when the backend stores them otherwise (a float32 cast of a bool). */
function floatValues(backend: MathBackendCPU, t: Info): Float32Array {
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
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
const RELU_GRAD = 7; // Binary::ReluGrad: not a tfjs kernel, the fused kernel FUSED_KERNELS.reluGrad
const UNARY: Record<string, number> = { Relu: 0, Step: 1, Sqrt: 2, Square: 3, Exp: 4, Log: 5, Neg: 6, Tanh: 7, Sigmoid: 8, Abs: 9, Rsqrt: 10, Reciprocal: 11, Erf: 12 };

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

const stridesOf = (shape: readonly number[]) => {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= shape[d]!;
  }
  return s;
};

/** [size, srcStride, dstStride] per dimension, dropping size-1 dimensions and merging contiguous neighbours. */
export function copyDims(shape: readonly number[], ss: readonly number[], ds: readonly number[]): Float64Array {
  const dims: number[][] = [];
  shape.forEach((n, d) => {
    if (n === 1) return;
    const last = dims.at(-1);
    if (last && last[1] === ss[d]! * n && last[2] === ds[d]! * n) {
      last[0]! *= n;
      last[1] = ss[d]!;
      last[2] = ds[d]!;
    } else dims.push([n, ss[d]!, ds[d]!]);
  });
  return Float64Array.from((dims.length ? dims : [[1, 1, 1]]).flat());
}

/**
 * Visits a broadcast binary op's output row by row: `row(i, oa, ob, n, sa, sb)` covers output elements i..i+n-1,
 * reading the operands from flat offsets oa and ob with strides sa and sb (broadcastDims' [size, strideA, strideB]
 * triples, walked with an odometer: no per-element index arithmetic).
 */
function forEachRow(dims: number[][], row: (i: number, oa: number, ob: number, n: number, sa: number, sb: number) => void): void {
  const [n, sa, sb] = dims.at(-1)!;
  const outer = dims.slice(0, -1);
  const idx = new Array<number>(outer.length).fill(0);
  let oa = 0, ob = 0, i = 0;
  for (;;) {
    row(i, oa, ob, n!, sa!, sb!);
    i += n!;
    let d = outer.length - 1;
    for (; d >= 0; d--) {
      const [size, da, db] = outer[d]!;
      oa += da!;
      ob += db!;
      if (++idx[d]! < size!) break;
      oa -= da! * size!;
      ob -= db! * size!;
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

type Row = (x: ArrayLike<number>, y: ArrayLike<number>, out: Uint8Array, i: number, oa: number, ob: number, n: number, sa: number, sb: number) => void;
/**
 * Comparisons and logical ops (tfjs's cpu backend computes every element's broadcast index separately), one
 * loop per op so that each stays monomorphic.
 */
const PREDICATES: Record<string, Row> = {
  Equal: (x, y, o, i, a, b, n, sa, sb) => { for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! === y[b + j * sb]! ? 1 : 0; },
  NotEqual: (x, y, o, i, a, b, n, sa, sb) => { for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! !== y[b + j * sb]! ? 1 : 0; },
  Greater: (x, y, o, i, a, b, n, sa, sb) => { for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! > y[b + j * sb]! ? 1 : 0; },
  GreaterEqual: (x, y, o, i, a, b, n, sa, sb) => { for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! >= y[b + j * sb]! ? 1 : 0; },
  Less: (x, y, o, i, a, b, n, sa, sb) => { for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! < y[b + j * sb]! ? 1 : 0; },
  LessEqual: (x, y, o, i, a, b, n, sa, sb) => { for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! <= y[b + j * sb]! ? 1 : 0; },
  LogicalAnd: (x, y, o, i, a, b, n, sa, sb) => { for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! && y[b + j * sb]! ? 1 : 0; },
  LogicalOr: (x, y, o, i, a, b, n, sa, sb) => { for (let j = 0; j < n; j++) o[i + j] = x[a + j * sa]! || y[b + j * sb]! ? 1 : 0; },
};

/**
 * Output buffers of the native kernels, reused once tfjs releases them. A training step allocates gigabytes of
 * short-lived Float32Arrays; fresh ones cost page faults and zeroing, and every 64 MB of them makes V8 start a
 * full garbage collection (a third of a Transformer step's time here). A buffer goes back to the pool when the
 * cpu backend disposes its data, unless it ever left the backend (dataSync/data hand out the live array, so those
 * are never reused) or is a view. At most `limitBytes` are held; past that the buffers released longest ago are
 * dropped first, so that a new workload (another model in the same process) is not starved by sizes it never asks for.
 */
export class BufferPool {
  private readonly free = new Map<number, Float32Array[]>();
  /** The pooled arrays in the order they were released (a Map keeps insertion order): the oldest are dropped first. */
  private readonly byAge = new Map<Float32Array, true>();
  private readonly ours = new WeakSet<Float32Array>();
  private readonly escaped = new WeakSet<object>();
  private held = 0;
  /** How many allocations were served from the pool (for tests and benchmarks). */
  reused = 0;
  constructor(private readonly limitBytes = 512 * 2 ** 20, private readonly minLength = 1024) {}

  /** A buffer of n floats whose contents are arbitrary: for kernels that write every element. */
  fresh(n: number): Float32Array {
    return this.take(n) ?? this.allocate(n);
  }

  /** A buffer of n zeros: for kernels that accumulate into their output. */
  zeroed(n: number): Float32Array {
    return this.take(n)?.fill(0) ?? this.allocate(n);
  }

  /** Marks an array handed out of the backend (dataSync, data): it is never reused. */
  escape(values: unknown): void {
    if (values && typeof values === 'object') this.escaped.add(values);
  }

  /**
   * Sees every array the backend stores: one that is a view into a pooled array's memory (tfjs's slice kernels
   * return `subarray`s) pins that array, which is then never reused.
   */
  stored(values: unknown): void {
    if (!ArrayBuffer.isView(values) || this.ours.has(values as Float32Array)) return;
    const parent = this.byBuffer.get(values.buffer);
    if (parent) this.escaped.add(parent);
  }
  private readonly byBuffer = new WeakMap<ArrayBufferLike, Float32Array>();

  /** Takes back the array of a tensor the backend disposed. */
  release(values: unknown): void {
    if (!(values instanceof Float32Array) || !this.ours.has(values) || this.escaped.has(values) || this.byAge.has(values)) return;
    if (values.byteLength > this.limitBytes) return;
    for (const old of this.byAge.keys()) {
      if (this.held + values.byteLength <= this.limitBytes) break;
      this.remove(old);
    }
    let list = this.free.get(values.length);
    if (!list) this.free.set(values.length, (list = []));
    list.push(values);
    this.byAge.set(values, true);
    this.held += values.byteLength;
  }

  /** Bytes held for reuse now. */
  get heldBytes(): number {
    return this.held;
  }

  private remove(a: Float32Array): void {
    const list = this.free.get(a.length)!;
    list.splice(list.indexOf(a), 1);
    if (!list.length) this.free.delete(a.length);
    this.byAge.delete(a);
    this.held -= a.byteLength;
  }

  private take(n: number): Float32Array | undefined {
    const list = this.free.get(n);
    const a = list?.[list.length - 1];
    if (!a) return undefined;
    this.remove(a);
    this.reused++;
    return a;
  }

  private allocate(n: number): Float32Array {
    const a = new Float32Array(n);
    if (n >= this.minLength) {
      this.ours.add(a);
      this.byBuffer.set(a.buffer, a);
    }
    return a;
  }
}

/** Native implementations; each returns null to hand the call to the original kernel. */
function nativeKernels(native: Addon, buffers: BufferPool): Record<string, (args: KernelArgs) => Info | null> {
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
    if (bias && !isRow(bias.shape, n)) return null; // e.g. a [m, 1] column bias: the original kernel
    const batch = Math.max(ba, bb);
    const out = buffers.fresh(batch * m * n);
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
    if (bias && !isRow(bias.shape, info.outChannels)) return null;
    const out = buffers.zeroed(size(info.outShape));
    native.conv2d(values(backend, x), values(backend, filter), out, bias ? values(backend, bias) : null, fused && at.activation === 'relu', ...shapeArgs(info));
    return backend.makeTensorInfo(info.outShape, 'float32', out);
  }

  function pool(args: KernelArgs, isMax: boolean): Info | null {
    const backend = args.backend as MathBackendCPU;
    const { x } = args.inputs as { x: Info };
    const at = (args.attrs ?? {}) as Record<string, never>;
    if (!f32(x) || x.shape.length !== 4) return null;
    const info = tf.backend_util.computePool2DInfo(x.shape as never, at.filterSize, at.strides, 1, at.pad, at.dimRoundingMode);
    const out = buffers.zeroed(size(info.outShape));
    native.pool(values(backend, x), out, isMax, ...shapeArgs(info));
    return backend.makeTensorInfo(info.outShape, 'float32', out);
  }

  const binary = (code: number) => (args: KernelArgs): Info | null => {
    const backend = args.backend as MathBackendCPU;
    const { a, b } = args.inputs as { a: Info; b: Info };
    if (!f32(a, b) || size(a.shape) === 0 || size(b.shape) === 0) return null;
    const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const out = buffers.fresh(size(outShape));
    native.binary(code, values(backend, a), values(backend, b), out, Float64Array.from(broadcastDims(a.shape, b.shape, outShape).flat()));
    return backend.makeTensorInfo(outShape, 'float32', out);
  };
  const unary = (code: number) => (args: KernelArgs): Info | null => {
    const backend = args.backend as MathBackendCPU;
    const { x } = args.inputs as { x: Info };
    if (!f32(x) || size(x.shape) === 0) return null;
    const out = buffers.fresh(size(x.shape));
    native.unary(code, values(backend, x), out, Number((args.attrs as { alpha?: number } | undefined)?.alpha ?? 0));
    return backend.makeTensorInfo(x.shape, 'float32', out);
  };

  /** Sum over one block of adjacent axes (any other reduction goes to tfjs's kernel). */
  const sum = (args: KernelArgs): Info | null => {
    const backend = args.backend as MathBackendCPU;
    const { x } = args.inputs as { x: Info };
    const { axis, keepDims } = (args.attrs ?? {}) as { axis: number | number[]; keepDims: boolean };
    if (!f32(x) || size(x.shape) === 0) return null;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
    if (axes.length === 0 || axes.some((v, i) => i > 0 && v !== axes[i - 1]! + 1)) return null; // not one block
    const first = axes[0]!, last = axes.at(-1)!;
    const outer = size(x.shape.slice(0, first)), reduce = size(x.shape.slice(first, last + 1)), inner = size(x.shape.slice(last + 1));
    const outShape = keepDims ? x.shape.map((d, i) => (axes.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !axes.includes(i));
    const out = buffers.fresh(outer * inner);
    native.sum(values(backend, x), out, outer, reduce, inner);
    return backend.makeTensorInfo(outShape, 'float32', out);
  };

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

  return {
    Slice(args) {
      const { x } = args.inputs as { x: Info };
      const { begin, size: sz } = (args.attrs ?? {}) as { begin: number | number[]; size?: number | number[] };
      if (!f32(x) || x.shape.length === 0) return null;
      const [b, z] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, sz);
      return box(args.backend as MathBackendCPU, x, b, z);
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
      const outShape = tf.backend_util.computeOutShape(xs.map((t) => t.shape), axis);
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
      native.copy(values(backend, x), 0, out, 0, copyDims(outShape, perm.map((p) => xs[p]!), stridesOf(outShape)));
      return backend.makeTensorInfo(outShape, 'float32', out);
    },
    ...Object.fromEntries(Object.entries(BINARY).map(([name, code]) => [name, binary(code)])),
    ...Object.fromEntries(Object.entries(UNARY).map(([name, code]) => [name, unary(code)])),
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
      const out = buffers.zeroed(size(info.inShape));
      native.conv2dBackpropInput(values(backend, dy), values(backend, filter), out, ...shapeArgs(info));
      return backend.makeTensorInfo(info.inShape, 'float32', out);
    },
    Conv2DBackpropFilter(args) {
      const backend = args.backend as MathBackendCPU;
      const { x, dy } = args.inputs as { x: Info; dy: Info };
      const at = (args.attrs ?? {}) as Record<string, never>;
      if (!f32(x, dy) || at.dataFormat === 'NCHW') return null;
      const info = tf.backend_util.computeConv2DInfo(x.shape as never, at.filterShape, at.strides, 1, at.pad, at.dimRoundingMode, false, 'channelsLast');
      const out = buffers.zeroed(size(info.filterShape));
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
      const out = buffers.zeroed(size(input.shape));
      native.maxPoolGrad(values(backend, dy), values(backend, input), out, ...shapeArgs(info));
      return backend.makeTensorInfo(input.shape, 'float32', out);
    },
    AvgPoolGrad(args) {
      const backend = args.backend as MathBackendCPU;
      const { dy, input } = args.inputs as { dy: Info; input: Info };
      const at = (args.attrs ?? {}) as Record<string, never>;
      if (!f32(dy, input)) return null;
      const info = tf.backend_util.computePool2DInfo(input.shape as never, at.filterSize, at.strides, 1, at.pad);
      const out = buffers.zeroed(size(input.shape));
      native.avgPoolGrad(values(backend, dy), out, ...shapeArgs(info));
      return backend.makeTensorInfo(input.shape, 'float32', out);
    },
    // tf.where broadcasts its operands with Tile, and masks are tiled over heads: the output viewed as
    // [r0, d0, r1, d1, ...] is one strided copy of x with stride 0 over every r axis.
    Tile(args) {
      const backend = args.backend as MathBackendCPU;
      const { x } = args.inputs as { x: Info };
      const { reps } = args.attrs as { reps: number[] };
      const outShape = x.shape.map((d, i) => d * reps[i]!);
      if (size(outShape) === 0 || x.dtype === 'string') return null;
      const xs = stridesOf(x.shape);
      const view = x.shape.flatMap((d, i) => [reps[i]!, d]);
      const dims = copyDims(view, x.shape.flatMap((_, i) => [0, xs[i]!]), stridesOf(view));
      const src = backend.data.get(x.dataId).values as tf.TypedArray;
      if (f32(x) && dims.length <= 24) {
        const out = buffers.fresh(size(outShape));
        native.copy(src as Float32Array, 0, out, 0, dims);
        return backend.makeTensorInfo(outShape, x.dtype, out);
      }
      if (!(src instanceof Float32Array || src instanceof Int32Array || src instanceof Uint8Array)) return null;
      const out = new (src.constructor as Float32ArrayConstructor)(size(outShape));
      const triples: number[][] = [];
      for (let i = 0; i < dims.length; i += 3) triples.push([dims[i]!, dims[i + 1]!, dims[i + 2]!]);
      // copyDims gives [size, srcStride, dstStride]; the destination is contiguous, so visiting in order suffices.
      forEachRow(triples.map(([n, ss]) => [n!, ss!, 0]), (i, o, _, n, st) => {
        for (let j = 0; j < n; j++) out[i + j] = src[o + j * st]!;
      });
      return backend.makeTensorInfo(outShape, x.dtype, out);
    },
    // Bool → float32: tfjs keeps the Uint8Array under dtype float32, which every later float kernel then takes
    // through its slow generic path (dropout masks); convert the storage once.
    Cast(args) {
      const backend = args.backend as MathBackendCPU;
      const { x } = args.inputs as { x: Info };
      const { dtype } = args.attrs as { dtype: string };
      const src = backend.data.get(x.dataId).values;
      if (dtype !== 'float32' || x.dtype !== 'bool' || !(src instanceof Uint8Array)) return null;
      const out = buffers.fresh(src.length);
      out.set(src);
      return backend.makeTensorInfo(x.shape, 'float32', out);
    },
    // Row gathers along axis 0 (embedding lookups): tfjs's kernel computes every element's index separately.
    GatherV2(args) {
      const backend = args.backend as MathBackendCPU;
      const { x, indices } = args.inputs as { x: Info; indices: Info };
      const { axis, batchDims } = (args.attrs ?? {}) as { axis: number; batchDims?: number };
      const src = backend.data.get(x.dataId).values as tf.TypedArray;
      const ids = backend.data.get(indices.dataId).values as tf.TypedArray;
      if ((batchDims ?? 0) !== 0 || tf.util.parseAxisParam(axis, x.shape)[0] !== 0 || x.shape.length === 0) return null;
      if (!(src instanceof Float32Array || src instanceof Int32Array) || !(ids instanceof Int32Array || ids instanceof Float32Array)) return null;
      const rows = x.shape[0]!, inner = size(x.shape.slice(1));
      for (let r = 0; r < ids.length; r++) if (!(ids[r]! >= 0 && ids[r]! < rows && Number.isInteger(ids[r]!))) return null; // the original reports it
      const out = new (src.constructor as Float32ArrayConstructor)(ids.length * inner);
      for (let r = 0; r < ids.length; r++) {
        const o = ids[r]! * inner;
        if (inner >= 16) out.set(src.subarray(o, o + inner), r * inner);
        else for (let j = 0; j < inner; j++) out[r * inner + j] = src[o + j]!;
      }
      return backend.makeTensorInfo([...indices.shape, ...x.shape.slice(1)], x.dtype, out);
    },
    ...Object.fromEntries(
      Object.entries(PREDICATES).map(([name, row]) => [
        name,
        (args: KernelArgs): Info | null => {
          const backend = args.backend as MathBackendCPU;
          const { a, b } = args.inputs as { a: Info; b: Info };
          const va = backend.data.get(a.dataId).values, vb = backend.data.get(b.dataId).values;
          const numeric = (v: unknown) => v instanceof Float32Array || v instanceof Int32Array || v instanceof Uint8Array;
          if (!numeric(va) || !numeric(vb) || size(a.shape) === 0 || size(b.shape) === 0) return null;
          const x = va as Float32Array, y = vb as Float32Array;
          const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
          const out = new Uint8Array(size(outShape));
          forEachRow(broadcastDims(a.shape, b.shape, outShape), (i, oa, ob, n, sa, sb) => row(x, y, out, i, oa, ob, n, sa, sb));
          return backend.makeTensorInfo(outShape, 'bool', out);
        },
      ]),
    ),
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
    Softmax(args) {
      const backend = args.backend as MathBackendCPU;
      const { logits } = args.inputs as { logits: Info };
      const { dim } = (args.attrs ?? {}) as { dim: number };
      const rank = logits.shape.length;
      if (!f32(logits) || rank === 0 || (dim !== -1 && dim !== rank - 1)) return null;
      const cols = logits.shape[rank - 1]!;
      const out = buffers.fresh(size(logits.shape));
      native.softmax(values(backend, logits), out, size(logits.shape) / cols, cols);
      return backend.makeTensorInfo(logits.shape, 'float32', out);
    },
  };
}

/** The original cpu kernels, kept to delegate to and for the property tests' reference. */
export const originalKernels = new Map<string, tf.KernelConfig>();

/** tfjs's gradients that are replaced while the native kernels are installed, kept to restore and for the tests. */
export const originalGradients = new Map<string, tf.GradConfig>();

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

/**
 * Replaces the hot kernels of the `cpu` backend with native ones. Idempotent; never throws: when the addon is
 * missing it returns `installed: []` and the reason.
 */
export function installNativeKernels(): { installed: string[]; reason?: string } {
  const a = loadAddon();
  if (!a) return { installed: [], reason: loadError };
  const installed: string[] = [];
  const buffers = poolFor(tf.findBackend('cpu') as MathBackendCPU | null);
  for (const [name, impl] of Object.entries(nativeKernels(a, buffers))) {
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
  for (const [name, impl] of Object.entries(fusedKernels(a, buffers))) {
    if (!tf.getKernel(name, 'cpu')) tf.registerKernel({ kernelName: name, backendName: 'cpu', kernelFunc: impl as tf.KernelFunc });
    installed.push(name);
  }
  for (const name of ['Sum', 'Mean'] as const) {
    const original = tf.getGradient(name);
    if (original && !originalGradients.has(name)) {
      originalGradients.set(name, original);
      tf.registerGradient(broadcastGradient(name));
    }
  }
  return { installed };
}

/** The buffer pool of a cpu backend instance, hooked into its disposeData (release) and readSync (escape). */
const pools = new WeakMap<object, { pool: BufferPool; restore(): void }>();
let activePool: { pool: BufferPool; restore(): void } | null = null;
function poolFor(backend: MathBackendCPU | null): BufferPool {
  if (!backend) return new BufferPool(0); // no backend to hook: a pool that never holds anything
  let entry = pools.get(backend);
  if (!entry) {
    const pool = new BufferPool();
    const { disposeData, readSync, makeTensorInfo } = backend;
    backend.disposeData = function (dataId: object, force?: boolean) {
      const values = this.data.get(dataId)?.values;
      const released = disposeData.call(this, dataId, force);
      if (released && values && !this.data.has(dataId)) pool.release(values);
      return released;
    };
    backend.readSync = function (dataId: object) {
      pool.escape(this.data.get(dataId)?.values);
      return readSync.call(this, dataId);
    };
    backend.makeTensorInfo = function (shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues | string[]) {
      pool.stored(values);
      return makeTensorInfo.call(this, shape, dtype, values);
    };
    entry = {
      pool,
      restore() {
        backend.disposeData = disposeData;
        backend.readSync = readSync;
        backend.makeTensorInfo = makeTensorInfo;
        pools.delete(backend);
      },
    };
    pools.set(backend, entry);
  }
  activePool = entry;
  return entry.pool;
}

/** The pool the installed kernels allocate from (null when they are not installed). */
export function nativeBufferPool(): BufferPool | null {
  return activePool?.pool ?? null;
}

/**
 * The fused kernels of core/kernels.ts (names tfjs does not have; core/ops.ts and the Adam plugin call them when
 * the backend has them). Each takes float32 inputs of matching shapes, as core/ops.ts ensures.
 */
function fusedKernels(native: Addon, buffers: BufferPool): Record<string, (args: KernelArgs) => Info | Info[]> {
  const rowsOf = (t: Info) => {
    const cols = t.shape.at(-1) ?? 1;
    return [cols === 0 ? 0 : size(t.shape) / cols, cols] as const;
  };
  return {
    [FUSED_KERNELS.adam]: (args) => fusedAdam(native, buffers, args),
    [FUSED_KERNELS.softmax]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { logits } = args.inputs as { logits: Info };
      const out = buffers.fresh(size(logits.shape));
      native.softmax(floatValues(backend, logits), out, ...rowsOf(logits));
      return backend.makeTensorInfo(logits.shape, 'float32', out);
    },
    [FUSED_KERNELS.softmaxGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { dy, y } = args.inputs as { dy: Info; y: Info };
      if (size(dy.shape) !== size(y.shape)) throw new Error(`${FUSED_KERNELS.softmaxGrad}: dy [${dy.shape}] and y [${y.shape}] differ in size`);
      const out = buffers.fresh(size(y.shape));
      native.softmaxGrad(floatValues(backend, dy), floatValues(backend, y), out, ...rowsOf(y));
      return backend.makeTensorInfo(y.shape, 'float32', out);
    },
    [FUSED_KERNELS.layerNorm]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { x, gamma, beta } = args.inputs as { x: Info; gamma: Info; beta: Info };
      if (size(gamma.shape) !== x.shape.at(-1) || size(beta.shape) !== x.shape.at(-1)) throw new Error(`${FUSED_KERNELS.layerNorm}: gamma [${gamma.shape}] and beta [${beta.shape}] must match the last axis of x [${x.shape}]`);
      const out = buffers.fresh(size(x.shape));
      native.layerNorm(floatValues(backend, x), floatValues(backend, gamma), floatValues(backend, beta), out, ...rowsOf(x), (args.attrs as { epsilon: number }).epsilon);
      return backend.makeTensorInfo(x.shape, 'float32', out);
    },
    [FUSED_KERNELS.layerNormGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { dy, x, gamma } = args.inputs as { dy: Info; x: Info; gamma: Info };
      const [rows, cols] = rowsOf(x);
      if (size(gamma.shape) !== cols || size(dy.shape) !== size(x.shape)) throw new Error(`${FUSED_KERNELS.layerNormGrad}: dy [${dy.shape}] and gamma [${gamma.shape}] do not fit x [${x.shape}]`);
      const dx = buffers.fresh(size(x.shape)), dgamma = buffers.fresh(cols), dbeta = buffers.fresh(cols);
      native.layerNormGrad(floatValues(backend, dy), floatValues(backend, x), floatValues(backend, gamma), dx, dgamma, dbeta, rows, cols, (args.attrs as { epsilon: number }).epsilon);
      return [backend.makeTensorInfo(x.shape, 'float32', dx), backend.makeTensorInfo(gamma.shape, 'float32', dgamma), backend.makeTensorInfo(gamma.shape, 'float32', dbeta)];
    },
    [FUSED_KERNELS.attention]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { qkv, keep } = args.inputs as { qkv: Info; keep: Info };
      const { numHeads, causal } = args.attrs as { numHeads: number; causal: boolean };
      const [batch, time, d3] = qkv.shape as [number, number, number];
      // Check the tensors' shapes here, for a message in their terms (the C++ side checks the buffers again).
      if (qkv.shape.length !== 3 || d3 % (3 * numHeads) !== 0 || size(keep.shape) !== batch * time) throw new Error(`${FUSED_KERNELS.attention}: qkv [${qkv.shape}] and keep [${keep.shape}] do not fit ${numHeads} heads`);
      const d = d3 / 3;
      const context = buffers.fresh(batch * time * d), probs = buffers.fresh(batch * numHeads * time * time);
      native.attention(floatValues(backend, qkv), floatValues(backend, keep), context, probs, batch, time, numHeads, d / numHeads, causal);
      return [backend.makeTensorInfo([batch, time, d], 'float32', context), backend.makeTensorInfo([batch, numHeads, time, time], 'float32', probs)];
    },
    [FUSED_KERNELS.attentionGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { dy, qkv, keep, probs } = args.inputs as { dy: Info; qkv: Info; keep: Info; probs: Info };
      const { numHeads, causal } = args.attrs as { numHeads: number; causal: boolean };
      const [batch, time, d3] = qkv.shape as [number, number, number];
      if (size(dy.shape) * 3 !== size(qkv.shape) || size(probs.shape) !== batch * numHeads * time * time || size(keep.shape) !== batch * time) throw new Error(`${FUSED_KERNELS.attentionGrad}: dy [${dy.shape}], qkv [${qkv.shape}], keep [${keep.shape}] and probs [${probs.shape}] do not fit`);
      const dqkv = buffers.fresh(batch * time * d3);
      native.attentionGrad(floatValues(backend, dy), floatValues(backend, qkv), floatValues(backend, keep), floatValues(backend, probs), dqkv, batch, time, numHeads, d3 / 3 / numHeads, causal);
      return backend.makeTensorInfo(qkv.shape, 'float32', dqkv);
    },
    [FUSED_KERNELS.crossEntropy]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { logits, labels } = args.inputs as { logits: Info; labels: Info };
      const [rows, cols] = rowsOf(logits);
      if (logits.shape.length !== 2 || labels.dtype !== 'int32' || size(labels.shape) !== rows) throw new Error(`${FUSED_KERNELS.crossEntropy}: logits [${logits.shape}] and int32 labels [${labels.shape}] (${labels.dtype}) do not fit`);
      const out = buffers.fresh(rows);
      native.crossEntropy(floatValues(backend, logits), backend.data.get(labels.dataId).values as Int32Array, out, rows, cols, (args.attrs as { labelSmoothing: number }).labelSmoothing);
      return backend.makeTensorInfo([rows], 'float32', out);
    },
    [FUSED_KERNELS.crossEntropyGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { logits, labels, scale } = args.inputs as { logits: Info; labels: Info; scale: Info };
      const [rows, cols] = rowsOf(logits);
      if (logits.shape.length !== 2 || labels.dtype !== 'int32' || size(labels.shape) !== rows || size(scale.shape) !== rows) throw new Error(`${FUSED_KERNELS.crossEntropyGrad}: logits [${logits.shape}], int32 labels [${labels.shape}] and scale [${scale.shape}] do not fit`);
      const out = buffers.fresh(rows * cols);
      native.crossEntropyGrad(floatValues(backend, logits), backend.data.get(labels.dataId).values as Int32Array, floatValues(backend, scale), out, rows, cols, (args.attrs as { labelSmoothing: number }).labelSmoothing);
      return backend.makeTensorInfo(logits.shape, 'float32', out);
    },
    [FUSED_KERNELS.matMulBiasGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { x, dz } = args.inputs as { x: Info; dz: Info };
      const [rows, inF] = rowsOf(x);
      const [dzRows, outF] = rowsOf(dz);
      if (rows !== dzRows) throw new Error(`${FUSED_KERNELS.matMulBiasGrad}: x [${x.shape}] and dz [${dz.shape}] must have the same rows`);
      const dw = buffers.fresh(inF * outF), db = buffers.fresh(outF);
      native.batchMatMul(floatValues(backend, x), floatValues(backend, dz), dw, 1, inF, outF, rows, true, false, 0, 0, null, false, db);
      return [backend.makeTensorInfo([inF, outF], 'float32', dw), backend.makeTensorInfo([outF], 'float32', db)];
    },
    [FUSED_KERNELS.reluGrad]: (args) => {
      const backend = args.backend as MathBackendCPU;
      const { dy, y } = args.inputs as { dy: Info; y: Info };
      if (size(dy.shape) !== size(y.shape)) throw new Error(`${FUSED_KERNELS.reluGrad}: dy [${dy.shape}] and y [${y.shape}] differ in size`);
      const out = buffers.fresh(size(y.shape));
      native.binary(RELU_GRAD, floatValues(backend, dy), floatValues(backend, y), out, Float64Array.from([size(y.shape), 1, 1]));
      return backend.makeTensorInfo(y.shape, 'float32', out);
    },
  };
}

/** The fused Adam step of core/kernels.ts: one pass over a tensor instead of a dozen elementwise kernels. */
function fusedAdam(native: Addon, buffers: BufferPool, args: KernelArgs): Info[] {
  const backend = args.backend as MathBackendCPU;
  const { param, grad, m, v } = args.inputs as Record<string, Info>;
  const at = args.attrs as Record<string, number>;
  const n = size(param!.shape);
  const out = [buffers.fresh(n), buffers.fresh(n), buffers.fresh(n)] as const;
  const arr = (t: Info) => floatValues(backend, t);
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
  for (const name of Object.values(FUSED_KERNELS)) if (tf.getKernel(name, 'cpu')) tf.unregisterKernel(name, 'cpu');
  for (const original of originalGradients.values()) tf.registerGradient(original);
  originalGradients.clear();
  activePool?.restore();
  activePool = null;
}
