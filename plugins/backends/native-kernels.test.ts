/**
 * Property tests of every native kernel (plugins/backends/native-kernels.ts, native/) against tfjs's own cpu
 * kernel on random shapes: odd sizes, size 1, transposes, broadcasting, padding modes and strides. Each case runs
 * the same tf op twice, once through the native kernels and once with tfjs's original kernels registered in
 * their place, and compares elementwise with |native − reference| ≤ rtol·|reference| + rtol·max(1, max|reference|):
 * rtol = 1e-4 for products and sums (float32 accumulation order differs); elementwise maps use rtol = 1e-5 and
 * per element (|native − reference| ≤ 1e-5·(|reference| + 1)); copies must be exact.
 * NaN must match NaN. Skips (with the reason printed) only when the addon did not build.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostFloats, setHostFloats } from '../../core/backend';
import { ConfigError } from '../../core/errors';
import { uniformFloats } from '../../core/random';
import { dropoutMask } from '../layers/dropout';
import { activationQuant, quantizeCentred, quantizePerChannel } from '../../core/quantization';
import { softmax } from '../../core/ops/softmax';
import { referenceSelfAttention } from '../../test/harness';
import geluPlugin from '../activations/gelu';
import {
  BufferPool,
  installNativeKernels,
  poolLimitBytes,
  nativeAddonInfo,
  nativeBufferPool,
  originalGradients,
  originalKernels,
  sizeClass,
} from './native-kernels';

const info = nativeAddonInfo();
if (!info.loaded) console.warn(`native-kernels tests skipped: ${info.reason}`);
/** Whether the kernels' multiply-adds are fused (FMA): every SIMD level but x86-64's baseline (LOOM_SIMD=scalar). */
const FUSED = info.simd !== 'scalar';

/** Deterministic data from a fast-check seed: normal-ish floats, or small integers (ties for max and step at 0). */
function data(seed: number, n: number, kind: 'real' | 'ties' | 'positive' = 'real'): Float32Array {
  let s = seed >>> 0 || 1;
  const next = () => (s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (kind === 'ties') out[i] = Math.floor(next() * 5) - 2;
    else if (kind === 'positive') out[i] = 0.05 + 3 * next();
    else out[i] = (next() + next() + next() - 1.5) * 2;
  }
  return out;
}
const tensor = (shape: number[], seed: number, kind?: 'real' | 'ties' | 'positive') =>
  tf.tensor(
    data(
      seed,
      shape.reduce((a, b) => a * b, 1),
      kind,
    ),
    shape,
    'float32',
  );

/** Runs `fn` with tfjs's original cpu kernels registered in place of the native ones, then puts the native ones back. */
function withOriginals<T>(fn: () => T): T {
  const natives = [...originalKernels.keys()].map((name) => tf.getKernel(name, 'cpu')!);
  const swap = (configs: tf.KernelConfig[]) =>
    configs.forEach((k) => {
      tf.unregisterKernel(k.kernelName, 'cpu');
      tf.registerKernel(k);
    });
  swap([...originalKernels.values()]);
  try {
    return fn();
  } finally {
    swap(natives);
  }
}

/** The values of `op()`'s tensor(s), computed natively and by the reference kernels. */
function both(op: () => tf.Tensor | tf.Tensor[]): { native: Float32Array[]; reference: Float32Array[]; shapes: [number[][], number[][]] } {
  const run = () =>
    tf.tidy(() => {
      const r = op();
      return Array.isArray(r) ? r : [r];
    });
  const read = (ts: tf.Tensor[]) => {
    const out = ts.map((t) => Float32Array.from(t.dataSync() as Float32Array));
    const shapes = ts.map((t) => t.shape);
    tf.dispose(ts);
    return { out, shapes };
  };
  const n = read(run());
  const r = read(withOriginals(run));
  return { native: n.out, reference: r.out, shapes: [n.shapes, r.shapes] };
}

/**
 * Asserts native ≈ reference (see the file comment for the tolerance). `perElement` drops the max|reference| term,
 * for elementwise maps, whose error does not depend on other elements (e.g. exp's huge values).
 */
function expectClose(op: () => tf.Tensor | tf.Tensor[], rtol = 1e-4, perElement = false): void {
  const { native, reference, shapes } = both(op);
  expect(shapes[0]).toEqual(shapes[1]);
  native.forEach((got, t) => {
    const want = reference[t]!;
    expect(got.length).toBe(want.length);
    let scale = 1;
    if (!perElement) for (const v of want) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < want.length; i++) {
      const a = got[i]!,
        b = want[i]!;
      if (Number.isNaN(b) || !Number.isFinite(b)) {
        if (!Object.is(a, b) && !(Number.isNaN(a) && Number.isNaN(b))) expect.fail(`output ${t}[${i}]: ${a}, reference ${b}`);
      } else if (!(Math.abs(a - b) <= rtol * (Math.abs(b) + scale))) {
        expect.fail(`output ${t}[${i}]: ${a}, reference ${b} (rtol ${rtol}, scale ${scale})`);
      }
    }
  });
}

const seed = fc.integer({ min: 1, max: 2 ** 31 - 1 });
const dim = (max: number) => fc.integer({ min: 1, max });
const RUNS = { numRuns: 30 };

/**
 * Kernel names with a property below. They are declared when the file is collected, before any test runs, so the
 * coverage test ("every installed kernel has a property") holds whatever runs, in whatever order, under any `-t`.
 */
const tested = new Set<string>();

/**
 * A property test of `kernels`: declares them for the coverage test, and fails unless each was dispatched to its
 * native registration while the test ran (a property that stopped reaching its kernel would otherwise still count).
 */
function kernelProperty(title: string, kernels: string[], fn: () => void): void {
  kernels.forEach((k) => tested.add(k));
  it(title, () => {
    const dispatched = new Set<string>();
    const spied = kernels.map((k) => {
      const config = tf.getKernel(k, 'cpu');
      if (!config) return null;
      const native = config.kernelFunc;
      config.kernelFunc = ((args: never) => {
        dispatched.add(k);
        return native(args);
      }) as tf.KernelFunc;
      return { config, native };
    });
    try {
      fn();
    } finally {
      spied.forEach((s) => s && (s.config.kernelFunc = s.native));
    }
    expect(
      kernels.filter((k) => !dispatched.has(k)),
      `${title}: kernels never dispatched`,
    ).toEqual([]);
  });
}

