/**
 * The native addon (native/, a C++ N-API module built by node-gyp at install): its functions' signatures and the
 * loader. Loading is lazy and happens once; a missing or unloadable addon is not an error, only a reason kept for
 * `nativeAddonInfo` (the native-cpu backend then reports itself unavailable).
 */
import { createRequire } from 'node:module';
import { loomPath } from '../../../core/package-root';

/** The functions native/src/loom.cc exports; every buffer is read or written in place. */
export interface Addon {
  batchMatMul(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    batch: number,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    strideA: number,
    strideB: number,
    bias: Float32Array | null,
    relu: boolean,
    bColSums?: Float32Array,
  ): void;
  conv2d(x: Float32Array, w: Float32Array, y: Float32Array, bias: Float32Array | null, relu: boolean, ...shape: number[]): void;
  conv2dBackpropInput(dy: Float32Array, w: Float32Array, dx: Float32Array, ...shape: number[]): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dw: Float32Array, ...shape: number[]): void;
  conv2dFilterBiasGrad(x: Float32Array, dy: Float32Array, y: Float32Array | null, dw: Float32Array, db: Float32Array | null, ...shape: number[]): void;
  /** `shape` is the convolution's 15 integers, then the pooling window's height and width. */
  conv2dMaxPool(x: Float32Array, w: Float32Array, y: Float32Array, at: Float32Array, bias: Float32Array | null, relu: boolean, ...shape: number[]): void;
  conv2dMaxPoolFilterGrad(
    x: Float32Array,
    dy: Float32Array,
    y: Float32Array,
    at: Float32Array,
    dw: Float32Array,
    db: Float32Array | null,
    relu: boolean,
    ...shape: number[]
  ): void;
  pool(x: Float32Array, y: Float32Array, isMax: boolean, ...shape: number[]): void;
  maxPoolGrad(dy: Float32Array, x: Float32Array, dx: Float32Array, ...shape: number[]): void;
  avgPoolGrad(dy: Float32Array, dx: Float32Array, ...shape: number[]): void;
  softmax(x: Float32Array, y: Float32Array, rows: number, cols: number): void;
  crossEntropy(logits: Float32Array, labels: Int32Array, loss: Float32Array, rows: number, cols: number, eps: number): void;
  crossEntropyGrad(logits: Float32Array, labels: Int32Array, scale: Float32Array, dlogits: Float32Array, rows: number, cols: number, eps: number): void;
  softmaxGrad(dy: Float32Array, y: Float32Array, dx: Float32Array, rows: number, cols: number): void;
  layerNorm(x: Float32Array, gamma: Float32Array, beta: Float32Array, y: Float32Array, rows: number, cols: number, epsilon: number): void;
  attention(
    qkv: Float32Array,
    keep: Float32Array | null,
    context: Float32Array,
    probs: Float32Array,
    batch: number,
    time: number,
    heads: number,
    dk: number,
    causal: boolean,
  ): void;
  attentionGrad(
    dcontext: Float32Array,
    qkv: Float32Array,
    keep: Float32Array | null,
    probs: Float32Array,
    dqkv: Float32Array,
    batch: number,
    time: number,
    heads: number,
    dk: number,
    causal: boolean,
  ): void;
  /** Decoding's attention to a cached memory shared by `repeat` consecutive rows (native/src/attention.h). */
  memoryAttention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    keep: Float32Array | null,
    context: Float32Array,
    rows: number,
    heads: number,
    dk: number,
    keys: number,
    repeat: number,
  ): void;
  layerNormGrad(
    dy: Float32Array,
    x: Float32Array,
    gamma: Float32Array,
    dx: Float32Array,
    dgamma: Float32Array,
    dbeta: Float32Array,
    rows: number,
    cols: number,
    epsilon: number,
  ): void;
  binary(op: number, a: Float32Array, b: Float32Array, out: Float32Array, dims: Float64Array): void;
  unary(op: number, x: Float32Array, y: Float32Array, alpha: number): void;
  sum(x: Float32Array, y: Float32Array, outer: number, reduce: number, inner: number): void;
  /** out[0] = min, out[1] = max of x[0, count), NaN skipped (+Infinity and -Infinity when none). */
  minMax(x: Float32Array, out: Float32Array, count: number): void;
  adam(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    p2: Float32Array,
    m2: Float32Array,
    v2: Float32Array,
    lr: number,
    beta1: number,
    beta2: number,
    epsilon: number,
    c1: number,
    c2: number,
  ): void;
  /**
   * One SGD step (native/src/elementwise.h's sgd): p2 = p − α·(g + λp), with momentum (b, b2 both given) through
   * b2 = μb + (g + λp), Nesterov's form if asked; λ = 0 adds nothing.
   */
  sgd(
    p: Float32Array,
    g: Float32Array,
    b: Float32Array | null,
    p2: Float32Array,
    b2: Float32Array | null,
    lr: number,
    decay: number,
    momentum: number,
    nesterov: boolean,
  ): void;
  copy(src: Float32Array, srcOffset: number, dst: Float32Array, dstOffset: number, dims: Float64Array): void;
  /** One LSTM step (native/src/elementwise.h's lstm_cell): h, c [batch, units] and gates [batch, 4·units] written. */
  lstmCell(
    zx: Float32Array,
    hu: Float32Array,
    cPrev: Float32Array,
    h: Float32Array,
    c: Float32Array,
    gates: Float32Array,
    batch: number,
    units: number,
    time: number,
    t: number,
  ): void;
  /** Its backward step (lstm_cell_grad): dz [batch, 4·units] and dcOut [batch, units] written; dyTime 0: no dy. */
  lstmCellGrad(
    dh: Float32Array,
    dy: Float32Array,
    dyTime: number,
    dyT: number,
    gates: Float32Array,
    cs: Float32Array,
    dc: Float32Array,
    dz: Float32Array,
    dcOut: Float32Array,
    batch: number,
    units: number,
    time: number,
    t: number,
  ): void;
  /** c = a·bᵀ in int32 (a [m×k] uint8, b [n×k] int8) on `path`: 0 the best, 1 scalar, 2 avx2, 3 avx512-vnni. */
  int8Gemm(m: number, n: number, k: number, a: Uint8Array, b: Int8Array, c: Int32Array, path: number): void;
  /** w [n×k] (one row per output channel) packed for int8Linear / int8Conv2d on this CPU's path. */
  int8Pack(n: number, k: number, w: Int8Array): Int8Array;
  int8Linear(
    m: number,
    n: number,
    k: number,
    x: Float32Array,
    scale: number,
    zero: number,
    w: Int8Array,
    wScale: Float32Array,
    bias: Float32Array | null,
    relu: boolean,
    y: Float32Array,
  ): void;
  int8Conv2d(
    x: Float32Array,
    scale: number,
    zero: number,
    w: Int8Array,
    wScale: Float32Array,
    bias: Float32Array | null,
    relu: boolean,
    y: Float32Array,
    ...shape: number[]
  ): void;
  /**
   * The precision of every float matrix product from now on (native/src/bf16.h): 0 fp32, 1 bf16 on the best path here,
   * 2 bf16 portable (operands rounded, then the fp32 kernel), 3 bf16 on avx512_bf16 (portable where the CPU lacks it),
   * 4 bf16 on AMX (3 where the CPU lacks it), 5 AMX's loop on emulated tiles (tests; any CPU).
   */
  setPrecision(mode: number): void;
  /** y[i] = x[i] rounded to bf16 on `path`: 0 the best here, 1 scalar, 2 vcvtne2ps2bf16 (scalar where absent). */
  bf16Round(x: Float32Array, y: Float32Array, count: number, path: number): void;
  /**
   * simd: the float GEMM's micro-kernel; int8: the int8 GEMM's path ("avx512-vnni", "avx2" or "scalar"); bf16: the
   * best bf16 path here ("amx", "avx512_bf16" or "portable"); precision: the products' precision now ("fp32",
   * "bf16 (portable)", "bf16 (avx512_bf16)", "bf16 (amx)" or "bf16 (amx, emulated)").
   */
  info(): { simd: string; threads: number; int8?: string; bf16?: string; precision?: string };
}

// LOOM_NATIVE_ADDON names another build of the addon: the arm64 tests (native/arm64/test.mjs) load a cross-built one.
const ADDON_PATH = process.env.LOOM_NATIVE_ADDON || loomPath('native/build/Release/loom_native.node');

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
      loadError =
        `native kernels not available (${(e as Error).message.split('\n')[0]}); build them with \`npm run build:native\` in loom's checkout, ` +
        'or `npm rebuild loom` where loom is a dependency (npm may first ask to approve its install script: `npm install-scripts approve loom`)';
    }
  }
  return addon;
}

/** Why the addon is not loaded ('' when it is). */
export function addonLoadError(): string {
  return loadError;
}

export function nativeAddonInfo(): { loaded: boolean; simd: string; threads: number; int8?: string; bf16?: string; precision?: string; reason?: string } {
  const a = loadAddon();
  return a ? { loaded: true, ...a.info() } : { loaded: false, simd: 'none', threads: 0, reason: loadError };
}
