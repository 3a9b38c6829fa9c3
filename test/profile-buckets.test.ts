/** benchmarks/profile-buckets.ts: a profile's samples go to the first bucket their stack fits, startup until the first step. */
import { describe, expect, it } from 'vitest';
import { bucketProfile, type CpuProfile } from '../benchmarks/profile-buckets';

describe('bucketProfile', () => {
  it('buckets samples by stack, counts what precedes the first trainStep as startup and what follows as other', () => {
    const frame = (id: number, functionName: string, url: string, children: number[] = []) => ({ id, callFrame: { functionName, url }, children });
    const profile: CpuProfile = {
      nodes: [
        frame(1, '(root)', '', [2, 3, 4, 9, 10]),
        frame(2, 'loadESM', 'node:internal/modules/esm/loader'),
        frame(3, 'fit', 'file:///r/core/trainer.ts', [5, 7, 8]),
        frame(4, '(garbage collector)', ''),
        frame(5, 'trainStep', 'file:///r/core/trainer.ts', [6]),
        frame(6, 'step', 'file:///r/core/optimizer.ts'),
        frame(7, 'batch', 'file:///r/core/data.ts'),
        frame(8, 'evaluate', 'file:///r/core/trainer.ts', [11]),
        frame(9, 'processTicksAndRejections', 'node:internal/process/task_queues'),
        frame(10, 'update', 'file:///r/plugins/metrics/accuracy.ts'),
        frame(11, 'batch', 'file:///r/core/data.ts'),
      ],
      // module loading, gc, optimizer step, batching, glue, metrics, a batch inside evaluate, module loading again
      samples: [2, 4, 6, 7, 9, 10, 11, 2],
      timeDeltas: [100, 10, 500, 20, 5, 30, 40, 7],
    };
    expect(Object.fromEntries(bucketProfile(profile))).toEqual({
      'startup: module loading': 100,
      'garbage collection': 10,
      'optimizer step': 500,
      'batching (Dataset.batch, epoch order)': 20,
      'other (async glue, tfjs engine outside a step)': 5 + 7,
      'metrics (accuracy.update)': 30,
      'validation and test (Trainer.evaluate)': 40,
    });
  });
});
