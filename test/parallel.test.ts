/**
 * The strategies' pieces that need no second process: how an epoch is sharded, the fused gradient buffer, the
 * option checks, that `mpi-data-parallel` is a world of one when no launcher started the process, that a config
 * chooses the strategy, and that the trainer reaches ranks only through its strategy's hooks.
 * (Real multi-rank runs: plugins/parallelism/mpi.test.ts.)
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { batchesOf, ConfigError, epochOrder, type Communicator } from '../core';
import { averageAcrossRanks, beginDataParallel, DataParallelStrategy, shardOrder, shardSize } from '../plugins/parallelism/data-parallel';
import { mpiLaunchVariable } from '../plugins/parallelism/mpi';
import { PipelineStrategy } from '../plugins/parallelism/pipeline';
import { testRegistry } from './harness';

/** A stand-in for `worldSize` ranks that all hold the same buffer: the all-reduce multiplies by the world size. */
function mirrorWorld(worldSize: number): Communicator {
  return {
    rank: 0, worldSize,
    allReduce: async (b) => void b.forEach((v, i) => (b[i] = v * worldSize)),
    broadcast: async () => undefined, barrier: async () => undefined,
    send: async () => undefined, recv: async () => undefined, finalize: async () => undefined,
  };
}

describe('shardOrder', () => {
  it('gives every rank as many examples, disjoint, and batch b of all ranks = batch b of one process with worldSize × the batch', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 9 }), fc.integer(), (n, world, batch, seed) => {
        const order = epochOrder(n, seed, 1, true);
        const shards = Array.from({ length: world }, (_, rank) => shardOrder(order, { rank, worldSize: world }));
        for (const s of shards) expect(s.length).toBe(shardSize(n, world));
        const seen = shards.flatMap((s) => Array.from(s));
        expect(new Set(seen).size).toBe(seen.length);
        const perRank = shards.map((s) => [...batchesOf(s, batch)]);
        const combined = [...batchesOf(order.subarray(0, shardSize(n, world) * world), batch * world)];
        expect(perRank.every((b) => b.length === combined.length)).toBe(true);
        combined.forEach((c, b) => {
          const union = perRank.flatMap((r) => Array.from(r[b]!)).sort((p, q) => p - q);
          expect(union).toEqual(Array.from(c).sort((p, q) => p - q));
        });
      }),
    );
  });

  it('is the order itself in a world of one', () => {
    const order = epochOrder(10, 1, 0, true);
    expect(shardOrder(order, { rank: 0, worldSize: 1 })).toBe(order);
  });
});

describe('averageAcrossRanks', () => {
  it('packs every gradient and the loss into one buffer and unpacks the average, shapes kept, without leaking', async () => {
    const grads = { a: tf.tensor([[1, -2], [3, 4.5]]), b: tf.tensor([7]), c: tf.tensor([[[0.25]]]) };
    const before = tf.memory().numTensors;
    let calls = 0;
    const world = mirrorWorld(4);
    const counting = { ...world, allReduce: (b: Float32Array) => (calls++, world.allReduce(b)) };
    const out = await averageAcrossRanks(counting, { ...grads }, 0.625);
    expect(calls).toBe(1);
    expect(out.loss).toBe(0.625);
    for (const [k, g] of Object.entries(grads)) {
      expect(g.isDisposed).toBe(true);
      expect(out.grads[k]!.shape).toEqual(g.shape);
    }
    expect(Array.from(out.grads.a!.dataSync())).toEqual([1, -2, 3, 4.5]);
    expect(Array.from(out.grads.c!.dataSync())).toEqual([0.25]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(Object.values(out.grads));
  });
});

describe('beginDataParallel', () => {
  it('refuses onNonFinite "skip" with several ranks (a skipping rank would miss the all-reduce)', async () => {
    const model = { parameters: () => [], buffers: () => [] } as never;
    await expect(beginDataParallel(mirrorWorld(2), model, { onNonFinite: 'skip' })).rejects.toThrow(ConfigError);
    await expect(beginDataParallel(mirrorWorld(2), model, { onNonFinite: 'skip' })).rejects.toThrow(/trainer.onNonFinite.*"skip" is not supported with 2 ranks/);
    await expect(beginDataParallel(mirrorWorld(1), model, { onNonFinite: 'skip' })).resolves.toBeUndefined();
  });
});

describe('mpi-data-parallel without a launcher', () => {
  it('recognises the launchers by their environment', () => {
    expect(mpiLaunchVariable({})).toBeNull();
    expect(mpiLaunchVariable({ SLURM_PROCID: '0', SLURM_NTASKS: '4' })).toBeNull(); // a batch script, not a step
    expect(mpiLaunchVariable({ OMPI_COMM_WORLD_SIZE: '2' })).toBe('OMPI_COMM_WORLD_SIZE=2');
    expect(mpiLaunchVariable({ PMIX_RANK: '3' })).toBe('PMIX_RANK=3');
    expect(mpiLaunchVariable({ PMI_RANK: '0' })).toBe('PMI_RANK=0');
    expect(mpiLaunchVariable({ SLURM_STEP_NUM_TASKS: '2' })).toBe('SLURM_STEP_NUM_TASKS=2');
    expect(mpiLaunchVariable({ SLURM_STEP_NUM_TASKS: '1' })).toBeNull();
  });

  it.skipIf(mpiLaunchVariable() !== null)('is a world of one that needs no MPI (this process was not launched by mpirun)', async () => {
    const registry = await testRegistry();
    const s = registry.create('parallelism', 'mpi-data-parallel');
    expect([s.rank, s.worldSize, s.isGlobalZero]).toEqual([0, 1, true]);
    if (!(s instanceof DataParallelStrategy)) throw new Error('mpi-data-parallel is not a DataParallelStrategy');
    const b = Float32Array.from([1, 2]);
    await s.comm.allReduce(b);
    await s.comm.broadcast(b, 0);
    expect(Array.from(b)).toEqual([1, 2]);
    await expect(s.comm.send(b, 1, 0)).rejects.toThrow(/not started by an MPI launcher/);
  });
});
