/**
 * The communication model's arithmetic (comm-model.ts). Its agreement with the bytes Open MPI actually sends is
 * checked under mpirun by mpi.test.ts; here, the relations the papers state.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allGatherBytes, allReduceBytes, bubbleFraction, dataParallelStepBytes, reduceScatterBytes } from './comm-model';

describe('communication model', () => {
  it('ZeRO-1 sends what a ring all-reduce sends, up to the padding of the last shard and the loss (Rajbhandari et al. 2020, §7.2.1)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 64 }), fc.integer({ min: 1, max: 1e8 }), (n, params) => {
        const plain = dataParallelStepBytes(n, params, 0);
        const zero = dataParallelStepBytes(n, params, 1);
        expect(plain).toBeCloseTo(allReduceBytes(n, 4 * (params + 1)), 6);
        // Padding: at most n − 1 elements in each of the two collectives; the loss: one element per block.
        expect(zero - plain).toBeGreaterThanOrEqual(-1e-6 * plain);
        expect(zero - plain).toBeLessThanOrEqual(((n - 1) / n) * 4 * (2 * n + n));
      }),
    );
  });

  it('a ring all-reduce is a reduce-scatter and an all-gather; one rank sends nothing', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 1e9 }), (n, bytes) => {
        expect(allReduceBytes(n, bytes)).toBeCloseTo(reduceScatterBytes(n, bytes) + allGatherBytes(n, bytes), 3);
        if (n === 1) expect(allReduceBytes(n, bytes)).toBe(0);
      }),
    );
  });

  it("GPipe's bubble (p − 1)/(m + p − 1): none with one stage, shrinking as micro-batches grow", () => {
    expect(bubbleFraction(1, 8)).toBe(0);
    expect(bubbleFraction(4, 4)).toBeCloseTo(3 / 7, 12);
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 64 }), fc.integer({ min: 1, max: 256 }), (p, m) => {
        expect(bubbleFraction(p, m + 1)).toBeLessThan(bubbleFraction(p, m));
      }),
    );
  });
});
