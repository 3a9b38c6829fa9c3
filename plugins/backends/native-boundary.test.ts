/**
 * The native addon's N-API boundary (native/src/loom.cc) checks every argument: a wrong call throws a TypeError or
 * RangeError naming the function and the argument, never crashes. The fuzz body (test/fixtures/native-fuzz-worker.ts)
 * runs in a child process, so that a segfault fails this test instead of killing the runner; it calls every function
 * the addon exports (enumerated from the addon itself: a new one without a fuzz spec fails the test) with
 *   - 29,107 systematic cases (seed 1): for three valid calls of each function, every argument replaced by each
 *     wrong-typed value and each out-of-range or non-finite number of its kind, every buffer cut to 0, half and
 *     one-short of its length, every size grown by one, doubled plus one and to 2^31 − 1, all sizes at once to
 *     2^31 − 1 (products that overflow 64 bits unless checked), wrong argument counts, malformed dims arrays, and
 *     the valid calls themselves plus each with a size set to 0;
 *   - 5,000 fast-check cases: random valid calls with one random mutation (a systematic one, fc.anything() junk of
 *     the wrong type, a random invalid number, a buffer of a random shorter length, a random argument count);
 * 34,107 cases in all. Each wrong call must throw the expected error class with code ERR_LOOM_NATIVE_ARGUMENT and a
 * message that starts with the function's name (and names the argument at fault); each valid call must return and
 * write every element of its outputs (and match a reference for softmax, binary Add, unary Neg, sum and copy).
 * The child must exit with code 0. LOOM_FUZZ_SEED and LOOM_FUZZ_RUNS change the seed and the random count.
 * Skips (with the reason printed) only when the addon did not build.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { nativeAddonInfo } from './native-kernels';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const ADDON = path.join(repo, 'native/build/Release/loom_native.node');
const info = nativeAddonInfo();
if (!info.loaded) console.warn(`native-boundary tests skipped: ${info.reason}`);

const SEED = Number(process.env.LOOM_FUZZ_SEED ?? 1);
const RUNS = Number(process.env.LOOM_FUZZ_RUNS ?? 5000);

interface Summary {
  exported: string[];
  missing: string[];
  unknown: string[];
  systematic: number;
  random: number;
  cases: number;
  thrown: number;
  accepted: number;
  byKernel: Record<string, { cases: number; thrown: number; accepted: number }>;
  failures: string[];
  failureCount: number;
  randomFailure: string | null;
}

type Fn = (...args: unknown[]) => unknown;

describe.skipIf(!info.loaded)('native boundary', () => {
  it('every exported function refuses wrong calls with an error naming it, and never crashes (fuzz in a child process)', () => {
    const r = spawnSync(
      process.execPath,
      [path.join(repo, 'test/fixtures/run-ts.mjs'), path.join(repo, 'test/fixtures/native-fuzz-worker.ts'), ADDON, String(SEED), String(RUNS)],
      {
        encoding: 'utf8',
        env: { ...process.env, LOOM_THREADS: '2' },
        timeout: 300_000,
        maxBuffer: 64 * 2 ** 20,
      },
    );
    // A crash shows as a signal (SIGSEGV, SIGABRT) and no summary.
    expect(r.signal, `the fuzz process died of ${r.signal}\n${r.stderr}`).toBeNull();
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Summary;
    expect(summary.failures, summary.failures.join('\n')).toEqual([]);
    expect(summary.randomFailure).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(summary.missing, 'exported functions without a fuzz spec in test/fixtures/native-fuzz-worker.ts').toEqual([]);
    expect(summary.unknown, 'fuzz specs of functions the addon does not export').toEqual([]);
    expect(summary.exported.length).toBeGreaterThanOrEqual(25);
    expect(summary.random).toBe(RUNS);
    expect(summary.cases).toBe(summary.systematic + summary.random);
    if (SEED === 1) expect(summary.systematic).toBe(29_107);
    expect(summary.thrown + summary.accepted).toBe(summary.cases);
    for (const name of summary.exported) {
      const c = summary.byKernel[name]!;
      expect(c.thrown, `${name}: wrong calls`).toBeGreaterThan(0);
      expect(c.accepted, `${name}: valid calls`).toBeGreaterThan(0);
    }
  });

  // A few of the messages, in process (the checks above make these calls safe).
  const addon = info.loaded ? (createRequire(import.meta.url)(ADDON) as Record<string, Fn>) : {};
  const f32 = (n: number) => new Float32Array(n);

  /** Calls fn and returns what it threw, checking the class and loom's code. */
  const refusal = (fn: () => unknown, kind: ErrorConstructor): string => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(kind);
      expect((e as { code?: string }).code).toBe('ERR_LOOM_NATIVE_ARGUMENT');
      return (e as Error).message;
    }
    throw new Error('did not throw');
  };

  it('says which function, which argument and what was wrong', () => {
    expect(refusal(() => addon.softmax!(f32(6), f32(5), 2, 3), RangeError)).toBe(
      'softmax: y (argument 2) has 5 elements, fewer than the 6 that rows·cols needs',
    );
    expect(refusal(() => addon.softmax!(f32(6), new Float64Array(6), 2, 3), TypeError)).toBe(
      'softmax: y (argument 2) must be a Float32Array, got a Float64Array',
    );
    expect(refusal(() => addon.softmax!(f32(6), f32(6), 2), TypeError)).toBe('softmax: expected 4 arguments, got 3');
    expect(refusal(() => addon.softmax!(f32(6), f32(6), 2, NaN), RangeError)).toBe(
      'softmax: cols (argument 4) must be an integer from 0 to 2147483647, got NaN',
    );
    expect(refusal(() => addon.softmax!(f32(6), f32(6), 2 ** 31 - 1, 2 ** 31 - 1), RangeError)).toBe(
      'softmax: x (argument 1) has 6 elements, fewer than the 4611686014132420609 that rows·cols needs',
    );
    expect(refusal(() => addon.sum!(f32(1), f32(1), 2 ** 31 - 1, 2 ** 31 - 1, 2 ** 31 - 1), RangeError)).toBe(
      'sum: x (argument 1) has 1 element, fewer than the 2^63 or more that outer·reduce·inner needs',
    );
    expect(refusal(() => addon.layerNorm!(f32(6), f32(3), f32(3), f32(6), 2, 3, Infinity), RangeError)).toBe(
      'layerNorm: epsilon (argument 7) must be a finite number, got Infinity',
    );
    expect(refusal(() => addon.conv2d!(f32(4), f32(4), f32(4), null, false, 1, 2, 2, 1, 1, 1, 1, 2, 2, 0, 1, 0, 0, 1, 1), RangeError)).toBe(
      'conv2d: strideHeight (argument 15) must be an integer from 1 to 2147483647, got 0',
    );
    expect(refusal(() => addon.conv2d!(f32(4), f32(3), f32(4), null, false, 1, 2, 2, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 1, 1), RangeError)).toBe(
      'conv2d: w (argument 2) has 3 elements, fewer than the 4 that filterHeight·filterWidth·inChannels·outChannels needs',
    );
    expect(refusal(() => addon.batchMatMul!(f32(4), f32(4), f32(8), 2, 2, 2, 2, false, false, 0, 0, null, false, f32(2)), RangeError)).toBe(
      'batchMatMul: bColSums (argument 14) needs batch 1 and B not transposed, got batch 2',
    );
    expect(refusal(() => addon.crossEntropy!(f32(6), f32(2), f32(2), 2, 3, 0), TypeError)).toBe(
      'crossEntropy: labels (argument 2) must be an Int32Array, got a Float32Array',
    );
    expect(refusal(() => addon.attention!(f32(36), 0, f32(12), f32(18), 1, 3, 2, 2, false), TypeError)).toBe(
      'attention: keep (argument 2) must be a Float32Array or null, got a number',
    );
    expect(refusal(() => addon.copy!(f32(4), 1, f32(4), 0, Float64Array.from([4, 1, 1])), RangeError)).toBe(
      'copy: src (argument 1) has 4 elements, fewer than the 5 that srcOffset + 1 + Σ (size − 1)·srcStride needs',
    );
    expect(refusal(() => addon.binary!(0, f32(4), f32(4), f32(4), Float64Array.from([4, 1, 1, 1])), RangeError)).toBe(
      'binary: dims (argument 5) must hold 1 to 8 (size, stride, stride) triples, got 4 numbers',
    );
    expect(refusal(() => addon.unary!(13, f32(4), f32(4), 0), RangeError)).toBe('unary: op (argument 1) must be an integer from 0 to 12, got 13');
    expect(refusal(() => addon.pool!(f32(4), f32(4), 1, 1, 2, 2, 1, 1, 1, 0, 2, 2, 1, 1, 0, 0, 1, 1), TypeError)).toBe(
      'pool: isMax (argument 3) must be a boolean, got a number',
    );
    expect(refusal(() => addon.info!(1), TypeError)).toBe('info: expected 0 arguments, got 1');
  });

  it('calls with an empty size compute what is defined and nothing more', () => {
    // A filter gradient summed over no positions (batch 0) is zero (the kernel indexed its first partial sum, of none).
    const dw = f32(2 * 2 * 3 * 4).fill(7);
    addon.conv2dBackpropFilter!(f32(0), f32(0), dw, 0, 5, 5, 3, 2, 2, 4, 4, 4, 1, 1, 0, 0, 1, 1);
    expect([...dw].every((v) => v === 0)).toBe(true);
    // Likewise the fused filter-and-bias gradient; with no input channels the filter is empty and the bias's gradient
    // is still Σ dz (relu's gradient by y: dy where y > 0, NaN where y is NaN).
    const dwf = f32(2 * 2 * 3 * 4).fill(7),
      db = f32(4).fill(7);
    addon.conv2dFilterBiasGrad!(f32(0), f32(0), null, dwf, db, 0, 5, 5, 3, 2, 2, 4, 4, 4, 1, 1, 0, 0, 1, 1);
    expect([...dwf, ...db].every((v) => v === 0)).toBe(true);
    const dz = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    addon.conv2dFilterBiasGrad!(f32(0), dz, Float32Array.from([1, 0, NaN, 1, 1, 1, 1, -1]), f32(0), db, 1, 2, 1, 0, 1, 1, 4, 2, 1, 1, 1, 0, 0, 1, 1);
    expect([...db]).toEqual([6, 6, NaN, 4]);
    // No input channels: every output is the bias, then relu.
    const y = f32(2 * 3).fill(NaN);
    addon.conv2d!(f32(0), f32(0), y, Float32Array.from([1, -2, 3]), true, 1, 1, 2, 0, 1, 1, 3, 1, 2, 1, 1, 0, 0, 1, 1);
    expect([...y]).toEqual([1, 0, 3, 1, 0, 3]);
    // A pooling window of (2^31 − 1)² taps, padded so that the image is in its middle: only the 4 taps inside are
    // visited (the kernel looped over all of them before), each receiving dy / (kh·kw).
    const dx = f32(4);
    addon.avgPoolGrad!(Float32Array.from([1]), dx, 1, 2, 2, 1, 2 ** 31 - 1, 2 ** 31 - 1, 0, 1, 1, 1, 1, 2 ** 30, 2 ** 30, 1, 1);
    expect([...dx]).toEqual(new Array(4).fill(Math.fround(1 / Math.fround((2 ** 31 - 1) ** 2))));
  });
});