describe.skipIf(!info.loaded)(`native kernels (${info.simd}, ${info.threads} threads) vs tfjs cpu`, () => {
  let installed: string[] = [];
  beforeAll(async () => {
    tf.env().set('PROD', true); // no "install tfjs-node" banner
    await tf.setBackend('cpu');
    installed = installNativeKernels().installed;
  });
  afterAll(() => tf.disposeVariables());

  it('installs idempotently', () => {
    expect(installed.length).toBeGreaterThan(0);
    const again = installNativeKernels();
    expect(again.installed).toEqual(installed);
    expect(again.reason).toBeUndefined();
    // The comparisons below are meaningful only if the registered kernels are not tfjs's own.
    for (const [name, original] of originalKernels) expect(tf.getKernel(name, 'cpu')!.kernelFunc, name).not.toBe(original.kernelFunc);
  });

  kernelProperty('BatchMatMul: transposes, batch broadcasting, odd and unit sizes', ['BatchMatMul'], () => {
    fc.assert(
      fc.property(
        dim(40),
        dim(40),
        dim(40),
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom<[number[], number[]]>([[], []], [[3], [3]], [[1], [4]], [[2], []], [[], [3]], [[2, 3], [1]], [[1, 2], [2]]),
        seed,
        (m, n, k, ta, tb, [ba, bb], s) => {
          const a = tensor([...ba, ...(ta ? [k, m] : [m, k])], s);
          const b = tensor([...bb, ...(tb ? [n, k] : [k, n])], s + 1);
          expectClose(() => tf.matMul(a, b, ta, tb));
          tf.dispose([a, b]);
        },
      ),
      RUNS,
    );
  });

  it('BatchMatMul with 1-4 rows of A (decoding a token at a time) gives those rows of a taller product, bit for bit', () => {
    // One to four rows against an untransposed B stream B's rows (gemm.cc few_rows_impl) instead of tiling; each
    // element of C must still be the tiled kernel's chain of multiply-adds, so a run's numbers do not depend on
    // how many rows a product happens to have. Depths cross the kernels' depth blocks, widths the column chunks of
    // the sums (2048 columns for one row, 1024 for two, 512 for three or four).
    fc.assert(
      fc.property(dim(4), dim(2300), dim(500), fc.boolean(), seed, (m, n, k, ta, s) => {
        const tall = tensor(ta ? [k, m + 5] : [m + 5, k], s);
        const rows = ta ? tf.slice(tall, [0, 0], [k, m]) : tf.slice(tall, [0, 0], [m, k]);
        const b = tensor([k, n], s + 1);
        const [few, all] = [tf.matMul(rows, b, ta, false), tf.matMul(tall, b, ta, false)];
        const top = tf.slice(all, [0, 0], [m, n]);
        expect(Array.from(few.dataSync())).toEqual(Array.from(top.dataSync()));
        expectClose(() => tf.matMul(rows, b, ta, false));
        tf.dispose([tall, rows, b, few, all, top]);
      }),
      { numRuns: 40 },
    );
  });

  it('BatchMatMul of tiny products (attention heads over a decoding cache) gives those elements of a tiled product, bit for bit', () => {
    // Products of at most 32768 multiply-adds skip packing and tiling (gemm.cc small_impl) with the tiled kernel's
    // arithmetic: each is compared with the same rows and columns of a product 200 rows and columns larger. Depths
    // up to 800 cross the depth blocks (kc 256, or 384 on the AVX-512 path).
    // Fixed shapes beside the random ones: more than one 64-column chunk, transposed B staged (4 or more rows, depth at
    // most 64) or read in place, a decoding step's heads (1×64·64×12 and 1×12·12×64), and 1-3 rows against a
    // transposed B read as blocks of keys transposed in registers (a GPT head over its cache: 1×64·64×257), with
    // keys past the last full block and depths across the depth blocks (390).
    const fixed: [number, number, number][] = [
      [1, 12, 64],
      [1, 64, 12],
      [1, 257, 64],
      [3, 40, 100],
      [2, 17, 390],
      [2, 130, 100],
      [5, 70, 60],
      [4, 65, 64],
      [6, 129, 40],
    ];
    const check = (m: number, n: number, k: number, ta: boolean, tb: boolean, s: number) => {
      const A = tensor(ta ? [k, m + 200] : [m + 200, k], s);
      const B = tensor(tb ? [n + 200, k] : [k, n + 200], s + 1);
      const a = ta ? tf.slice(A, [0, 0], [k, m]) : tf.slice(A, [0, 0], [m, k]);
      const b = tb ? tf.slice(B, [0, 0], [n, k]) : tf.slice(B, [0, 0], [k, n]);
      const [small, big] = [tf.matMul(a, b, ta, tb), tf.matMul(A, B, ta, tb)];
      const block = tf.slice(big, [0, 0], [m, n]);
      expect(Array.from(small.dataSync())).toEqual(Array.from(block.dataSync()));
      expectClose(() => tf.matMul(a, b, ta, tb));
      tf.dispose([A, B, a, b, small, big, block]);
    };
    for (const [m, n, k] of fixed) for (const ta of [false, true]) for (const tb of [false, true]) check(m, n, k, ta, tb, m + n + k);
    fc.assert(
      fc.property(dim(40), dim(40), dim(800), fc.boolean(), fc.boolean(), seed, (m, n, k, ta, tb, s) => {
        fc.pre(m * n * k <= 32768);
        check(m, n, k, ta, tb, s);
      }),
      { numRuns: 40 },
    );
  });

  it("BatchMatMul at the tiles' edges is within k·2⁻²³·Σ|aᵢbᵢ| of a float64 product, and one thread gives the same bits", () => {
    // The vectorised packers (gemm.cc: 12-row strips of A and 32-column strips of B on the AVX-512 path, 6 and 16
    // on AVX2) next to the scalar ones that pack partial strips: m, n and k not multiples of the tile, odd leading
    // dimensions, transposed operands, depths across the depth blocks (kc 256 or 384) and not a multiple of the
    // 8-depth transposes. The bound is the worst case of k rounded multiply-adds. Depths stay below 4·kc, so no
    // product is split along k: a batch of two (below 2^21 multiply-adds an item per thread, each computed on one
    // thread) must then give the batch-1 product's bits (above 2^18, shared out over every thread).
    fc.assert(
      fc.property(dim(70), dim(130), dim(900), fc.boolean(), fc.boolean(), seed, (m, n, k, ta, tb, s) => {
        const a = tensor(ta ? [k, m] : [m, k], s);
        const b = tensor(tb ? [n, k] : [k, n], s + 1);
        const [A, B] = [a.dataSync(), b.dataSync()];
        const one = tf.matMul(a, b, ta, tb);
        const got = one.dataSync();
        for (let i = 0; i < m; i++)
          for (let j = 0; j < n; j++) {
            let sum = 0;
            let abs = 0;
            for (let p = 0; p < k; p++) {
              const x = (ta ? A[p * m + i]! : A[i * k + p]!) * (tb ? B[j * k + p]! : B[p * n + j]!);
              sum += x;
              abs += Math.abs(x);
            }
            const g = got[i * n + j]!;
            if (!(Math.abs(g - sum) <= k * 2 ** -23 * abs)) expect.fail(`C[${i}, ${j}] = ${g}, float64 ${sum} (m ${m} n ${n} k ${k} ta ${ta} tb ${tb})`);
          }
        const [a2, b2] = [tf.stack([a, a]), tf.stack([b, b])];
        const two = tf.matMul(a2, b2, ta, tb);
        const first = tf.slice(two, [0, 0, 0], [1, m, n]);
        expect(Array.from(first.dataSync())).toEqual(Array.from(got));
        tf.dispose([a, b, one, a2, b2, two, first]);
      }),
      { numRuns: 40 },
    );
  });

  it('BatchMatMul of a narrow B (A read in place) gives those columns of a wide product (A packed), bit for bit', () => {
    // With at most 4 strips of B (64 columns on AVX2, 128 on AVX-512) the tiles read an untransposed A's full
    // strips in place instead of packing them (gemm.cc kNarrowStrips), and pack only a partial strip at the bottom
    // edge; a wider B packs all of A. Each element of C must be the same chain of multiply-adds either way. Depths
    // stay below 4·kc (no product is split along k); rows cross the mc blocks (96 or 120) and the partial strips.
    fc.assert(
      fc.property(dim(300), dim(128), dim(1000), seed, (m, n, k, s) => {
        const a = tensor([m, k], s);
        const b = tensor([k, n], s + 1);
        const wide = tf.concat([b, tensor([k, 160], s + 2)], 1);
        const [narrow, all] = [tf.matMul(a, b), tf.matMul(a, wide)];
        const left = tf.slice(all, [0, 0], [m, n]);
        expect(Array.from(narrow.dataSync())).toEqual(Array.from(left.dataSync()));
        tf.dispose([a, b, wide, narrow, all, left]);
      }),
      { numRuns: 40 },
    );
  });

  it('BatchMatMul: sizes that cross the packing blocks and use every thread', () => {
    for (const [m, n, k, ta, tb, batch] of [
      [300, 70, 600, false, false, 1],
      [97, 301, 259, true, false, 1],
      [130, 131, 257, false, true, 1],
      [64, 200, 300, true, true, 1],
      [1, 513, 300, false, false, 1],
      [513, 1, 300, false, true, 1],
      [33, 17, 65, false, true, 7],
      // The ways a product is shared out: tiles of C over more than one 2048-column panel; a deep product with a
      // small result split along k (as weight gradients are; deeper than 4·kc: 1024, or 1536 on the AVX-512 path);
      // deep and wide ones on the fixed split, by columns and by rows; tiles of C (k ≤ 4·kc), on the AVX-512 path
      // only for products of at least 2^31 multiply-adds (smaller ones take the fixed split there).
      [40, 2100, 60, false, true, 1],
      [700, 600, 500, true, true, 1],
      [1300, 1300, 1300, false, true, 1],
      [50, 70, 1500, true, false, 1],
      [50, 70, 2500, true, false, 1],
      [97, 1200, 1100, false, true, 1],
      [1200, 97, 1100, true, false, 1],
    ] as const) {
      const a = tensor([batch, ...(ta ? [k, m] : [m, k])], m + n);
      const b = tensor([batch, ...(tb ? [n, k] : [k, n])], k);
      expectClose(() => tf.matMul(a, b, ta, tb));
      tf.dispose([a, b]);
    }
  });

  it('_FusedMatMul: bias and relu on every way a product is shared out over the threads', () => {
    // Tiles of C (k ≤ 4·kc), slices of k (deep, small result), the fixed split (few rows of A, or on the AVX-512
    // path fewer than 2^31 multiply-adds): the bias and relu are applied per tile or after the partial sums are
    // added, so each path is checked.
    for (const [m, n, k, ta, tb] of [
      [300, 70, 600, false, false],
      [800, 260, 700, false, true],
      [60, 50, 1400, true, false],
      [60, 50, 2000, true, false],
      [20, 900, 300, false, true],
    ] as const) {
      const a = tensor(ta ? [k, m] : [m, k], m);
      const b = tensor(tb ? [n, k] : [k, n], n);
      const bias = tensor([n], k);
      expectClose(() => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, transposeA: ta, transposeB: tb, bias, activation: 'relu' }));
      tf.dispose([a, b, bias]);
    }
  });

  it('a product of a few rows is shared out once its B is seen to stay in L2, with the bits of the serial call', () => {
    // From its second call on, a matrix-vector product whose B fits the cores' L2 caches between calls is split
    // along its depth (native/src/gemm.cc, FewRowsReuse): B of 0.4, 1.4 and 2.5 MB covers L2 sizes of 512 KiB to
    // 2 MiB. The first call runs serially; every later call must give its bits exactly, and all match tfjs.
    for (const [m, n, k, bias] of [
      [1, 64, 5408, true],
      [1, 100, 1000, false],
      [3, 96, 3700, true],
      [2, 250, 2500, false],
    ] as const) {
      const a = tensor([m, k], k);
      const b = tensor([k, n], n);
      const z = bias ? tensor([n], m) : undefined;
      const f = () => tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias: z, activation: bias ? 'relu' : 'linear' });
      const calls = [0, 1, 2].map(() => tf.tidy(() => f().dataSync() as Float32Array));
      expect(Buffer.from(calls[1]!.buffer).equals(Buffer.from(calls[0]!.buffer)), `${m}x${k}·${k}x${n}: second call`).toBe(true);
      expect(Buffer.from(calls[2]!.buffer).equals(Buffer.from(calls[0]!.buffer)), `${m}x${k}·${k}x${n}: third call`).toBe(true);
      expectClose(f);
      tf.dispose([a, b, ...(z ? [z] : [])]);
    }
  });

  kernelProperty('_FusedMatMul: bias (row, broadcast, column) and relu/linear, forward and gradients', ['_FusedMatMul'], () => {
    fc.assert(
      fc.property(
        dim(24),
        dim(24),
        dim(24),
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom('none', 'row', 'row2d', 'column', 'full'),
        fc.constantFrom('linear', 'relu') as fc.Arbitrary<'linear' | 'relu'>,
        seed,
        (m, n, k, ta, tb, biasKind, activation, s) => {
          const a = tensor(ta ? [k, m] : [m, k], s);
          const b = tensor(tb ? [n, k] : [k, n], s + 1);
          const biasShape = { none: null, row: [n], row2d: [1, n], column: [m, 1], full: [m, n] }[biasKind];
          const bias = biasShape ? tensor(biasShape, s + 2) : undefined;
          const f = (x: tf.Tensor2D, y: tf.Tensor2D, z?: tf.Tensor) => tf.fused.matMul({ a: x, b: y, transposeA: ta, transposeB: tb, bias: z, activation });
          expectClose(() => f(a as tf.Tensor2D, b as tf.Tensor2D, bias));
          // The fused gradient path: d(sum(out·w))/d(a, b, bias) goes through BatchMatMul, Step/Multiply and Sum.
          const w = tensor([m, n], s + 3);
          const grads = bias
            ? tf.grads((x, y, z) => tf.sum(tf.mul(f(x as tf.Tensor2D, y as tf.Tensor2D, z), w)))
            : tf.grads((x, y) => tf.sum(tf.mul(f(x as tf.Tensor2D, y as tf.Tensor2D), w)));
          expectClose(() => grads(bias ? [a, b, bias] : [a, b]));
          tf.dispose([a, b, w, ...(bias ? [bias] : [])]);
        },
      ),
      RUNS,
    );
  });

  const convCase = fc
    .record({
      n: dim(3),
      h: dim(9),
      w: dim(9),
      c: dim(5),
      co: dim(6),
      kh: dim(4),
      kw: dim(4),
      sh: dim(3),
      sw: dim(3),
      pad: fc.constantFrom<'same' | 'valid'>('same', 'valid'),
      seed,
    })
    .filter((p) => p.pad === 'same' || (p.kh <= p.h && p.kw <= p.w));

  kernelProperty('Conv2D and FusedConv2D (bias, relu): strides, same/valid padding', ['Conv2D', 'FusedConv2D'], () => {
    fc.assert(
      fc.property(convCase, fc.boolean(), ({ n, h, w, c, co, kh, kw, sh, sw, pad, seed: s }, fused) => {
        const x = tensor([n, h, w, c], s) as tf.Tensor4D,
          f = tensor([kh, kw, c, co], s + 1) as tf.Tensor4D;
        const bias = tensor([co], s + 2);
        expectClose(() => (fused ? tf.fused.conv2d({ x, filter: f, strides: [sh, sw], pad, bias, activation: 'relu' }) : tf.conv2d(x, f, [sh, sw], pad)));
        tf.dispose([x, f, bias]);
      }),
      RUNS,
    );
  });

  it('Conv2D with dilation (native when supported, the original kernel otherwise)', () => {
    const x = tensor([2, 9, 8, 3], 5) as tf.Tensor4D,
      f = tensor([3, 2, 3, 4], 6) as tf.Tensor4D;
    expectClose(() => tf.conv2d(x, f, 1, 'same', 'NHWC', [2, 3]));
    expectClose(() => tf.conv2d(x, f, 1, 'valid', 'NHWC', 2));
    tf.dispose([x, f]);
  });

  kernelProperty('Conv2DBackpropInput and Conv2DBackpropFilter: strides, same/valid padding', ['Conv2DBackpropInput', 'Conv2DBackpropFilter'], () => {
    fc.assert(
      fc.property(convCase, ({ n, h, w, c, co, kh, kw, sh, sw, pad, seed: s }) => {
        const x = tensor([n, h, w, c], s) as tf.Tensor4D,
          f = tensor([kh, kw, c, co], s + 1) as tf.Tensor4D;
        const outShape = tf.backend_util.computeConv2DInfo(x.shape, f.shape, [sh, sw], 1, pad).outShape;
        const dy = tensor(outShape, s + 2) as tf.Tensor4D;
        const attrs = { strides: [sh, sw], pad, dataFormat: 'NHWC', dimRoundingMode: undefined };
        expectClose(() => tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, { ...attrs, inputShape: x.shape } as never) as tf.Tensor);
        expectClose(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...attrs, filterShape: f.shape } as never) as tf.Tensor);
        tf.dispose([x, f, dy]);
      }),
      RUNS,
    );
  });

  // The direct kernels (kh·kw·c ≤ 32 taps): blocks of 16 output channels and a partial last block, images padded for
  // 'same', strides, dilations (forward only, as tfjs), P pixels at a time and the rest one by one.
  kernelProperty(
    'Conv2D, FusedConv2D and Conv2DBackpropFilter with few taps (the direct kernels): up to 40 channels out, strides, dilations',
    ['Conv2D', 'FusedConv2D', 'Conv2DBackpropFilter'],
    () => {
      const directCase = fc
        .record({
          n: dim(3),
          h: dim(13),
          w: dim(13),
          c: dim(3),
          co: dim(40),
          kh: dim(5),
          kw: dim(5),
          s: fc.tuple(dim(3), dim(3)),
          d: fc.tuple(dim(2), dim(2)),
          pad: fc.constantFrom<'same' | 'valid'>('same', 'valid'),
          seed,
        })
        .filter((p) => p.kh * p.kw * p.c <= 32 && (p.pad === 'same' || ((p.kh - 1) * p.d[0] < p.h && (p.kw - 1) * p.d[1] < p.w)));
      fc.assert(
        fc.property(directCase, ({ n, h, w, c, co, kh, kw, s: st, d, pad, seed: s }) => {
          const dilated = d[0] > 1 || d[1] > 1;
          const strides: [number, number] = dilated ? [1, 1] : st; // tfjs: strides or dilations must be 1
          const x = tensor([n, h, w, c], s) as tf.Tensor4D,
            f = tensor([kh, kw, c, co], s + 1) as tf.Tensor4D,
            bias = tensor([co], s + 2);
          expectClose(() => tf.conv2d(x, f, strides, pad, 'NHWC', d));
          expectClose(() => tf.fused.conv2d({ x, filter: f, strides, pad, dilations: d, bias, activation: 'relu' }));
          if (!dilated) {
            const outShape = tf.backend_util.computeConv2DInfo(x.shape, f.shape, strides, 1, pad).outShape;
            const dy = tensor(outShape, s + 3) as tf.Tensor4D;
            const attrs = { strides, pad, dataFormat: 'NHWC', filterShape: f.shape };
            expectClose(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as never) as tf.Tensor);
            dy.dispose();
          }
          tf.dispose([x, f, bias]);
        }),
        RUNS,
      );
      // The MNIST CNN's first layer: 26 pixels a row (groups of 8, then 2 one by one), partial sums over several chunks.
      const x = tensor([5, 28, 28, 1], 7) as tf.Tensor4D,
        f = tensor([3, 3, 1, 32], 8) as tf.Tensor4D,
        bias = tensor([32], 9),
        dy = tensor([5, 26, 26, 32], 10) as tf.Tensor4D;
      expectClose(() => tf.fused.conv2d({ x, filter: f, strides: 1, pad: 'valid', bias, activation: 'relu' }));
      expectClose(
        () =>
          tf
            .engine()
            .runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: f.shape } as never) as tf.Tensor,
      );
      tf.dispose([x, f, bias, dy]);
    },
  );

  it('conv2d gradients at a realistic size (MNIST-like, threads split the rows)', () => {
    const x = tensor([16, 28, 28, 3], 1) as tf.Tensor4D,
      f = tensor([5, 5, 3, 16], 2) as tf.Tensor4D;
    const g = tf.grads((a, b) => tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same'))));
    expectClose(() => g([x, f]));
    tf.dispose([x, f]);
  });

  it('convolutions and poolings write every element of an output buffer the pool hands back unzeroed (stale values of a previous call)', () => {
    const pool = nativeBufferPool()!;
    const pooling = { filterSize: 2, strides: 2, pad: 'valid' };
    const ops = (x: tf.Tensor4D, f: tf.Tensor4D, dy: tf.Tensor4D, bias: tf.Tensor1D, pdy: tf.Tensor4D) => [
      tf.conv2d(x, f, 1, 'valid'),
      tf.fused.conv2d({ x, filter: f, strides: 1, pad: 'valid', bias, activation: 'relu' }),
      tf
        .engine()
        .runKernel('Conv2DBackpropInput', { dy, filter: f }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', inputShape: x.shape } as never) as tf.Tensor,
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: f.shape } as never) as tf.Tensor,
      tf.maxPool(dy, 2, 2, 'valid'),
      tf.avgPool(dy, 2, 2, 'valid'),
      tf.engine().runKernel('MaxPoolGrad', { dy: pdy, input: dy, output: tf.maxPool(dy, 2, 2, 'valid') }, pooling as never) as tf.Tensor,
      tf.engine().runKernel('AvgPoolGrad', { dy: pdy, input: dy }, pooling as never) as tf.Tensor,
    ];
    const [xs, fs, dys, pdys] = [
      [4, 12, 12, 3],
      [3, 3, 3, 40],
      [4, 10, 10, 40],
      [4, 5, 5, 40],
    ] as const;
    const nan = (shape: readonly number[]) => tf.fill([...shape], Number.NaN);
    // The outputs of the first calls are NaN (the max pooling's -Infinity), and go back to the pool when disposed.
    tf.dispose(tf.tidy(() => ops(nan(xs) as tf.Tensor4D, nan(fs) as tf.Tensor4D, nan(dys) as tf.Tensor4D, nan([40]) as tf.Tensor1D, nan(pdys) as tf.Tensor4D)));
    const before = pool.reused;
    const args = [tensor([...xs], 1), tensor([...fs], 2), tensor([...dys], 3), tensor([40], 4), tensor([...pdys], 5)] as [
      tf.Tensor4D,
      tf.Tensor4D,
      tf.Tensor4D,
      tf.Tensor1D,
      tf.Tensor4D,
    ];
    expectClose(() => ops(...args));
    expect(pool.reused - before).toBeGreaterThanOrEqual(8);
    tf.dispose(args);
  });

  it('serves an output from the memory of a released one of another length in its size class, and reads it out as an exact copy', () => {
    const pool = nativeBufferPool()!;
    // 1,150 and 1,100 floats share the class of 1,152: the second output is a view of the first's memory.
    const stale = tf.add(tf.fill([1150], Number.NaN), 0);
    const memory = (tf.backend() as unknown as { data: { get(id: object): { values: Float32Array } } }).data.get(stale.dataId).values.buffer;
    stale.dispose();
    const before = pool.reused;
    const x = tensor([1100], 7);
    const y = tf.add(x, 1);
    const inside = (tf.backend() as unknown as { data: { get(id: object): { values: Float32Array } } }).data.get(y.dataId).values;
    expect(pool.reused - before).toBe(1);
    expect(inside.buffer).toBe(memory);
    expect(inside.length).toBe(1100);
    const read = y.dataSync() as Float32Array;
    expect(read.byteLength).toBe(read.buffer.byteLength); // exact: code reading `buffer` sees this tensor's values only
    expect(Array.from(read)).toEqual(Array.from(x.dataSync(), (v) => Math.fround(v + 1)));
    expect(Array.from(tf.mul(y, 2).dataSync())).toEqual(Array.from(read, (v) => Math.fround(v * 2))); // the tensor still computes
    tf.dispose([x, y]);
  });

  it("a dropout mask's array, filled on the host, comes from the pool and goes back to it, with the seed's values", () => {
    const pool = nativeBufferPool()!;
    const x = tensor([64, 64], 9);
    tf.dispose(dropoutMask(x, 0.5, 1, [64, 64])); // its mask and its product go back to the pool
    const before = pool.reused;
    const y = dropoutMask(x, 0.5, 2, [64, 64]);
    expect(pool.reused - before).toBe(2); // the mask's array and the product's
    const u = uniformFloats(2, 64 * 64);
    const xs = x.dataSync();
    expect(Array.from(y.dataSync())).toEqual(Array.from(xs, (v, i) => Math.fround(v * (u[i]! >= 0.5 ? 2 : 0))));
    const own = { name: 'a backend object' } as unknown as tf.KernelBackend;
    expect(hostFloats(5, own)).toHaveLength(5); // none declared: a new array
    const given = new Float32Array(7);
    setHostFloats(own, () => given);
    expect(hostFloats(7, own)).toBe(given);
    setHostFloats(own, null);
    expect(hostFloats(7, own)).not.toBe(given);
    tf.dispose([x, y]);
  });

  it('an empty batch gives a zero filter gradient from an unzeroed pool buffer (the binding fills a sum of no terms with zeros)', () => {
    const filterShape = [3, 3, 3, 40];
    // A stale buffer of the gradient's size back in the pool, which the kernel's output may reuse unzeroed.
    tf.dispose(tf.tidy(() => tf.add(tf.fill(filterShape, Number.NaN), 0)));
    const x = tf.zeros([0, 12, 12, 3]),
      dy = tf.zeros([0, 10, 10, 40]);
    const attrs = { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape };
    expectClose(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as never) as tf.Tensor);
    const dw = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, attrs as never) as tf.Tensor;
    expect(dw.dataSync().every((v) => v === 0)).toBe(true);
    tf.dispose([x, dy, dw]);
  });

  const poolCase = fc
    .record({
      n: dim(3),
      h: dim(9),
      w: dim(9),
      c: dim(5),
      kh: dim(4),
      kw: dim(4),
      sh: dim(3),
      sw: dim(3),
      pad: fc.constantFrom<'same' | 'valid'>('same', 'valid'),
      ties: fc.boolean(),
      seed,
    })
    .filter((p) => p.pad === 'same' || (p.kh <= p.h && p.kw <= p.w));

  kernelProperty(
    'MaxPool, AvgPool and their gradients (ties go to the first maximum, as in tfjs)',
    ['MaxPool', 'AvgPool', 'MaxPoolGrad', 'AvgPoolGrad'],
    () => {
      fc.assert(
        fc.property(poolCase, ({ n, h, w, c, kh, kw, sh, sw, pad, ties, seed: s }) => {
          const x = tensor([n, h, w, c], s, ties ? 'ties' : 'real') as tf.Tensor4D;
          expectClose(() => tf.maxPool(x, [kh, kw], [sh, sw], pad));
          expectClose(() => tf.avgPool(x, [kh, kw], [sh, sw], pad));
          const outShape = tf.backend_util.computePool2DInfo(x.shape, [kh, kw], [sh, sw], 1, pad).outShape;
          const dy = tensor(outShape, s + 1);
          const attrs = { filterSize: [kh, kw], strides: [sh, sw], pad, dimRoundingMode: undefined };
          expectClose(() => {
            const y = tf.maxPool(x, [kh, kw], [sh, sw], pad);
            return tf.engine().runKernel('MaxPoolGrad', { dy, input: x, output: y }, attrs as never) as tf.Tensor;
          });
          expectClose(() => tf.engine().runKernel('AvgPoolGrad', { dy, input: x }, attrs as never) as tf.Tensor);
          tf.dispose([x, dy]);
        }),
        RUNS,
      );
    },
  );

  // Windows that tile the image (stride = window, 'valid'; the usual 2×2 / 2): the vector kernels, blocks of 16
  // channels and a partial one, rows and columns no window covers (their gradient is 0), ties and NaN.
  kernelProperty('MaxPool and MaxPoolGrad over tiling windows: up to 40 channels, uncovered edges, ties, NaN', ['MaxPool', 'MaxPoolGrad'], () => {
    fc.assert(
      fc.property(dim(3), dim(11), dim(11), dim(40), dim(3), dim(3), fc.constantFrom('real', 'ties', 'nan'), seed, (n, h, w, c, kh, kw, kind, s) => {
        // A 1×1 window is tfjs's identity (NaN kept), where a window's maximum skips NaN: no NaN there.
        if (kh > h || kw > w || (kind === 'nan' && kh * kw === 1)) return;
        const xv = data(s, n * h * w * c, kind === 'real' ? 'real' : 'ties');
        if (kind === 'nan') for (let i = 0; i < xv.length; i += 7) xv[i] = Number.NaN;
        const x = tf.tensor(xv, [n, h, w, c]) as tf.Tensor4D;
        expectClose(() => tf.maxPool(x, [kh, kw], [kh, kw], 'valid'));
        const outShape = tf.backend_util.computePool2DInfo(x.shape, [kh, kw], [kh, kw], 1, 'valid').outShape;
        const dy = tensor(outShape, s + 1);
        const attrs = { filterSize: [kh, kw], strides: [kh, kw], pad: 'valid', dimRoundingMode: undefined };
        expectClose(() => {
          const y = tf.maxPool(x, [kh, kw], [kh, kw], 'valid');
          return tf.engine().runKernel('MaxPoolGrad', { dy, input: x, output: y }, attrs as never) as tf.Tensor;
        });
        tf.dispose([x, dy]);
      }),
      RUNS,
    );
  });

  kernelProperty('Softmax over the last axis, any rank', ['Softmax'], () => {
    fc.assert(
      fc.property(fc.array(dim(7), { minLength: 1, maxLength: 3 }), dim(40), seed, (outer, cols, s) => {
        const x = tf.mul(tensor([...outer, cols], s), 4);
        expectClose(() => tf.softmax(x), 1e-5);
        tf.dispose(x);
      }),
      RUNS,
    );
  });

  /** Two shapes that broadcast: a random output shape, each operand dropping leading axes or setting some to 1. */
  const broadcastPair = fc
    .tuple(fc.array(dim(5), { minLength: 0, maxLength: 4 }), fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }))
    .map(([out, r]) => {
      const variant = (o: number) => {
        const drop = r[o]! % (out.length + 1);
        return out.slice(drop).map((d, i) => (r[(o + 2 + i) % 8]! === 0 ? 1 : d));
      };
      return [variant(0), variant(1)] as const;
    });

  const BINARY = {
    Add: tf.add,
    Sub: tf.sub,
    Multiply: tf.mul,
    RealDiv: tf.div,
    Maximum: tf.maximum,
    Minimum: tf.minimum,
    SquaredDifference: tf.squaredDifference,
  } as const;
  kernelProperty('binary elementwise ops with broadcasting', Object.keys(BINARY), () => {
    fc.assert(
      fc.property(fc.constantFrom(...(Object.keys(BINARY) as (keyof typeof BINARY)[])), broadcastPair, fc.boolean(), seed, (name, [sa, sb], ties, s) => {
        const a = tensor(sa, s, ties ? 'ties' : 'real'),
          b = tensor(sb, s + 1, ties ? 'ties' : 'real');
        expectClose(() => (BINARY[name] as (x: tf.Tensor, y: tf.Tensor) => tf.Tensor)(a, b), 1e-5, true);
        tf.dispose([a, b]);
      }),
      { numRuns: 120 },
    );
    // Large enough to be split over threads.
    const a = tensor([64, 257, 33], 3),
      b = tensor([257, 1], 4);
    for (const f of Object.values(BINARY)) expectClose(() => (f as (x: tf.Tensor, y: tf.Tensor) => tf.Tensor)(a, b), 1e-5, true);
    tf.dispose([a, b]);
  });

  const UNARY: Record<string, [(x: tf.Tensor) => tf.Tensor, 'real' | 'ties' | 'positive']> = {
    Relu: [tf.relu, 'ties'],
    Step: [(x) => tf.step(x, 0.25), 'ties'],
    Sqrt: [tf.sqrt, 'positive'],
    Square: [tf.square, 'real'],
    Exp: [tf.exp, 'real'],
    Log: [tf.log, 'positive'],
    Neg: [tf.neg, 'real'],
    Tanh: [tf.tanh, 'real'],
    Sigmoid: [tf.sigmoid, 'real'],
    Abs: [tf.abs, 'real'],
    Rsqrt: [tf.rsqrt, 'positive'],
    Reciprocal: [tf.reciprocal, 'positive'],
    Erf: [tf.erf, 'real'],
  };
  kernelProperty('unary elementwise ops (including NaN/±Inf inputs)', Object.keys(UNARY), () => {
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(UNARY)), fc.array(dim(9), { minLength: 0, maxLength: 3 }), fc.boolean(), seed, (name, shape, real, s) => {
        const [f, kind] = UNARY[name]!;
        const x = tensor(shape, s, real ? 'real' : kind);
        expectClose(() => f(x), 1e-5, true);
        tf.dispose(x);
      }),
      { numRuns: 120 },
    );
    const special = tf.tensor1d([NaN, Infinity, -Infinity, 0, -0, -1, 1e-30, 1e-4, 0.6249, 0.625, -0.625, 9, -9, 20, 88, 88.7, 89, -88, -103, -104, 1e30]);
    for (const [f] of Object.values(UNARY)) expectClose(() => f(special), 1e-5, true);
    const big = tensor([300, 300], 9, 'positive');
    for (const [f] of Object.values(UNARY)) expectClose(() => f(big), 1e-5, true);
    tf.dispose([special, big]);
  });

  kernelProperty('Sum over any axes, keepDims', ['Sum'], () => {
    fc.assert(
      fc.property(
        fc.array(dim(7), { minLength: 1, maxLength: 4 }),
        fc.array(fc.integer({ min: -4, max: 3 }), { maxLength: 3 }),
        fc.boolean(),
        seed,
        (shape, rawAxes, keepDims, s) => {
          const axes = [...new Set(rawAxes.map((a) => ((a % shape.length) + shape.length) % shape.length))];
          const x = tensor(shape, s);
          expectClose(() => tf.sum(x, axes.length ? axes : undefined, keepDims));
          tf.dispose(x);
        },
      ),
      RUNS,
    );
    const x = tensor([128, 513], 4);
    expectClose(() => [tf.sum(x, 0), tf.sum(x, 1), tf.sum(x)]);
    tf.dispose(x);
  });

  it("Sum's and Mean's gradients (dy broadcast by Tile) equal tfjs's own (dy times ones)", () => {
    expect([...originalGradients.keys()].sort()).toEqual(['Mean', 'Sum']);
    fc.assert(
      fc.property(
        fc.array(dim(7), { minLength: 0, maxLength: 4 }),
        fc.array(fc.integer({ min: -4, max: 3 }), { maxLength: 3 }),
        fc.boolean(),
        fc.constantFrom('Sum', 'Mean'),
        seed,
        (shape, rawAxes, keepDims, kernel, s) => {
          const axes = shape.length ? [...new Set(rawAxes.map((a) => ((a % shape.length) + shape.length) % shape.length))] : [];
          const x = tensor(shape, s);
          const op = (t: tf.Tensor) =>
            kernel === 'Sum' ? tf.sum(t, axes.length ? axes : undefined, keepDims) : tf.mean(t, axes.length ? axes : undefined, keepDims);
          const dy = tensor(op(x).shape, s + 1);
          const ours = tf.grad(op)(x, dy);
          const attrs = { axis: axes.length ? axes : null, keepDims };
          const theirs = (originalGradients.get(kernel)!.gradFunc(dy, [x], attrs as never) as { x: () => tf.Tensor }).x();
          expect(ours.shape).toEqual(x.shape);
          expect(Array.from(ours.dataSync())).toEqual(Array.from(theirs.dataSync())); // the same divisions: exact
          tf.dispose([x, dy, ours, theirs]);
        },
      ),
      RUNS,
    );
  });

  kernelProperty('Mean over any axes, keepDims', ['Mean'], () => {
    fc.assert(
      fc.property(
        fc.array(dim(7), { minLength: 1, maxLength: 4 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
        fc.boolean(),
        seed,
        (shape, rawAxes, keepDims, s) => {
          const axes = [...new Set(rawAxes.map((a) => a % shape.length))];
          const x = tensor(shape, s);
          expectClose(() => tf.mean(x, axes.length ? axes : undefined, keepDims));
          tf.dispose(x);
        },
      ),
      RUNS,
    );
  });

  /** A random shape of rank 1..4 and a seed; copies are exact, so these compare with rtol 0. */
  const shaped = fc.tuple(fc.array(dim(6), { minLength: 1, maxLength: 4 }), seed);

  kernelProperty('Transpose: every permutation of ranks 1-4', ['Transpose'], () => {
    fc.assert(
      fc.property(shaped, fc.array(fc.nat(), { minLength: 4, maxLength: 4 }), ([shape, s], keys) => {
        const perm = shape.map((_, i) => i).sort((p, q) => keys[p]! - keys[q]! || p - q);
        const x = tensor(shape, s);
        expectClose(() => tf.transpose(x, perm), 0);
        tf.dispose(x);
      }),
      RUNS,
    );
  });

  kernelProperty('Slice (float32, int32, bool), SplitV and Unpack (tf.slice, tf.split, tf.unstack)', ['Slice', 'SplitV', 'Unpack'], () => {
    fc.assert(
      fc.property(shaped, fc.array(fc.nat(), { minLength: 8, maxLength: 8 }), ([shape, s], r) => {
        const x = tensor(shape, s);
        const begin = shape.map((d, i) => r[i]! % d);
        const sz = shape.map((d, i) => (r[i + 4]! % 3 === 0 ? -1 : 1 + (r[i + 4]! % (d - begin[i]!))));
        const axis = r[0]! % shape.length;
        const n = shape[axis]!;
        const sizes = n >= 2 ? [1, n - 1] : [n];
        expectClose(() => tf.slice(x, begin, sz), 0);
        const xi = tf.cast(tf.mul(x, 1000), 'int32'),
          xb = tf.greater(x, 0);
        expectSame(() => tf.slice(xi, begin, sz));
        expectSame(() => tf.slice(xb, begin, sz));
        tf.dispose([xi, xb]);
        expectClose(() => tf.split(x, sizes, axis), 0);
        expectClose(() => tf.split(x, 1, axis), 0);
        expectClose(() => tf.unstack(x, axis), 0);
        tf.dispose(x);
      }),
      RUNS,
    );
  });

  kernelProperty("PadV2 (tf.pad with any constant, and the gradient of tf.slice, which pads dy back to x's shape)", ['PadV2'], () => {
    fc.assert(
      fc.property(
        shaped,
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 })), { minLength: 4, maxLength: 4 }),
        fc.constantFrom(0, -0, 1.5, -7, Number.NaN, Number.POSITIVE_INFINITY, 1e-40),
        ([shape, s], pads, value) => {
          const x = tensor(shape, s);
          const paddings = shape.map((_, i) => pads[i]!);
          expectSame(() => tf.pad(x, paddings, value));
          // The gradient of a slice is dy padded with zeros to x's shape: each element of x once, where it was read.
          const begin = shape.map((d, i) => Math.min(pads[i]![0], d - 1));
          const sz = shape.map((d, i) => Math.max(1, d - begin[i]! - pads[i]![1]));
          const dy = tensor(sz, s + 1);
          expectSame(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.slice(t, begin, sz), dy)))(x));
          tf.dispose([x, dy]);
        },
      ),
      RUNS,
    );
    // An element-by-element check against the definition (not only against tfjs's kernel): -0 and NaN stay as given.
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]);
    const y = tf.pad(
      x,
      [
        [1, 0],
        [0, 2],
      ],
      -0,
    );
    expect(y.shape).toEqual([3, 5]);
    const v = Array.from(y.dataSync());
    expect(v.slice(0, 5).every((e) => Object.is(e, -0))).toBe(true);
    expect(v.slice(5)).toEqual([1, 2, 3, -0, -0, 4, 5, 6, -0, -0]);
    tf.dispose([x, y]);
  });

  kernelProperty('Concat and Pack (tf.concat including empty parts, tf.stack)', ['Concat', 'Pack'], () => {
    fc.assert(
      fc.property(shaped, fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 4 }), fc.nat(), ([shape, s], lens, r) => {
        const axis = r % shape.length;
        const parts = lens.map((len, i) =>
          tensor(
            shape.map((d, j) => (j === axis ? len : d)),
            s + i,
          ),
        );
        if (lens.some((l) => l > 0)) expectClose(() => tf.concat(parts, axis), 0);
        const same = lens.map((_, i) => tensor(shape, s + 10 + i));
        expectClose(() => tf.stack(same, r % (shape.length + 1)), 0);
        tf.dispose([...parts, ...same]);
      }),
      RUNS,
    );
  });

  kernelProperty('UnsortedSegmentSum (the embedding gradient): any row shape, repeated and out-of-range ids', ['UnsortedSegmentSum'], () => {
    fc.assert(
      fc.property(dim(12), fc.array(dim(4), { minLength: 0, maxLength: 2 }), dim(7), seed, (n, inner, segments, s) => {
        const ids = tf.tensor1d(
          Int32Array.from({ length: n }, (_, i) => ((i * 7 + s) % (segments + 2)) - 1),
          'int32',
        );
        const x = tensor([n, ...inner], s);
        expectClose(() => tf.unsortedSegmentSum(x, ids, segments), 1e-6, true);
        tf.dispose([ids, x]);
      }),
      { numRuns: 40 },
    );
  });

  /** Like expectClose(op, 0), and the dtypes must agree too. */
  const expectSame = (op: () => tf.Tensor) => {
    const dtypes = [tf.tidy(() => op().dtype), withOriginals(() => tf.tidy(() => op().dtype))];
    expect(dtypes[0]).toBe(dtypes[1]);
    expectClose(op, 0);
  };

  kernelProperty('Tile (float32, int32, bool; every rank 0-4) and tf.where broadcasting through it', ['Tile'], () => {
    fc.assert(
      fc.property(
        fc.array(dim(4), { minLength: 0, maxLength: 4 }),
        fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 4, maxLength: 4 }),
        seed,
        (shape, r, s) => {
          const reps = shape.map((_, i) => r[i]!);
          const x = tensor(shape, s, 'ties');
          const xi = tf.cast(x, 'int32'),
            xb = tf.greater(x, 0);
          for (const t of [x, xi, xb]) expectSame(() => tf.tile(t, reps));
          expectSame(() => tf.where(xb, x, tf.scalar(-Infinity)));
          tf.dispose([x, xi, xb]);
        },
      ),
      RUNS,
    );
  });

  kernelProperty('Cast from bool to float32 stores float32 values', ['Cast'], () => {
    fc.assert(
      fc.property(fc.array(dim(6), { minLength: 0, maxLength: 3 }), seed, (shape, s) => {
        const x = tensor(shape, s, 'ties');
        const mask = tf.greaterEqual(x, 0);
        expectSame(() => tf.cast(mask, 'float32'));
        expectSame(() => tf.cast(x, 'int32'));
        const f = tf.cast(mask, 'float32');
        expect(f.dataSync()).toBeInstanceOf(Float32Array);
        tf.dispose([x, mask, f]);
      }),
      RUNS,
    );
  });

  kernelProperty('GatherV2 along axis 0 (embedding lookups), with repeated ids; other axes and bad ids go to the original', ['GatherV2'], () => {
    fc.assert(
      fc.property(
        dim(9),
        fc.array(dim(20), { minLength: 0, maxLength: 2 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 12 }),
        seed,
        (rows, inner, picks, s) => {
          const x = tensor([rows, ...inner], s);
          const ids = tf.tensor1d(
            picks.map((p) => p % rows),
            'int32',
          );
          const ids2d = tf.reshape(ids, [1, picks.length]);
          expectSame(() => tf.gather(x, ids));
          expectSame(() => tf.gather(x, ids2d));
          expectSame(() => tf.gather(tf.cast(x, 'int32'), ids));
          if (inner.length) expectSame(() => tf.gather(x, tf.tensor1d([0], 'int32'), 1));
          tf.dispose([x, ids, ids2d]);
        },
      ),
      RUNS,
    );
    const x = tensor([3, 2], 1);
    expect(() => tf.gather(x, tf.tensor1d([3], 'int32'))).toThrow(/GatherV2: the index value 3 is not in \[0, 2\]/);
    x.dispose();
  });

  const PREDICATES = {
    Equal: tf.equal,
    NotEqual: tf.notEqual,
    Greater: tf.greater,
    GreaterEqual: tf.greaterEqual,
    Less: tf.less,
    LessEqual: tf.lessEqual,
  } as const;
  kernelProperty(
    'comparisons and logical and/or with broadcasting (ties, NaN), returning bool',
    [...Object.keys(PREDICATES), 'LogicalAnd', 'LogicalOr'],
    () => {
      fc.assert(
        fc.property(
          fc.constantFrom(...(Object.keys(PREDICATES) as (keyof typeof PREDICATES)[])),
          broadcastPair,
          fc.boolean(),
          seed,
          (name, [sa, sb], nan, s) => {
            const a = tensor(sa, s, 'ties'),
              b = nan ? tf.fill(sb, NaN) : tensor(sb, s + 1, 'ties');
            const ai = tf.cast(a, 'int32'),
              bi = tf.cast(b, 'int32');
            expectSame(() => PREDICATES[name](a, b));
            expectSame(() => PREDICATES[name](ai, bi));
            const pa = tf.greater(a, 0),
              pb = tf.less(b, 1);
            expectSame(() => tf.logicalAnd(pa, pb));
            expectSame(() => tf.logicalOr(pa, pb));
            tf.dispose([a, b, ai, bi, pa, pb]);
          },
        ),
        { numRuns: 80 },
      );
    },
  );

  kernelProperty("LoomAdam matches Kingma & Ba's update composed from tfjs ops", ['LoomAdam'], () => {
    fc.assert(
      fc.property(fc.array(dim(9), { minLength: 0, maxLength: 3 }), fc.integer({ min: 1, max: 50 }), seed, (shape, t, s) => {
        const [param, grad, m] = [tensor(shape, s), tensor(shape, s + 1), tensor(shape, s + 2)];
        const v = tf.square(tensor(shape, s + 3));
        const attrs = { lr: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-7, c1: 1 - 0.9 ** t, c2: 1 - 0.999 ** t };
        const [p2, m2, v2] = tf.engine().runKernel('LoomAdam', { param, grad, m, v }, attrs as never) as tf.Tensor[];
        const wantM = tf.add(tf.mul(m, attrs.beta1), tf.mul(grad, 1 - attrs.beta1));
        const wantV = tf.add(tf.mul(v, attrs.beta2), tf.mul(tf.square(grad), 1 - attrs.beta2));
        const wantP = tf.sub(param, tf.div(tf.mul(tf.div(wantM, attrs.c1), attrs.lr), tf.add(tf.sqrt(tf.div(wantV, attrs.c2)), attrs.epsilon)));
        for (const [got, want] of [
          [p2, wantP],
          [m2, wantM],
          [v2, wantV],
        ] as const) {
          expect(got!.shape).toEqual(want.shape);
          const g = got!.dataSync(),
            w = want.dataSync();
          for (let i = 0; i < w.length; i++) expect(Math.abs(g[i]! - w[i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(w[i]!)));
        }
        tf.dispose([param, grad, m, v, p2!, m2!, v2!, wantM, wantV, wantP]);
      }),
      { numRuns: 20 },
    );
  });

  // The kernel is vectorised per SIMD level with contraction off, so that every level rounds exactly as the scalar
  // expression does and recorded runs replay bit for bit. A float32 reference of that expression, one rounding per
  // operation (Math.fround of a double result is the float32 operation's result for +, −, ×, ÷ and √), must match
  // every bit, at sizes with vector remainders and sizes the pool splits between threads.
  kernelProperty('LoomAdam rounds exactly as the scalar float32 expression, at every size', ['LoomAdam'], () => {
    const f = Math.fround;
    fc.assert(
      fc.property(fc.constantFrom(1, 15, 17, 1000, 70_001), fc.integer({ min: 1, max: 500 }), seed, (n, t, s) => {
        const [param, grad, m] = [tensor([n], s), tensor([n], s + 1), tensor([n], s + 2)];
        const v = tf.square(tensor([n], s + 3));
        const attrs = { lr: 0.003, beta1: 0.9, beta2: 0.999, epsilon: 1e-7, c1: 1 - 0.9 ** t, c2: 1 - 0.999 ** t };
        const outs = tf.engine().runKernel('LoomAdam', { param, grad, m, v }, attrs as never) as tf.Tensor[];
        const [P, G, M, V] = [param, grad, m, v].map((x) => x.dataSync());
        const [lr, b1, b2, eps, c1, c2] = [attrs.lr, attrs.beta1, attrs.beta2, attrs.epsilon, attrs.c1, attrs.c2].map(f) as number[];
        const a1 = f(1 - b1!),
          a2 = f(1 - b2!);
        const want = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
        for (let i = 0; i < n; i++) {
          const g = G[i]!;
          const mi = f(f(b1! * M[i]!) + f(a1 * g));
          const vi = f(f(b2! * V[i]!) + f(f(a2 * g) * g));
          want[1]![i] = mi;
          want[2]![i] = vi;
          want[0]![i] = f(P[i]! - f(lr! * f(f(mi / c1!) / f(f(Math.sqrt(f(vi / c2!))) + eps!))));
        }
        outs.forEach((o, k) => {
          const got = new Uint32Array(Float32Array.from(o.dataSync()).buffer),
            bits = new Uint32Array(want[k]!.buffer);
          const first = bits.findIndex((b, i) => b !== got[i]);
          expect(first, `output ${k}, first differing element`).toBe(-1);
        });
        tf.dispose([param, grad, m, v, ...outs]);
      }),
      { numRuns: 12 },
    );
  });

  // LoomSGD replaces the composed ops of plugins/optimizers/sgd.ts, so it must give their bits: against a float32
  // reference with one rounding per operation in the composed order, and against the composed tfjs ops themselves,
  // with and without weight decay, momentum and Nesterov, at sizes with vector remainders and sizes split over threads.
  kernelProperty('LoomSGD rounds exactly as the composed SGD update (decay, momentum, Nesterov), at every size', ['LoomSGD'], () => {
    const f = Math.fround;
    const bitsOf = (x: ArrayLike<number>) => new Uint32Array(Float32Array.from(x).buffer);
    fc.assert(
      fc.property(
        fc.constantFrom(1, 15, 17, 1000, 70_001),
        fc.constantFrom(0.1, 35, 0.0123),
        fc.constantFrom(0, 1e-7 / 35, 0.01),
        fc.constantFrom(0, 0.9),
        fc.boolean(),
        seed,
        (n, lr, decay, mu, nesterov, s) => {
          const [param, grad, b] = [tensor([n], s), tensor([n], s + 1), tensor([n], s + 2)];
          const inputs: tf.NamedTensorMap = mu === 0 ? { param, grad } : { param, grad, momentum: b };
          const outs = tf.engine().runKernel('LoomSGD', inputs, { lr, decay, momentum: mu, nesterov: nesterov ? 1 : 0 } as never) as tf.Tensor[];
          expect(outs.length).toBe(mu === 0 ? 1 : 2);
          // The float32 reference.
          const [P, G, B] = [param, grad, b].map((x) => x.dataSync());
          const [a, l, m] = [lr, decay, mu].map(f) as [number, number, number];
          const wantP = new Float32Array(n),
            wantB = new Float32Array(n);
          for (let i = 0; i < n; i++) {
            const g = l === 0 ? G[i]! : f(G[i]! + f(P[i]! * l));
            if (mu === 0) wantP[i] = f(P[i]! - f(g * a));
            else {
              const bi = f(f(B[i]! * m) + g);
              wantB[i] = bi;
              wantP[i] = f(P[i]! - f((nesterov ? f(g + f(bi * m)) : bi) * a));
            }
          }
          // The composed ops, as sgd.ts runs them without the kernel.
          const composed = tf.tidy(() => {
            const g = decay > 0 ? tf.add(grad, tf.mul(param, decay)) : grad;
            if (mu === 0) return [tf.sub(param, tf.mul(g, lr))];
            const bb = tf.add(tf.mul(b, mu), g);
            return [tf.sub(param, tf.mul(nesterov ? tf.add(g, tf.mul(bb, mu)) : bb, lr)), bb];
          });
          const wants = mu === 0 ? [wantP] : [wantP, wantB];
          outs.forEach((o, k) => {
            const got = bitsOf(o.dataSync());
            expect(
              bitsOf(wants[k]!).findIndex((x, i) => x !== got[i]),
              `output ${k} vs the float32 reference: first differing element`,
            ).toBe(-1);
            expect(
              bitsOf(composed[k]!.dataSync()).findIndex((x, i) => x !== got[i]),
              `output ${k} vs the composed ops`,
            ).toBe(-1);
          });
          tf.dispose([param, grad, b, ...outs, ...composed]);
        },
      ),
      { numRuns: 24 },
    );
  });

  /** Asserts |got − want| ≤ rtol·(|want| + max(1, max|want|)) elementwise (NaN matching NaN). */
  const expectNear = (got: tf.Tensor, want: tf.Tensor, rtol: number) => {
    expect(got.shape).toEqual(want.shape);
    const g = got.dataSync(),
      w = want.dataSync();
    let scale = 1;
    for (const v of w) if (Number.isFinite(v)) scale = Math.max(scale, Math.abs(v));
    for (let i = 0; i < w.length; i++) {
      if (Number.isNaN(w[i]!)) expect(g[i]).toBeNaN();
      else if (!(Math.abs(g[i]! - w[i]!) <= rtol * (Math.abs(w[i]!) + scale))) expect.fail(`[${i}]: ${g[i]}, expected ${w[i]} (rtol ${rtol})`);
    }
  };

  kernelProperty(
    'LoomSoftmax and LoomSoftmaxGrad match tf.softmax and y ⊙ (dy − Σ dy ⊙ y) over the last axis (threads split large inputs)',
    ['LoomSoftmax', 'LoomSoftmaxGrad'],
    () => {
      const check = (shape: number[], s: number) => {
        const x = tf.mul(tensor(shape, s), 4),
          dy = tensor(shape, s + 1);
        const y = tf.engine().runKernel('LoomSoftmax', { logits: x }) as tf.Tensor;
        const want = withOriginals(() => tf.softmax(x));
        expectNear(y, want, 1e-5);
        const dx = tf.engine().runKernel('LoomSoftmaxGrad', { dy, y }) as tf.Tensor;
        const wantDx = withOriginals(() => tf.mul(y, tf.sub(dy, tf.sum(tf.mul(dy, y), -1, true))));
        expectNear(dx, wantDx, 1e-5);
        tf.dispose([x, dy, y, want, dx, wantDx]);
      };
      fc.assert(
        fc.property(fc.array(dim(6), { minLength: 0, maxLength: 3 }), dim(70), seed, (outer, cols, s) => check([...outer, cols], s)),
        RUNS,
      );
      check([263, 131], 7);
    },
  );

  kernelProperty(
    'LoomLayerNorm and LoomLayerNormGrad match layer norm composed from tfjs ops and its autodiff gradients (threads split large inputs)',
    ['LoomLayerNorm', 'LoomLayerNormGrad'],
    () => {
      const check = (shape: number[], s: number, epsilon: number) => {
        const cols = shape.at(-1)!;
        // Offset and scaled, so that the moments are not those of standard data.
        const x = tf.add(tf.mul(tensor(shape, s), 3), 2),
          dy = tensor(shape, s + 1),
          gamma = tensor([cols], s + 2),
          beta = tensor([cols], s + 3);
        const composed = (xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
          const centred = tf.sub(xs, tf.mean(xs, -1, true));
          return tf.add(tf.mul(tf.mul(centred, tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), epsilon))), g), b);
        };
        const y = tf.engine().runKernel('LoomLayerNorm', { x, gamma, beta }, { epsilon }) as tf.Tensor;
        const want = withOriginals(() => composed(x, gamma, beta));
        expectNear(y, want, 1e-4);
        const grads = tf.engine().runKernel('LoomLayerNormGrad', { dy, x, gamma }, { epsilon }) as tf.Tensor[];
        const wantGrads = withOriginals(() => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => composed(a, b, c))([x, gamma, beta], dy));
        grads.forEach((g, i) => expectNear(g, wantGrads[i]!, 1e-3));
        tf.dispose([x, dy, gamma, beta, y, want, ...grads, ...wantGrads]);
      };
      fc.assert(
        fc.property(fc.array(dim(6), { minLength: 0, maxLength: 3 }), dim(70), seed, fc.constantFrom(1e-5, 1e-3), (outer, cols, s, eps) =>
          check([...outer, cols], s, eps),
        ),
        RUNS,
      );
      check([263, 131], 11, 1e-5);
    },
  );

  kernelProperty(
    'LoomAttention and LoomAttentionGrad match attention composed from tfjs ops (key masks, causal, fully masked rows)',
    ['LoomAttention', 'LoomAttentionGrad'],
    () => {
      const check = (b: number, t: number, heads: number, dk: number, causal: boolean, masked: boolean, s: number) => {
        const d = heads * dk;
        const qkv = tensor([b, t, 3 * d], s),
          dy = tensor([b, t, d], s + 1);
        // Padding at the end of each sequence; the last sequence fully masked when b > 1 (a uniform row).
        const keep = tf.tensor(
          Float32Array.from({ length: b * t }, (_, i) =>
            !masked ? 1 : Math.floor(i / t) === b - 1 && b > 1 ? 0 : i % t < t - (Math.floor(i / t) % t) ? 1 : 0,
          ),
          [b, t],
        );
        const composed = (x: tf.Tensor) => referenceSelfAttention(x, heads, keep, causal);
        const [context, probs] = tf.engine().runKernel('LoomAttention', { qkv, keep }, { numHeads: heads, causal }) as tf.Tensor[];
        const want = withOriginals(() => composed(qkv));
        expectNear(context!, want, 1e-4);
        const dqkv = tf.engine().runKernel('LoomAttentionGrad', { dy, qkv, keep, probs: probs! }, { numHeads: heads, causal }) as tf.Tensor;
        const wantGrad = withOriginals(() => tf.grad((x: tf.Tensor) => composed(x))(qkv, dy));
        expectNear(dqkv, wantGrad, 1e-3);
        tf.dispose([qkv, dy, keep, context!, probs!, want, dqkv, wantGrad]);
      };
      fc.assert(
        fc.property(dim(3), dim(9), dim(3), dim(9), fc.boolean(), fc.boolean(), seed, (b, t, heads, dk, causal, masked, s) =>
          check(b, t, heads, dk, causal, masked, s),
        ),
        RUNS,
      );
      check(4, 64, 4, 64, true, true, 5); // the benchmark's head size: products large enough to pack
    },
  );

  kernelProperty(
    'LoomCachedAttention writes the new key and value into row `length` in place and equals the composed ops over the first length + 1 rows, bit for bit',
    ['LoomCachedAttention'],
    () => {
      const check = (b: number, heads: number, dk: number, capacity: number, length: number, s: number) => {
        const d = heads * dk;
        const qkv = tensor([b, 3 * d], s);
        const k = tensor([b, heads, capacity, dk], s + 1),
          v = tensor([b, heads, capacity, dk], s + 2);
        const [k0, v0] = [Float32Array.from(k.dataSync()), Float32Array.from(v.dataSync())];
        const context = tf.engine().runKernel('LoomCachedAttention', { qkv, k, v }, { numHeads: heads, length }) as tf.Tensor;
        // The composed ops of multi-head-attention.ts on the same (now written) cache, as [b, heads, time, dk].
        const want = tf.tidy(() => {
          const [q, kNew, vNew] = tf.unstack(tf.transpose(tf.reshape(qkv, [b, 1, 3, heads, dk]), [2, 0, 3, 1, 4]), 0) as tf.Tensor[];
          const rows = (x: tf.Tensor) => tf.slice(x, [0, 0, 0, 0], [-1, -1, length + 1, -1]);
          // Row `length` now holds the new key and value; the rows before and after it are untouched.
          const written = (x: tf.Tensor, before: Float32Array, row: tf.Tensor) =>
            tf.concat(
              [
                tf.slice(tf.tensor(before, x.shape), [0, 0, 0, 0], [-1, -1, length, -1]),
                row,
                tf.slice(tf.tensor(before, x.shape), [0, 0, length + 1, 0], [-1, -1, -1, -1]),
              ],
              2,
            );
          expect(Array.from(k.dataSync())).toEqual(Array.from(written(k, k0, kNew!).dataSync()));
          expect(Array.from(v.dataSync())).toEqual(Array.from(written(v, v0, vNew!).dataSync()));
          const probs = softmax(tf.mul(tf.matMul(q!, rows(k), false, true), 1 / Math.sqrt(dk)));
          return tf.reshape(tf.transpose(tf.matMul(probs, rows(v)), [0, 2, 1, 3]), [b, d]);
        });
        expect(context.shape).toEqual([b, d]);
        expect(Array.from(context.dataSync())).toEqual(Array.from(want.dataSync()));
        tf.dispose([qkv, k, v, context, want]);
      };
      fc.assert(
        fc.property(dim(3), dim(4), dim(9), dim(12), seed, (b, heads, dk, capacity, s) => check(b, heads, dk, capacity, s % capacity, s)),
        RUNS,
      );
      check(1, 6, 64, 512, 300, 3); // the benchmark's GPT: d 384, 6 heads, a long cache
      expect(() =>
        tf
          .engine()
          .runKernel('LoomCachedAttention', { qkv: tf.zeros([1, 12]), k: tf.zeros([1, 2, 4, 2]), v: tf.zeros([1, 2, 4, 2]) }, { numHeads: 2, length: 4 }),
      ).toThrow(/do not fit 2 heads/);
    },
  );

  kernelProperty(
    "LoomMemoryAttention equals the composed ops on the repeated memory bit for bit, and a float64 reference within float32's rounding",
    ['LoomMemoryAttention'],
    () => {
      const check = (items: number, repeat: number, heads: number, dk: number, keys: number, masked: boolean, s: number) => {
        const d = heads * dk,
          rows = items * repeat;
        const q = tensor([rows, d], s);
        const k = tensor([items, heads, keys, dk], s + 1),
          v = tensor([items, heads, keys, dk], s + 2);
        // Masked: each row keeps a prefix of its keys (at least one), and the last row none when there are 2 or more
        // (a uniform row: every score −1e9).
        const keepValues = Float32Array.from({ length: rows * keys }, (_, i) => {
          const r = Math.floor(i / keys);
          return rows > 1 && r === rows - 1 ? 0 : i % keys <= (r * 7 + s) % keys ? 1 : 0;
        });
        const keep = masked ? tf.tensor(keepValues, [rows, keys]) : null;
        const inputs: tf.NamedTensorMap = keep ? { q, k, v, keep } : { q, k, v };
        const context = tf.engine().runKernel('LoomMemoryAttention', inputs, { numHeads: heads, repeat }) as tf.Tensor;
        // The composed ops of multi-head-attention.ts (`weights` and `attend`) on the memory repeated row by row.
        const want = tf.tidy(() => {
          const ids = Int32Array.from({ length: rows }, (_, r) => Math.floor(r / repeat));
          const [kr, vr] = [tf.gather(k, ids), tf.gather(v, ids)];
          const qh = tf.transpose(tf.reshape(q, [rows, 1, heads, dk]), [0, 2, 1, 3]);
          const raw = tf.matMul(qh, kr, false, true);
          const scale = 1 / Math.sqrt(dk);
          let scores = tf.mul(raw, scale);
          if (keep) {
            const m = tf.cast(tf.reshape(tf.notEqual(keep, 0), [rows, 1, 1, keys]), 'float32');
            scores = tf.add(tf.mul(raw, tf.mul(m, scale)), tf.mul(tf.sub(m, 1), 1e9));
          }
          return tf.reshape(tf.transpose(tf.matMul(softmax(scores), vr), [0, 2, 1, 3]), [rows, d]);
        });
        expect(context.shape).toEqual([rows, d]);
        expect(Array.from(context.dataSync())).toEqual(Array.from(want.dataSync()));
        // float64: context[r, h·dk + c] = Σ_j softmax_j(q·k_j/√dk, −∞ where masked; uniform if all are) v[j, c].
        const [qv, kv, vv, got] = [q.dataSync(), k.dataSync(), v.dataSync(), context.dataSync()];
        for (let r = 0; r < rows; r++)
          for (let h = 0; h < heads; h++) {
            const base = (Math.floor(r / repeat) * heads + h) * keys * dk;
            const kept = (j: number) => !keep || keepValues[r * keys + j] !== 0;
            const anyKept = Array.from({ length: keys }, (_, j) => kept(j)).some(Boolean);
            const sc = Array.from({ length: keys }, (_, j) => {
              let dot = 0;
              for (let c = 0; c < dk; c++) dot += qv[r * d + h * dk + c]! * kv[base + j * dk + c]!;
              return dot / Math.sqrt(dk);
            });
            const mx = Math.max(...sc.filter((_, j) => kept(j) || !anyKept));
            const w = sc.map((x, j) => (!anyKept ? 1 : kept(j) ? Math.exp(x - mx) : 0));
            const total = w.reduce((a, b) => a + b, 0);
            for (let c = 0; c < dk; c++) {
              let ref = 0,
                mag = 0;
              for (let j = 0; j < keys; j++) {
                ref += (w[j]! / total) * vv[base + j * dk + c]!;
                mag += (w[j]! / total) * Math.abs(vv[base + j * dk + c]!);
              }
              const err = Math.abs(got[r * d + h * dk + c]! - ref);
              if (!(err <= 1e-5 * (mag + 1) * Math.max(4, dk))) expect.fail(`context[${r}, ${h * dk + c}]: ${got[r * d + h * dk + c]}, float64 ${ref}`);
            }
          }
        tf.dispose([q, k, v, context, want, ...(keep ? [keep] : [])]);
      };
      fc.assert(
        fc.property(dim(3), dim(4), dim(3), dim(9), dim(12), fc.boolean(), seed, (items, repeat, heads, dk, keys, masked, s) =>
          check(items, repeat, heads, dk, keys, masked, s),
        ),
        RUNS,
      );
      check(64, 4, 4, 64, 24, true, 3); // the benchmark's G2P beam search: d 256, 4 heads, beam 4, 24 source positions, on the pool
      expect(() =>
        tf.engine().runKernel('LoomMemoryAttention', { q: tf.zeros([6, 4]), k: tf.zeros([2, 2, 3, 2]), v: tf.zeros([2, 2, 3, 2]) }, { numHeads: 2, repeat: 2 }),
      ).toThrow(/LoomMemoryAttention: q \[6,4\], k \[2,2,3,2\], v \[2,2,3,2\] and repeat 2 do not fit 2 heads/);
    },
  );

  kernelProperty(
    "LoomDecoderStep computes a pre-norm decoder-only block's step (GPT's) as a float64 reference does, and writes the new key and value into row `length`",
    ['LoomDecoderStep'],
    () => {
      // The block in float64 from the same float32 inputs: y = x + Attn(LN1(x)) W_o + b_o, out = y + act(LN2(y) W_1 + b_1) W_2 + b_2.
      const check = (
        rows: number,
        heads: number,
        dk: number,
        ff: number,
        capacity: number,
        length: number,
        act: 'linear' | 'relu' | 'gelu-tanh',
        s: number,
      ) => {
        const d = heads * dk;
        const shapes: Record<string, number[]> = {
          x: [rows, d],
          norm1Gamma: [d],
          norm1Beta: [d],
          qkvKernel: [d, 3 * d],
          qkvBias: [3 * d],
          outKernel: [d, d],
          outBias: [d],
          norm2Gamma: [d],
          norm2Beta: [d],
          ff1Kernel: [d, ff],
          ff1Bias: [ff],
          ff2Kernel: [ff, d],
          ff2Bias: [d],
          k: [rows, heads, capacity, dk],
          v: [rows, heads, capacity, dk],
        };
        const t = Object.fromEntries(Object.entries(shapes).map(([name, shape], i) => [name, tensor(shape, s + i)]));
        const w = Object.fromEntries(Object.entries(t).map(([name, x]) => [name, Array.from(x.dataSync())]));
        const eps = [1e-5, 1e-3];
        const y = tf.engine().runKernel('LoomDecoderStep', t, {
          numHeads: heads,
          length,
          epsilon1: eps[0],
          epsilon2: eps[1],
          activation: act,
          ff2Activation: 'linear',
        }) as tf.Tensor;
        const norm = (x: number[], g: number[], b: number[], e: number) => {
          const mu = x.reduce((a, v) => a + v, 0) / x.length;
          const sd = Math.sqrt(x.reduce((a, v) => a + (v - mu) ** 2, 0) / x.length + e);
          return x.map((v, j) => ((v - mu) / sd) * g[j]! + b[j]!);
        };
        const dense = (x: number[], kernel: number[], bias: number[], n: number) => bias.map((b0, j) => x.reduce((a, v, i) => a + v * kernel[i * n + j]!, b0));
        const f = (z: number) =>
          act === 'relu' ? Math.max(0, z) : act === 'linear' ? z : 0.5 * z * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (z + 0.044715 * z ** 3)));
        const got = y.dataSync();
        const [kOut, vOut] = [t.k!.dataSync(), t.v!.dataSync()];
        for (let r = 0; r < rows; r++) {
          const x = w.x!.slice(r * d, (r + 1) * d);
          const qkv = dense(norm(x, w.norm1Gamma!, w.norm1Beta!, eps[0]!), w.qkvKernel!, w.qkvBias!, 3 * d);
          const context: number[] = [];
          for (let h = 0; h < heads; h++) {
            const at = (c: number[], p: number) => c.slice(((r * heads + h) * capacity + p) * dk, ((r * heads + h) * capacity + p + 1) * dk);
            const q = qkv.slice(h * dk, (h + 1) * dk);
            const keys = [...Array.from({ length }, (_, p) => at(w.k!, p)), qkv.slice(d + h * dk, d + (h + 1) * dk)];
            const vals = [...Array.from({ length }, (_, p) => at(w.v!, p)), qkv.slice(2 * d + h * dk, 2 * d + (h + 1) * dk)];
            const scores = keys.map((kk) => kk.reduce((a, v, i) => a + v * q[i]!, 0) / Math.sqrt(dk));
            const top = Math.max(...scores);
            const e = scores.map((v) => Math.exp(v - top));
            const z = e.reduce((a, v) => a + v, 0);
            for (let i = 0; i < dk; i++) context.push(vals.reduce((a, vv, p) => a + (e[p]! / z) * vv[i]!, 0));
            // The new position's key and value, in row `length` of this head's block.
            const row = (c: Float32Array | Int32Array | Uint8Array) =>
              Array.from(c.slice(((r * heads + h) * capacity + length) * dk, ((r * heads + h) * capacity + length + 1) * dk));
            // The new key and value are float32 products of depth d: within float32's rounding of each one's terms
            // (Σ|h_i·W_ij| + |b_j|, from the same layer norm), not of its possibly cancelling sum, plus the layer norm's
            // own rounding: x_i − μ is rounded at the scale of |x_i| + mean|x| and divided by σ, which amplifies it
            // where the row's variance is small beside ε (a row of two nearly equal values: up to 1/√ε ≈ 316×).
            const mean = x.reduce((a, v) => a + v, 0) / d;
            const sigma = Math.sqrt(x.reduce((a, v) => a + (v - mean) ** 2, 0) / d + eps[0]!);
            const meanAbs = x.reduce((a, v) => a + Math.abs(v), 0) / d;
            const lnError = x.map((v, i) => (Math.abs(w.norm1Gamma![i]!) * (Math.abs(v) + meanAbs)) / sigma);
            const terms = norm(x, w.norm1Gamma!, w.norm1Beta!, eps[0]!).map((v, i) => Math.abs(v) + lnError[i]!);
            const bound = dense(terms, w.qkvKernel!.map(Math.abs), w.qkvBias!.map(Math.abs), 3 * d);
            const near = (a: number[], b: number[], at: number) =>
              a.forEach((v, i) => expect(Math.abs(v - b[i]!)).toBeLessThanOrEqual(1e-5 * (1 + bound[at + i]!)));
            near(row(kOut), keys[length]!, d + h * dk);
            near(row(vOut), vals[length]!, 2 * d + h * dk);
          }
          const mid = dense(context, w.outKernel!, w.outBias!, d).map((v, j) => v + x[j]!);
          const hidden = dense(norm(mid, w.norm2Gamma!, w.norm2Beta!, eps[1]!), w.ff1Kernel!, w.ff1Bias!, ff).map(f);
          const want = dense(hidden, w.ff2Kernel!, w.ff2Bias!, d).map((v, j) => v + mid[j]!);
          want.forEach((v, j) => expect(Math.abs(got[r * d + j]! - v)).toBeLessThanOrEqual(2e-4 * (1 + Math.abs(v))));
        }
        expect(y.shape).toEqual([rows, d]);
        tf.dispose([...Object.values(t), y]);
      };
      const acts = fc.constantFrom('linear' as const, 'relu' as const, 'gelu-tanh' as const);
      fc.assert(
        fc.property(dim(3), dim(3), dim(6), dim(9), dim(8), acts, seed, (rows, heads, dk, ff, capacity, act, s) =>
          check(rows, heads, dk, ff, capacity, s % capacity, act, s),
        ),
        RUNS,
      );
      check(1, 6, 64, 1536, 40, 33, 'gelu-tanh', 3); // the benchmark GPT's block: d 384
      check(3, 2, 1, 1, 1, 0, 'linear', 2147483621); // rows of two nearly equal values: a layer norm far from its variance
      expect(() =>
        tf.engine().runKernel('LoomDecoderStep', { x: tf.zeros([1, 4]), qkvKernel: tf.zeros([4, 8]), outKernel: tf.zeros([4, 4]) }, { numHeads: 2, length: 0 }),
      ).toThrow(/do not fit/);
    },
  );

  kernelProperty(
    'LoomMinMax gives the least and greatest value of a tensor, NaN skipped, as a serial pass does (+0 and -0 alike), across its 16-lane blocks',
    ['LoomMinMax'],
    () => {
      const special = fc.constantFrom(Number.NaN, 0, -0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 3.4e38, -3.4e38, 1e-45);
      const value = fc.oneof({ weight: 4, arbitrary: fc.float({ noNaN: true, noDefaultInfinity: true }) }, { weight: 1, arbitrary: special });
      const zeroless = (v: number) => (v === 0 ? 0 : v);
      fc.assert(
        fc.property(fc.array(value, { minLength: 0, maxLength: 70 }), fc.array(fc.integer({ min: 1, max: 4 }), { maxLength: 2 }), (vals, lead) => {
          let lo = Number.POSITIVE_INFINITY,
            hi = Number.NEGATIVE_INFINITY;
          // biome-ignore lint/complexity/useMathMinMax: the serial pass that skips NaN (Math.min would return NaN)
          for (const e of Float32Array.from(vals)) (lo = e < lo ? e : lo), (hi = e > hi ? e : hi);
          const reps = lead.reduce((a, b) => a * b, 1);
          const x = tf.tensor(
            Float32Array.from({ length: vals.length * reps }, (_, i) => vals[i % Math.max(vals.length, 1)]!),
            [...lead, vals.length],
          );
          const r = tf.engine().runKernel('LoomMinMax', { x }) as tf.Tensor;
          expect(r.shape).toEqual([2]);
          expect(Array.from(r.dataSync()).map(zeroless)).toEqual([lo, hi].map(zeroless));
          tf.dispose([x, r]);
        }),
        RUNS,
      );
      expect(() => tf.engine().runKernel('LoomMinMax', { x: tf.tensor1d([1, 2], 'int32') })).toThrow(/not float32/);
    },
  );

  kernelProperty(
    "LoomGeluTanh gives the tanh GELU's composed ops (gelu.ts: Multiply, Add, Tanh) bit for bit, and the gelu activation takes it only while no gradient is recorded",
    ['LoomGeluTanh'],
    () => {
      const composed = (x: tf.Tensor) =>
        tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(tf.mul(x, x), x))))))));
      fc.assert(
        fc.property(fc.array(dim(7), { minLength: 1, maxLength: 3 }), seed, fc.double({ min: 0.1, max: 8, noNaN: true }), (shape, s, scale) => {
          const x = tf.tidy(() => tf.mul(tensor(shape, s), scale));
          const [fused, want] = [tf.engine().runKernel('LoomGeluTanh', { x }) as tf.Tensor, composed(x)];
          expect(fused.shape).toEqual(shape);
          expect(Array.from(fused.dataSync())).toEqual(Array.from(want.dataSync()));
          tf.dispose([x, fused, want]);
        }),
        RUNS,
      );
      // Through the activation: outside a gradient tape the fused kernel (same bits), inside one the composed ops,
      // whose gradient tfjs derives.
      // (A kernel without a gradient inside the tape would make tf.grad throw.)
      const gelu = geluPlugin.create({ approximate: 'tanh' }, undefined as never);
      const x = tensor([3, 41], 9);
      const plain = gelu.apply(x);
      const grad = tf.grad((s: tf.Tensor) => tf.sum(gelu.apply(tf.mul(x, s))))(tf.scalar(1));
      expect(Array.from(plain.dataSync())).toEqual(Array.from(composed(x).dataSync()));
      expect(Number.isFinite(grad.dataSync()[0]!)).toBe(true);
      tf.dispose([x, plain, grad]);
    },
  );

  kernelProperty(
    'LoomCacheReorder gives row r the first `length` positions of row indices[r] (a gather of those positions) and zeros after them',
    ['LoomCacheReorder'],
    () => {
      const check = (b: number, heads: number, capacity: number, dk: number, length: number, rows: number, s: number) => {
        const x = tensor([b, heads, capacity, dk], s);
        const ids = Int32Array.from({ length: rows }, (_, r) => (s * 7 + r * 5) % b);
        const indices = tf.tensor1d(ids, 'int32');
        // A full reorder first, released: its buffer, non-zero everywhere, is the one the next output is likely to
        // reuse, so the spare room's zeros must be written, not inherited.
        tf.dispose(tf.engine().runKernel('LoomCacheReorder', { x, indices }, { length: capacity }) as tf.Tensor);
        const y = tf.engine().runKernel('LoomCacheReorder', { x, indices }, { length }) as tf.Tensor;
        const want = tf.tidy(() => {
          const filled = tf.gather(tf.slice(x, [0, 0, 0, 0], [-1, -1, length, -1]), ids);
          return tf.concat([filled, tf.zeros([rows, heads, capacity - length, dk])], 2);
        });
        expect(y.shape).toEqual([rows, heads, capacity, dk]);
        expect(Array.from(y.dataSync())).toEqual(Array.from(want.dataSync()));
        // Into `out` (stale values below `length`, zeros from it on, as a cache's previous buffer): written in place,
        // its data returned, the same values.
        const stale = tensor([rows, heads, capacity, dk], s + 9);
        const out = tf.tidy(() => tf.concat([tf.slice(stale, [0, 0, 0, 0], [-1, -1, length, -1]), tf.zeros([rows, heads, capacity - length, dk])], 2));
        const z = tf.engine().runKernel('LoomCacheReorder', { x, indices, out }, { length }) as tf.Tensor;
        expect(Array.from(z.dataSync())).toEqual(Array.from(want.dataSync()));
        expect(Array.from(out.dataSync())).toEqual(Array.from(want.dataSync()));
        tf.dispose([out, stale]);
        expect(Array.from(z.dataSync())).toEqual(Array.from(want.dataSync())); // the data lives while z does
        tf.dispose([x, indices, y, want, z]);
      };
      fc.assert(
        fc.property(dim(4), dim(3), dim(9), dim(5), dim(6), seed, (b, heads, capacity, dk, rows, s) =>
          check(b, heads, capacity, dk, s % (capacity + 1), rows, s),
        ),
        RUNS,
      );
      check(1024, 4, 12, 64, 7, 1024, 3); // G2P's beam search: 256 words x 4 beams, d 256, 4 heads, 12 positions
      const run = (ids: number[], length: number) => () =>
        tf.engine().runKernel('LoomCacheReorder', { x: tf.zeros([2, 1, 3, 2]), indices: tf.tensor1d(ids, 'int32') }, { length });
      expect(run([0, 2], 1)).toThrow(/do not fit/);
      expect(run([0, 1], 4)).toThrow(/do not fit/);
      const x = tf.zeros([2, 1, 3, 2]);
      const into = (out: tf.Tensor) => () => tf.engine().runKernel('LoomCacheReorder', { x, indices: tf.tensor1d([1, 0], 'int32'), out }, { length: 1 });
      expect(into(tf.zeros([2, 1, 4, 2]))).toThrow(/out \[2,1,4,2\] \(float32\) is not a float32 \[2,1,3,2\] apart from x/);
      expect(into(x)).toThrow(/apart from x/);
    },
  );

  kernelProperty(
    "LoomLSTMCell and LoomLSTMCellGrad give the LSTM layer's composed step (lstm.ts: Add, Sigmoid, Tanh, Multiply, Sub, Square) bit for bit, whichever step t and whichever dy",
    ['LoomLSTMCell', 'LoomLSTMCellGrad'],
    () => {
      const bits = (t: tf.Tensor) => Array.from(t.dataSync());
      fc.assert(
        fc.property(dim(5), dim(19), dim(5), seed, fc.constantFrom('sequence', 'last', 'none'), (batch, u, time, s, dyAt) => {
          const t = s % time;
          const [zx, hu, c] = [tf.tidy(() => tf.mul(tensor([batch, time, 4 * u], s), 4)), tensor([batch, 4 * u], s + 1), tensor([batch, u], s + 2)];
          const fused = tf.engine().runKernel('LoomLSTMCell', { zx, hu, c }, { t }) as tf.Tensor[];
          const want = tf.tidy(() => {
            const z = tf.add(tf.reshape(tf.slice(zx, [0, t, 0], [batch, 1, 4 * u]), [batch, 4 * u]), hu);
            const [zi, zf, zg, zo] = tf.split(z, 4, 1) as tf.Tensor[];
            const [i, f, g, o] = [tf.sigmoid(zi!), tf.sigmoid(zf!), tf.tanh(zg!), tf.sigmoid(zo!)];
            const c2 = tf.add(tf.mul(f, c), tf.mul(i, g));
            return [tf.mul(o, tf.tanh(c2)), c2, tf.concat([i, f, g, o], 1)];
          });
          fused.forEach((y, k) => expect(bits(y), `forward output ${k}`).toEqual(bits(want[k]!)));
          // Backward: gates as the forward makes them (i, f, o in (0, 1), g in (−1, 1)), cells and gradients at random.
          const gates = tf.tidy(() => {
            const z = tf.mul(tensor([time, batch, 4 * u], s + 3), 3);
            const [a, b, g, o] = tf.split(z, 4, 2);
            return tf.concat([tf.sigmoid(a!), tf.sigmoid(b!), tf.tanh(g!), tf.sigmoid(o!)], 2);
          });
          const [cs, dh, dc] = [tf.tidy(() => tf.mul(tensor([time + 1, batch, u], s + 4), 2)), tensor([batch, u], s + 5), tensor([batch, u], s + 6)];
          const dy = dyAt === 'sequence' ? tensor([batch, time, u], s + 7) : dyAt === 'last' ? tensor([batch, u], s + 7) : null;
          const inputs = { dh, gates, cs, dc, ...(dy ? { dy } : {}) };
          const got = tf.engine().runKernel('LoomLSTMCellGrad', inputs, { t, dyAt }) as tf.Tensor[];
          const ref = tf.tidy(() => {
            const at = (x: tf.Tensor, k: number) => tf.reshape(tf.slice(x, [k, 0, 0], [1, batch, x.shape[2]!]), [batch, x.shape[2]!]);
            const dyT = dyAt === 'sequence' ? tf.reshape(tf.slice(dy!, [0, t, 0], [batch, 1, u]), [batch, u]) : dy;
            const dht = dyT ? tf.add(dyT, dh) : dh;
            const [i, f, g, o] = tf.split(at(gates, t), 4, 1) as tf.Tensor[];
            const tc = tf.tanh(at(cs, t + 1));
            const dct = tf.add(dc, tf.mul(tf.mul(dht, o!), tf.sub(1, tf.square(tc))));
            const di = tf.mul(tf.mul(dct, g!), tf.mul(i!, tf.sub(1, i!)));
            const df = tf.mul(tf.mul(dct, at(cs, t)), tf.mul(f!, tf.sub(1, f!)));
            const dg = tf.mul(tf.mul(dct, i!), tf.sub(1, tf.square(g!)));
            const dO = tf.mul(tf.mul(dht, tc), tf.mul(o!, tf.sub(1, o!)));
            return [tf.concat([di, df, dg, dO], 1), tf.mul(dct, f!)];
          });
          got.forEach((y, k) => expect(bits(y), `backward output ${k} (dy ${dyAt}, t ${t} of ${time})`).toEqual(bits(ref[k]!)));
          tf.dispose([zx, hu, c, ...fused, ...want, gates, cs, dh, dc, ...(dy ? [dy] : []), ...got, ...ref]);
        }),
        RUNS,
      );
    },
  );

  it('the fused kernels refuse sizes that do not fit, naming the tensors', () => {
    const t = (shape: number[]) => tf.zeros(shape);
    const run =
      (name: string, inputs: Record<string, tf.Tensor>, attrs: object = {}) =>
      () =>
        tf.engine().runKernel(name, inputs, attrs as never);
    expect(run('LoomAttention', { qkv: t([2, 3, 12]), keep: t([2, 2]) }, { numHeads: 2, causal: false })).toThrow(/do not fit 2 heads/);
    expect(run('LoomAttention', { qkv: t([2, 3, 12]), keep: t([2, 3]) }, { numHeads: 3, causal: false })).toThrow(/do not fit 3 heads/);
    expect(run('LoomAttentionGrad', { dy: t([2, 3, 4]), qkv: t([2, 3, 12]), keep: t([2, 3]), probs: t([2, 2, 3, 2]) }, { numHeads: 2, causal: false })).toThrow(
      /do not fit/,
    );
    expect(run('LoomLayerNorm', { x: t([2, 5]), gamma: t([4]), beta: t([5]) }, { epsilon: 1e-5 })).toThrow(/must match the last axis/);
    expect(run('LoomLayerNormGrad', { dy: t([2, 5]), x: t([2, 5]), gamma: t([4]) }, { epsilon: 1e-5 })).toThrow(/do not fit/);
    expect(run('LoomSoftmaxGrad', { dy: t([2, 5]), y: t([2, 4]) })).toThrow(/differ in size/);
    expect(run('LoomReluGrad', { dy: t([3]), y: t([4]) })).toThrow(/differ in size/);
    expect(run('LoomMatMulBiasGrad', { x: t([6, 2]), dz: t([5, 3]) })).toThrow(/the same rows/);
    expect(run('LoomCrossEntropy', { logits: t([3, 4]), labels: tf.zeros([2], 'int32') }, { labelSmoothing: 0 })).toThrow(/do not fit/);
    expect(run('LoomCrossEntropyGrad', { logits: t([3, 4]), labels: tf.zeros([3], 'int32'), scale: t([2]) }, { labelSmoothing: 0 })).toThrow(/do not fit/);
    expect(run('LoomLSTMCell', { zx: t([2, 3, 8]), hu: t([2, 8]), c: t([2, 3]) }, { t: 0 })).toThrow(/do not fit/);
    expect(run('LoomLSTMCell', { zx: t([2, 3, 8]), hu: t([2, 8]), c: t([2, 2]) }, { t: 3 })).toThrow(/t \(argument 10\) must be an integer from 0 to 2/);
    expect(run('LoomLSTMCellGrad', { dh: t([2, 2]), gates: t([3, 2, 8]), cs: t([3, 2, 2]), dc: t([2, 2]) }, { t: 0, dyAt: 'none' })).toThrow(/do not fit/);
    expect(run('LoomLSTMCellGrad', { dh: t([2, 2]), dy: t([2, 3, 2]), gates: t([3, 2, 8]), cs: t([4, 2, 2]), dc: t([2, 2]) }, { t: 0, dyAt: 'last' })).toThrow(
      /do not fit/,
    );
  });

  kernelProperty(
    'LoomCrossEntropy remembers its last call for the very same logits, labels and smoothing only: new tensors (in buffers the old ones released), other labels or another smoothing are computed afresh',
    ['LoomCrossEntropy'],
    () => {
      const ce = (z: tf.Tensor, labels: tf.Tensor, eps: number) => {
        const r = tf.engine().runKernel('LoomCrossEntropy', { logits: z, labels }, { labelSmoothing: eps }) as tf.Tensor;
        const v = Array.from(r.dataSync() as Float32Array);
        r.dispose();
        return v;
      };
      // What the rows should be: smoothed cross-entropy composed from tfjs's own kernels (not the native ones).
      const expected = (z: tf.Tensor, labels: tf.Tensor, eps: number) => {
        const [r] = withOriginals(() => {
          const k = z.shape[1]!;
          const q = tf.add(tf.mul(tf.oneHot(labels, k), 1 - eps), eps / k);
          return [tf.neg(tf.sum(tf.mul(q, tf.logSoftmax(z)), 1))];
        });
        const v = Array.from(r!.dataSync() as Float32Array);
        r!.dispose();
        return v;
      };
      const close = (got: number[], want: number[]) =>
        got.forEach((g, i) => expect(Math.abs(g - want[i]!)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(want[i]!))));
      fc.assert(
        fc.property(dim(9), fc.integer({ min: 2, max: 40 }), seed, (n, k, s) => {
          const labels = (shift: number) =>
            tf.tensor1d(
              Int32Array.from({ length: n }, (_, i) => (i * 7 + s + shift) % k),
              'int32',
            );
          const [y1, y2] = [labels(0), labels(1)];
          const z1 = tf.mul(tensor([n, k], s), 5); // the addon's output buffers, which the pool hands out again
          const first = ce(z1, y1, 0);
          close(first, expected(z1, y1, 0));
          expect(ce(z1, y1, 0)).toEqual(first); // remembered: the same bits
          z1.dispose();
          const z2 = tf.mul(tensor([n, k], s + 1), 5);
          close(ce(z2, y1, 0), expected(z2, y1, 0));
          close(ce(z2, y2, 0), expected(z2, y2, 0));
          close(ce(z2, y2, 0.1), expected(z2, y2, 0.1));
          close(ce(z2, y1, 0), expected(z2, y1, 0));
          tf.dispose([y1, y2, z2]);
        }),
        RUNS,
      );
    },
  );

  kernelProperty(
    'LoomCrossEntropy and LoomCrossEntropyGrad match log-softmax cross-entropy composed from tfjs ops and its autodiff gradient',
    ['LoomCrossEntropy', 'LoomCrossEntropyGrad'],
    () => {
      const check = (n: number, k: number, eps: number, s: number) => {
        const z = tf.mul(tensor([n, k], s), 5);
        // Labels in range, plus out-of-range ones (ignored rows: no one-hot term) when there are several rows.
        const labelValues = Int32Array.from({ length: n }, (_, i) => (n > 2 && i === n - 1 ? -100 : n > 3 && i === n - 2 ? k : (i * 7 + s) % k));
        const labels = tf.tensor1d(labelValues, 'int32'),
          scale = tensor([n], s + 1);
        const composed = (x: tf.Tensor) => {
          const q = tf.add(
            tf.mul(
              tf.oneHot(
                tf.tensor1d(
                  Array.from(labelValues, (v) => (v >= 0 && v < k ? v : -1)),
                  'int32',
                ),
                k,
              ),
              1 - eps,
            ),
            eps / k,
          );
          return tf.neg(tf.sum(tf.mul(q, tf.logSoftmax(x)), 1)); // = logsumexp(z) − Σ q z, as Σ q = 1 (rows with a label)
        };
        const rows = tf.engine().runKernel('LoomCrossEntropy', { logits: z, labels }, { labelSmoothing: eps }) as tf.Tensor;
        const grad = tf.engine().runKernel('LoomCrossEntropyGrad', { logits: z, labels, scale }, { labelSmoothing: eps }) as tf.Tensor;
        // Only rows with a label in range have Σ q = 1; the others are compared against their own definition below.
        const valid = Array.from(labelValues, (v) => v >= 0 && v < k);
        const [want, wantGrad] = withOriginals(() => [composed(z), tf.grad((x: tf.Tensor) => tf.sum(tf.mul(composed(x), scale)))(z)]);
        const got = rows.dataSync(),
          w = want!.dataSync(),
          g = grad.arraySync() as number[][],
          wg = wantGrad!.arraySync() as number[][];
        const zs = z.arraySync() as number[][],
          sc = scale.dataSync();
        for (let i = 0; i < n; i++) {
          const row = zs[i]!;
          const mx = Math.max(...row),
            lse = mx + Math.log(row.reduce((a, v) => a + Math.exp(v - mx), 0));
          const wantRow = valid[i] ? w[i]! : lse - (eps * row.reduce((a, v) => a + v, 0)) / k;
          expect(Math.abs(got[i]! - wantRow)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(wantRow)));
          for (let j = 0; j < k; j++) {
            const p = Math.exp(row[j]! - lse);
            const want1 = valid[i] ? wg[i]![j]! : sc[i]! * (p - eps / k);
            expect(Math.abs(g[i]![j]! - want1)).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(want1)));
          }
        }
        tf.dispose([z, labels, scale, rows, grad, want!, wantGrad!]);
      };
      fc.assert(
        fc.property(dim(9), fc.integer({ min: 2, max: 40 }), fc.constantFrom(0, 0.1), seed, (n, k, eps, s) => check(n, k, eps, s)),
        RUNS,
      ); // tf.oneHot needs 2+ classes
      check(300, 257, 0.1, 3); // threads split the rows
    },
  );

  kernelProperty('LoomMatMulBiasGrad is [xᵀ·dz, Σ_rows dz], on each way the product is shared out', ['LoomMatMulBiasGrad'], () => {
    const check = (lead: number[], inF: number, outF: number, s: number) => {
      const x = tensor([...lead, inF], s),
        dz = tensor([...lead, outF], s + 1);
      const [dw, db] = tf.engine().runKernel('LoomMatMulBiasGrad', { x, dz }) as tf.Tensor[];
      const want = withOriginals(() => {
        const rows = lead.reduce((a, b) => a * b, 1);
        return [tf.matMul(tf.reshape(x, [rows, inF]), tf.reshape(dz, [rows, outF]), true, false), tf.sum(tf.reshape(dz, [rows, outF]), 0)];
      });
      expect(dw!.shape).toEqual([inF, outF]);
      expect(db!.shape).toEqual([outF]);
      expectNear(dw!, want[0]!, 1e-4);
      expectNear(db!, want[1]!, 1e-4);
      tf.dispose([x, dz, dw!, db!, ...want]);
    };
    fc.assert(
      fc.property(fc.array(dim(9), { minLength: 1, maxLength: 3 }), dim(20), dim(20), seed, (lead, i, o, s) => check(lead, i, o, s)),
      RUNS,
    );
    check([3, 700], 40, 70, 1); // deep and small: split along k, the sums taken per slice
    check([600], 90, 130, 2); // the sums in a pass of their own
  });

  kernelProperty(
    "LoomConv2DFilterBiasGrad is [Conv2DBackpropFilter(x, dz), Σ dz] with dz = dy, or relu's gradient by y (direct and im2col paths)",
    ['LoomConv2DFilterBiasGrad'],
    () => {
      const check = (n: number, h: number, w: number, c: number, co: number, k: number, stride: number, pad: 'same' | 'valid', masked: boolean, s: number) => {
        const x = tensor([n, h, w, c], s),
          filterShape = [k, k, c, co];
        const outShape = tf.backend_util.computeConv2DInfo(x.shape as never, filterShape as never, stride, 1, pad).outShape;
        const dy = tensor(outShape, s + 1);
        // relu's output: zeros (ties with the mask's edge) and, when there is room, a NaN (passes through, as LoomReluGrad).
        // Only with 'valid' padding: tfjs skips a padded tap where these kernels multiply its zero (0·NaN is NaN).
        const yv = tf
          .relu(tensor(outShape, s + 2, 'ties'))
          .dataSync()
          .slice();
        if (yv.length > 3 && pad === 'valid') yv[yv.length - 2] = Number.NaN;
        const y = tf.tensor(yv, outShape);
        const attrs = { strides: stride, pad, dataFormat: 'NHWC', filterShape };
        const [dw, db] = tf.engine().runKernel('LoomConv2DFilterBiasGrad', masked ? { x, dy, y } : { x, dy }, attrs as never) as tf.Tensor[];
        const want = withOriginals(() => {
          const dz = masked ? tf.mul(dy, tf.step(y)) : dy;
          return [tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: dz }, attrs as never) as tf.Tensor, tf.sum(dz, [0, 1, 2])];
        });
        expectNear(dw!, want[0]!, 1e-4);
        expectNear(db!, want[1]!, 1e-4);
        tf.dispose([x, dy, y, dw!, db!, ...want]);
      };
      fc.assert(
        fc.property(
          dim(3),
          dim(9),
          dim(9),
          dim(5),
          dim(40),
          dim(3),
          dim(2),
          fc.constantFrom<'same' | 'valid'>('same', 'valid'),
          fc.boolean(),
          seed,
          (n, h, w, c, co, k, stride, pad, masked, s) => {
            if (pad === 'valid' && (k > h || k > w)) return;
            check(n, h, w, c, co, k, stride, pad, masked, s);
          },
        ),
        RUNS,
      );
      check(6, 28, 28, 1, 32, 3, 1, 'valid', true, 1); // the MNIST CNN's first layer: partial sums over 10 chunks
      check(2, 12, 12, 8, 20, 3, 1, 'same', true, 2); // 72 taps: the im2col path, relu's gradient written out first
    },
  );

  kernelProperty(
    'LoomConv2DMaxPool and LoomConv2DMaxPoolGrad are FusedConv2D then MaxPool, and the filter and bias gradients through both (direct and im2col paths)',
    ['LoomConv2DMaxPool', 'LoomConv2DMaxPoolGrad'],
    () => {
      const check = (
        n: number,
        h: number,
        w: number,
        c: number,
        co: number,
        k: number,
        stride: number,
        pad: 'same' | 'valid',
        pool: [number, number],
        relu: boolean,
        ties: boolean,
        s: number,
      ) => {
        const x = tensor([n, h, w, c], s, ties ? 'ties' : 'real'),
          filter = tensor([k, k, c, co], s + 1, ties ? 'ties' : 'real'),
          bias = tensor([co], s + 2, ties ? 'ties' : 'real');
        const info = tf.backend_util.computeConv2DInfo(x.shape as never, filter.shape as never, stride, 1, pad);
        if (info.outHeight < pool[0] || info.outWidth < pool[1]) return tf.dispose([x, filter, bias]);
        const activation = relu ? 'relu' : 'linear';
        const attrs = { strides: [stride, stride], pad, activation, poolSize: pool };
        const [y, at] = tf.engine().runKernel('LoomConv2DMaxPool', { x, filter, bias }, attrs as never) as tf.Tensor[];
        const dy = tensor(y!.shape, s + 3);
        const [dw, db] = tf
          .engine()
          .runKernel('LoomConv2DMaxPoolGrad', { x, dy, y: y!, at: at! }, { ...attrs, filterShape: filter.shape } as never) as tf.Tensor[];
        const want = withOriginals(() => {
          const full = tf.fused.conv2d({ x: x as tf.Tensor4D, filter: filter as tf.Tensor4D, strides: stride, pad, bias, activation });
          const pooled = tf.maxPool(full, pool, pool, 'valid');
          const d = tf
            .engine()
            .runKernel('MaxPoolGrad', { dy, input: full, output: pooled }, { filterSize: pool, strides: pool, pad: 'valid' } as never) as tf.Tensor;
          const dz = relu ? tf.mul(d, tf.step(full)) : d;
          const convAttrs = { strides: stride, pad, dataFormat: 'NHWC', filterShape: filter.shape };
          return [pooled, tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: dz }, convAttrs as never) as tf.Tensor, tf.sum(dz, [0, 1, 2])];
        });
        // tfjs's JavaScript convolution adds each exact (double) product to a float32 sum and rounds once: a fused
        // multiply-add. Where loom's kernels fuse them (every level but x86-64's baseline, which has no FMA) the
        // pooled output is exact; at the baseline each product is rounded first, within float32's rounding of the chain.
        expectNear(y!, want[0]!, FUSED ? 0 : 1e-6);
        expectNear(dw!, want[1]!, 1e-4);
        expectNear(db!, want[2]!, 1e-4);
        tf.dispose([x, filter, bias, y!, at!, dy, dw!, db!, ...want]);
      };
      fc.assert(
        fc.property(
          fc.record({ n: dim(3), h: dim(12), w: dim(12), c: dim(5), co: dim(40), k: dim(3), stride: dim(2) }),
          fc.constantFrom<'same' | 'valid'>('same', 'valid'),
          fc.tuple(dim(3), dim(3)),
          fc.boolean(),
          fc.boolean(),
          seed,
          ({ n, h, w, c, co, k, stride }, pad, pool, relu, ties, s) => {
            if (pad === 'valid' && (k > h || k > w)) return;
            check(n, h, w, c, co, k, stride, pad, pool, relu, ties, s);
          },
        ),
        RUNS,
      );
      check(5, 28, 28, 1, 32, 3, 1, 'valid', [2, 2], true, false, 1); // the MNIST CNN's first two layers
      check(2, 11, 9, 4, 20, 3, 1, 'same', [2, 2], true, false, 2); // 36 taps: the im2col path; an uncovered row and column
    },
  );

  kernelProperty('LoomReluGrad is dy where y > 0, else 0 (NaN in y passes through)', ['LoomReluGrad'], () => {
    fc.assert(
      fc.property(fc.array(dim(9), { minLength: 0, maxLength: 3 }), seed, (shape, s) => {
        const dy = tensor(shape, s),
          y = tf.relu(tensor(shape, s + 1, 'ties'));
        const n = shape.reduce((a, b) => a * b, 1);
        const yv = y.dataSync().slice();
        if (n > 2) yv[n - 1] = NaN;
        const yn = tf.tensor(yv, shape);
        const got = tf.engine().runKernel('LoomReluGrad', { dy, y: yn }) as tf.Tensor;
        const want = withOriginals(() => tf.mul(dy, tf.step(yn)));
        expectNear(got, want, 0);
        tf.dispose([dy, y, yn, got, want]);
      }),
      RUNS,
    );
  });

  it('leaves non-float32 inputs to the original kernels', () => {
    const a = tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32');
    expect(Array.from(tf.matMul(a, a).dataSync())).toEqual([7, 10, 15, 22]);
    expect(tf.add(a, a).dtype).toBe('int32');
    expect(Array.from(tf.sum(a, 0).dataSync())).toEqual([4, 6]);
    tf.dispose(a);
  });

  it('reuses released output buffers, never one handed out by dataSync, and computes the same values with them', () => {
    const pool = nativeBufferPool()!;
    expect(pool).not.toBeNull();
    fc.assert(
      fc.property(fc.array(dim(40), { minLength: 2, maxLength: 3 }), seed, (shape, s) => {
        const x = tensor(shape, s),
          y = tensor(shape, s + 1);
        const chain = () => tf.tidy(() => tf.sum(tf.mul(tf.softmax(tf.add(tf.mul(x, y), x)), tf.transpose(tf.transpose(tf.sub(x, y)))), -1));
        const first = chain();
        const want = Float32Array.from(first.dataSync());
        const handedOut = tf.add(x, y);
        const live = handedOut.dataSync() as Float32Array; // the backend's own array
        const snapshot = Float32Array.from(live);
        tf.dispose([first, handedOut]);
        const before = pool.reused;
        for (let i = 0; i < 3; i++) {
          const again = chain();
          expect(Float32Array.from(again.dataSync())).toEqual(want);
          again.dispose();
        }
        if (want.length * shape.at(-1)! >= 1024) expect(pool.reused).toBeGreaterThan(before);
        expect(live).toEqual(snapshot); // disposed after it was read: never reused
        tf.dispose([x, y]);
      }),
      { numRuns: 20 },
    );
  });

  kernelProperty(
    'LoomInt8Linear and LoomInt8Conv2D match the int8 arithmetic composed from tfjs ops (odd sizes, strides, padding, relu, no bias)',
    ['LoomInt8Linear', 'LoomInt8Conv2D'],
    () => {
      // The same quantization (x to uint8 with a range from its own min and max, weights per channel) composed from
      // tfjs's original kernels: the integer sums are exact in both (< 2^24 here), so only the float32 rescaling differs.
      const quantized = (w: tf.Tensor) => {
        const out = w.shape.at(-1)!;
        const { q, scales } = quantizePerChannel(w.dataSync() as Float32Array, out);
        return { kernel: tf.tensor(q, w.shape), scale: tf.tensor1d(scales) };
      };
      const rangeOf = (x: tf.Tensor) => activationQuant(tf.min(x).dataSync()[0]!, tf.max(x).dataSync()[0]!);
      const rescale = (acc: tf.Tensor, s: number, scale: tf.Tensor, bias: tf.Tensor | undefined, relu: boolean) => {
        let y = tf.mul(acc, tf.mul(tf.scalar(s), scale));
        if (bias) y = tf.add(y, bias);
        return relu ? tf.relu(y) : y;
      };
      fc.assert(
        fc.property(dim(9), dim(40), dim(40), fc.boolean(), fc.boolean(), seed, (m, k, n, relu, useBias, s) => {
          const x = tensor([m, k], s),
            { kernel, scale } = quantized(tensor([k, n], s + 1));
          const bias = useBias ? tensor([n], s + 2) : undefined;
          const quant = rangeOf(x);
          const attrs = { inputScale: quant.scale, inputZeroPoint: quant.zeroPoint, relu };
          const got = tf.engine().runKernel('LoomInt8Linear', { x, kernel, scale, ...(bias ? { bias } : {}) }, attrs as never) as tf.Tensor;
          const want = withOriginals(() =>
            tf.tidy(() => rescale(tf.matMul(quantizeCentred(x, quant) as tf.Tensor2D, kernel as tf.Tensor2D), quant.scale, scale, bias, relu)),
          );
          expectNear(got, want, 1e-5);
          tf.dispose([x, kernel, scale, ...(bias ? [bias] : []), got, want]);
        }),
        RUNS,
      );
      fc.assert(
        fc.property(
          dim(2),
          dim(7),
          dim(7),
          dim(4),
          dim(3),
          dim(5),
          dim(2),
          fc.constantFrom<'valid' | 'same'>('valid', 'same'),
          fc.boolean(),
          seed,
          (b, h, w, c, ks, co, st, pad, relu, s) => {
            const kh = Math.min(ks, h),
              kw = Math.min(ks, w);
            const x = tensor([b, h, w, c], s),
              { kernel, scale } = quantized(tensor([kh, kw, c, co], s + 1));
            const bias = tensor([co], s + 2);
            const quant = rangeOf(x);
            const attrs = { inputScale: quant.scale, inputZeroPoint: quant.zeroPoint, relu, strides: [st, st], pad };
            const got = tf.engine().runKernel('LoomInt8Conv2D', { x, kernel, scale, bias }, attrs as never) as tf.Tensor;
            const want = withOriginals(() =>
              tf.tidy(() => rescale(tf.conv2d(quantizeCentred(x, quant) as tf.Tensor4D, kernel as tf.Tensor4D, st, pad), quant.scale, scale, bias, relu)),
            );
            expectNear(got, want, 1e-5);
            tf.dispose([x, kernel, scale, bias, got, want]);
          },
        ),
        RUNS,
      );
    },
  );

  it('every installed kernel has a property in this file (declared at collection, whatever ran)', () => {
    expect(installed.filter((k) => !tested.has(k))).toEqual([]);
  });
});

