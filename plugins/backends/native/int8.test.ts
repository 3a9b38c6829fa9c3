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
