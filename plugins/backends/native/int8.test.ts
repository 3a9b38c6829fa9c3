/**
 * The addon's int8 GEMM (native/src/int8.cc) against a float64 reference of the integer product, on every path this
 * CPU has (scalar, AVX2 widening, AVX-512 VNNI): random shapes including 1, odd sizes and sizes that are not
 * multiples of the vector widths (16 and 32 columns, 2 and 4 deep), and the extreme codes (255 × −128, 255 × 127)
 * that would saturate vpmaddubsw's int16 sums. Integer sums are exact, so the results must equal the reference.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadAddon, nativeAddonInfo } from './addon';

const info = nativeAddonInfo();
const PATHS: Record<string, number> = { scalar: 1, avx2: 2, 'avx512-vnni': 3 };

describe.skipIf(!info.loaded)(`int8 GEMM (best path here: ${info.int8})`, () => {
  const addon = loadAddon()!;
  const best = PATHS[info.int8 ?? 'scalar']!;
  const paths = Object.values(PATHS).filter((p) => p <= best);

  it('equals the float64 reference of the integer product on every path, extremes included', () => {
    const size = fc.oneof(fc.constantFrom(1, 2, 3, 15, 16, 17, 31, 32, 33), fc.integer({ min: 1, max: 70 }));
    fc.assert(
      fc.property(size, size, size, fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.constantFrom('random', 'max', 'min'), (m, n, k, seed, fill) => {
        let s = seed;
        const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s >>> 8);
        const a = Uint8Array.from({ length: m * k }, () => (fill === 'random' ? next() & 255 : 255));
        const b = Int8Array.from({ length: n * k }, () => (fill === 'random' ? (next() & 255) - 128 : fill === 'max' ? 127 : -128));
        const ref = new Float64Array(m * n);
        for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) ref[i * n + j]! += a[i * k + p]! * b[j * k + p]!;
        for (const path of paths) {
          const c = new Int32Array(m * n).fill(12345);
          addon.int8Gemm(m, n, k, a, b, c, path);
          expect(Array.from(c), `path ${path}, ${m}×${k}·${k}×${n}, ${fill}`).toEqual(Array.from(ref));
        }
      }),
      { numRuns: 60 },
    );
  });

  it('a product large enough to be shared out over the thread pool equals the reference too', () => {
    const [m, n, k] = [203, 97, 301]; // 5.9 M multiply-adds: above the serial threshold (2^21), odd everywhere
    let s = 7;
    const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s >>> 8);
    const a = Uint8Array.from({ length: m * k }, () => next() & 255);
    const b = Int8Array.from({ length: n * k }, () => (next() & 255) - 128);
    const ref = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) ref[i * n + j]! += a[i * k + p]! * b[j * k + p]!;
    for (const path of paths) {
      const c = new Int32Array(m * n);
      addon.int8Gemm(m, n, k, a, b, c, path);
      expect(Array.from(c), `path ${path}`).toEqual(Array.from(ref));
    }
  });

  it('a few rows (a decoding step) over many column strips, shared out over the pool, equal the reference', () => {
    // 1–13 rows: every short-tile shape (1×4, 2×4, 4×2 and 8×1 strips, the last rows repeated) and a full tile plus
    // a remainder; 301 columns (10 strips of 32, the last partial); k 7003 puts each product above the serial
    // threshold (2^21 multiply-adds), so the rows are split into short blocks over the pool.
    const [n, k] = [301, 7003];
    let s = 11;
    const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s >>> 8);
    const b = Int8Array.from({ length: n * k }, () => (next() & 255) - 128);
    for (const m of [1, 2, 3, 4, 5, 7, 9, 13]) {
      const a = Uint8Array.from({ length: m * k }, () => next() & 255);
      const ref = new Float64Array(m * n);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) ref[i * n + j]! += a[i * k + p]! * b[j * k + p]!;
      for (const path of paths) {
        const c = new Int32Array(m * n).fill(12345);
        addon.int8Gemm(m, n, k, a, b, c, path);
        expect(Array.from(c), `path ${path}, m ${m}`).toEqual(Array.from(ref));
      }
    }
  });

  it("int8Linear's quantization of x is round-half-even(x / scale) + zero, clamped to [0, 255], NaN to 0", () => {
    // Identity weights (w = I, scale 1) make y[i, j] = (q[i, j] − zero)·scale exactly, which exposes q. Values: ties
    // (x = (t + ½)·scale), the clamps' edges, ±Infinity, NaN and random ones; k 37 and 64 (a vector loop's tail and
    // none), enough rows that the quantization is split over the pool (more than 2^15 elements).
    const scale = 0.03125, // a power of two: the ties are exact
      zero = 117;
    const f32 = Math.fround;
    const special = [0, -0, 0.5, -0.5, 1.5, 2.5, -2.5, 137.5, -117.5, -118.5, 138.5, 1e9, -1e9, Infinity, -Infinity, Number.NaN];
    const reference = (x: number) => {
      if (Number.isNaN(x)) return 0;
      const v = Math.min(Math.max(f32(f32(x) / f32(scale)), -512), 512);
      const r = Math.floor(v);
      const even = v - r === 0.5 ? (r % 2 === 0 ? r : r + 1) : Math.round(v);
      return Math.min(Math.max(even + zero, 0), 255);
    };
    let s = 5;
    const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s >>> 8);
    for (const [m, k] of [
      [3, 37],
      [1000, 37],
      [600, 64],
    ] as const) {
      const x = Float32Array.from({ length: m * k }, (_, i) =>
        i < special.length
          ? special[i]! > 1e8 || special[i]! < -1e8 || !Number.isFinite(special[i]!)
            ? special[i]!
            : special[i]! * scale
          : ((next() % 20000) - 10000) * scale * 0.037,
      );
      const eye = new Int8Array(k * k);
      for (let j = 0; j < k; j++) eye[j * k + j] = 1;
      const y = new Float32Array(m * k);
      addon.int8Linear(m, k, k, x, scale, zero, addon.int8Pack(k, k, eye), new Float32Array(k).fill(1), null, false, y);
      for (let i = 0; i < m * k; i++) expect(y[i], `m ${m}, k ${k}, x[${i}] = ${x[i]}`).toBe(f32((reference(x[i]!) - zero) * f32(scale)));
    }
  });

  it('the deepest product it accepts does not overflow int32: 65535 × 255 × −128', () => {
    const k = 65535;
    const a = new Uint8Array(k).fill(255),
      b = new Int8Array(2 * k).fill(-128);
    for (const path of paths) {
      const c = new Int32Array(2);
      addon.int8Gemm(1, 2, k, a, b, c, path);
      expect(Array.from(c)).toEqual([k * 255 * -128, k * 255 * -128]);
    }
    expect(() => addon.int8Gemm(1, 1, k + 1, new Uint8Array(k + 1), new Int8Array(k + 1), new Int32Array(1), 0)).toThrow(RangeError);
  });
});