describe('BufferPool', () => {
  it('holds LOOM_BUFFER_POOL_MB, else an eighth of the memory between 512 MiB and 2 GiB; a bad value is a ConfigError naming it', () => {
    const MiB = 2 ** 20;
    expect(poolLimitBytes({}, 24 * 1024 * MiB)).toBe(2048 * MiB);
    expect(poolLimitBytes({}, 8 * 1024 * MiB)).toBe(1024 * MiB);
    expect(poolLimitBytes({}, 2 * 1024 * MiB)).toBe(512 * MiB);
    expect(poolLimitBytes({ LOOM_BUFFER_POOL_MB: '100' }, 24 * 1024 * MiB)).toBe(100 * MiB);
    expect(poolLimitBytes({ LOOM_BUFFER_POOL_MB: '0' })).toBe(0);
    expect(() => poolLimitBytes({ LOOM_BUFFER_POOL_MB: 'lots' })).toThrow(/LOOM_BUFFER_POOL_MB: must be a number of MiB, 0 or more, got "lots"/);
    expect(() => poolLimitBytes({ LOOM_BUFFER_POOL_MB: '-1' })).toThrow(ConfigError);
  });

  it('serves a length from its size class: at least the length, at most 1/8 more, the same class for every length up to it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 28 }), (n) => {
        const c = sizeClass(n);
        expect(c).toBeGreaterThanOrEqual(n);
        expect(c).toBeLessThanOrEqual(n <= 16 ? n : n * 1.125);
        expect(sizeClass(c)).toBe(c); // a class is its own class
        if (n > 17) expect(sizeClass(n - 1)).toBeLessThanOrEqual(c); // monotone
      }),
    );
    expect([17, 18, 19, 20].map(sizeClass)).toEqual([18, 18, 20, 20]);
    expect([1000, 1024, 1025, 1152, 1153].map(sizeClass)).toEqual([1024, 1024, 1152, 1152, 1280]);
  });

  it('hands back released memory for any length of its size class, zeroed on request, within its byte limit, dropping the oldest first', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 40_000 }),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        (lengths, limit, seed) => {
          const pool = new BufferPool(limit, 16);
          const arrays = lengths.map((n) => pool.fresh(n).fill(7));
          arrays.forEach((a, i) => {
            expect(a.length).toBe(lengths[i]); // exactly the length asked for
            expect(a.byteOffset).toBe(0);
          });
          let held = 0;
          const kept: Float32Array[] = []; // the model: a queue, oldest first
          for (const a of arrays) {
            pool.release(a);
            pool.release(a); // a second release of the same array is ignored
            const bytes = a.buffer.byteLength;
            if (a.length >= 16 && bytes <= limit) {
              expect(bytes).toBe(4 * sizeClass(a.length));
              while (held + bytes > limit) held -= kept.shift()!.buffer.byteLength;
              held += bytes;
              kept.push(a);
            }
            expect(pool.heldBytes).toBe(held);
            expect(pool.heldBytes).toBeLessThanOrEqual(limit);
          }
          const reusedBefore = pool.reused;
          const taken = new Set<ArrayBufferLike>();
          let s = seed;
          for (const a of kept) {
            // Any length of a's class whose class is a's: from the smallest such length up to the class itself.
            const c = sizeClass(a.length);
            let lo = c;
            while (lo > 16 && sizeClass(lo - 1) === c) lo--;
            s = (s * 1103515245 + 12345) % 2 ** 31;
            const n = lo + (s % (c - lo + 1));
            const b = pool.zeroed(n);
            expect(b.length).toBe(n);
            expect(kept.some((k) => k.buffer === b.buffer)).toBe(true);
            expect(taken.has(b.buffer)).toBe(false); // never handed to two owners
            taken.add(b.buffer);
            expect(b.every((v) => v === 0)).toBe(true);
            if (n === a.length && kept.filter((k) => sizeClass(k.length) === c).length === 1) expect(b).toBe(a); // the same array back
          }
          expect(pool.reused - reusedBefore).toBe(kept.length);
          expect(pool.fresh(5000).buffer).not.toBe(arrays[0]!.buffer); // nothing of that class: new memory
        },
      ),
    );
  });

  it('serves a request whose class has nothing free from the nearest of the 4 classes above it that has, else from new memory', () => {
    const next = (c: number) => sizeClass(c + 1);
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 16, max: 5000 }), { maxLength: 12 }),
        fc.array(fc.integer({ min: 16, max: 5000 }), { minLength: 1, maxLength: 12 }),
        (released, asked) => {
          const pool = new BufferPool(1 << 30, 16);
          const arrays = released.map((n) => pool.fresh(n));
          arrays.forEach((a) => pool.release(a));
          const free = new Map<number, number>(); // the model: free buffers by class
          for (const a of arrays) free.set(a.buffer.byteLength / 4, (free.get(a.buffer.byteLength / 4) ?? 0) + 1);
          const ours = new Set(arrays.map((a) => a.buffer));
          for (const n of asked) {
            const classes = [sizeClass(n)];
            while (classes.length < 5) classes.push(next(classes.at(-1)!));
            const want = classes.find((c) => (free.get(c) ?? 0) > 0);
            const got = pool.fresh(n);
            expect(got.length).toBe(n);
            expect(got.byteOffset).toBe(0);
            if (want === undefined) expect(ours.has(got.buffer)).toBe(false);
            else {
              expect(ours.has(got.buffer)).toBe(true);
              expect(got.buffer.byteLength / 4).toBe(want);
              free.set(want, free.get(want)! - 1);
            }
            expect(got.buffer.byteLength / 4).toBeLessThanOrEqual(1.5 * sizeClass(n));
          }
        },
      ),
    );
  });

  it('never reuses an escaped array, a foreign array or a small one', () => {
    const pool = new BufferPool(1 << 20, 16);
    const escaped = pool.fresh(100);
    pool.escape(escaped);
    pool.release(escaped);
    const foreign = new Float32Array(100);
    pool.release(foreign);
    const small = pool.fresh(8);
    pool.release(small);
    expect([pool.fresh(100), pool.fresh(8)].some((a) => a === escaped || a === foreign || a === small)).toBe(false);
    expect(pool.reused).toBe(0);
  });

  it('pins an array when a view into its memory is stored (tfjs slices return subarrays)', () => {
    const pool = new BufferPool(1 << 20, 16);
    const parent = pool.fresh(100);
    pool.stored(parent); // the array itself: no pin
    pool.stored(parent.subarray(10, 20));
    pool.release(parent);
    expect(pool.fresh(100)).not.toBe(parent);
    const other = pool.fresh(50);
    pool.stored(other);
    pool.release(other);
    expect(pool.fresh(50)).toBe(other);
  });
});
