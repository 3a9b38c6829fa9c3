/**
 * The communication model's arithmetic (comm-model.ts). Its agreement with the bytes Open MPI actually sends is
 * checked under mpirun by mpi.test.ts; here, the relations the papers state.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  allGatherBytes,
  allReduceBytes,
  bubbleFraction,
  dataParallelStepBytes,
  estimateStep,
  PAPER_MODELS,
  CLUSTER_8X8,
  reduceScatterBytes,
  scaleTable,
} from './comm-model';

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

  it("docs/parallelism.md's table of the papers' models on 8 × 8 GPUs is what the model computes now", () => {
    const doc = fs.readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/parallelism.md'), 'utf8');
    expect(doc, 'docs/parallelism.md: the "Scale on paper" table is stale: paste scaleTable() from comm-model.ts').toContain(scaleTable());
  });

  it('the estimate: compute is 6·params·tokens over all GPUs; ZeRO-1 divides the moments by D and not the bytes; a tensor group inside a node uses NVLink', () => {
    const gpt = PAPER_MODELS[0]!;
    const dp = estimateStep(gpt, CLUSTER_8X8, 64, 1, 1, 1, 0);
    const zero = estimateStep(gpt, CLUSTER_8X8, 64, 1, 1, 1, 1);
    expect(dp.computeSec).toBeCloseTo((6 * gpt.params * gpt.globalBatch * gpt.seq) / (64 * CLUSTER_8X8.flopsPerSec), 12);
    expect(zero.momentBytes * 64).toBeCloseTo(dp.momentBytes, 0);
    expect(zero.dataBytes / dp.dataBytes).toBeCloseTo(1, 4);
    // All 64 ranks in one data ring cross nodes: InfiniBand's bandwidth sets the pace.
    expect(dp.commSec).toBeCloseTo(dp.dataBytes / CLUSTER_8X8.interBytesPerSec, 12);
    const tp = estimateStep(gpt, CLUSTER_8X8, 8, 1, 8, 1, 0);
    expect(tp.commSec).toBeCloseTo(tp.tensorBytes / CLUSTER_8X8.intraBytesPerSec + tp.dataBytes / CLUSTER_8X8.interBytesPerSec, 12);
    expect(() => estimateStep(gpt, CLUSTER_8X8, 8, 2, 2, 1)).toThrow(/not 64 ranks/);
  });
});
