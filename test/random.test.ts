/**
 * The bulk uniform generator behind dropout masks (core/random.ts uniformFloats): its outputs equal xoshiro128**'s
 * reference C code (Blackman & Vigna) seeded the same way, and its draws behave as independent U[0, 1) samples.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { uniformFloats } from '../core';

describe('uniformFloats (xoshiro128**)', () => {
  it('matches the reference implementation (the 24-bit outputs of a C build of xoshiro128** with this seeding)', () => {
    // Printed by the C reference (rotl(s1·5, 7)·9; murmur3-finalised Weyl seeding), each output >> 8.
    const reference: Record<number, number[]> = {
      0: [14878940, 4428496, 209295, 11295034, 545631, 8606509],
      1: [9539625, 12648827, 14921554, 8221179, 7895062, 16498188],
      12345: [2026044, 1720486, 16534738, 14679131, 15386792, 5213607],
      2147483647: [16693019, 2001610, 10644668, 12982799, 15801046, 4883563],
    };
    for (const [seed, bits] of Object.entries(reference)) {
      expect(Array.from(uniformFloats(Number(seed), 6), (u) => u * 2 ** 24)).toEqual(bits);
    }
  });

  it('is deterministic, in [0, 1) on the 2^-24 grid, with mean 1/2 and variance 1/12 within sampling error', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
        const n = 50_000;
        const u = uniformFloats(seed, n);
        expect(uniformFloats(seed, n)).toEqual(u);
        let sum = 0,
          sq = 0,
          offGrid = 0;
        for (const v of u) {
          if (!(v >= 0 && v < 1 && Number.isInteger(v * 2 ** 24))) offGrid++;
          sum += v;
          sq += v * v;
        }
        expect(offGrid).toBe(0);
        const mean = sum / n,
          variance = sq / n - mean * mean;
        // Standard errors: sqrt(1/12/n) ≈ 0.0013 for the mean, sqrt(1/180/n) ≈ 0.00033 for the variance; 5 sigma.
        expect(Math.abs(mean - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / n));
        expect(Math.abs(variance - 1 / 12)).toBeLessThan(5 * Math.sqrt(1 / 180 / n));
      }),
      { numRuns: 20 },
    );
  });

  it('gives uncorrelated streams for neighbouring seeds and uncorrelated consecutive draws', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 2 }), (seed) => {
        const n = 50_000;
        const a = uniformFloats(seed, n),
          b = uniformFloats(seed + 1, n);
        const corr = (x: ArrayLike<number>, y: ArrayLike<number>, m: number) => {
          let sxy = 0,
            sx = 0,
            sy = 0,
            sxx = 0,
            syy = 0;
          for (let i = 0; i < m; i++) {
            sxy += x[i]! * y[i]!;
            sx += x[i]!;
            sy += y[i]!;
            sxx += x[i]! * x[i]!;
            syy += y[i]! * y[i]!;
          }
          return (sxy / m - (sx / m) * (sy / m)) / Math.sqrt((sxx / m - (sx / m) ** 2) * (syy / m - (sy / m) ** 2));
        };
        // The correlation of independent samples has standard error 1/sqrt(n) ≈ 0.0045; 5 sigma.
        expect(Math.abs(corr(a, b, n))).toBeLessThan(5 / Math.sqrt(n));
        expect(Math.abs(corr(a, a.subarray(1), n - 1))).toBeLessThan(5 / Math.sqrt(n));
      }),
      { numRuns: 20 },
    );
  });
});
