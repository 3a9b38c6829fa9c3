/**
 * The strategies' pieces that need no second process: how an epoch is sharded, the fused gradient buffer, the
 * option checks, that `mpi-data-parallel` is a world of one when no launcher started the process, that a config
 * chooses the strategy, and that the trainer reaches ranks only through its strategy's hooks.
 * (Real multi-rank runs: plugins/parallelism/mpi.test.ts.)
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import type { DependencyContainer } from 'tsyringe';
import { describe, expect, it } from 'vitest';
import { batchesOf, ConfigError, epochOrder, TOKENS, Trainer, trainerOptionsSchema, type Communicator, type Strategy } from '../core';
import { buildRunContainer, disposeRun } from '../runtime';
import { averageAcrossRanks, beginDataParallel, DataParallelStrategy, shardOrder, shardSize } from '../plugins/parallelism/data-parallel';
import { mpiLaunchVariable } from '../plugins/parallelism/mpi';
import { PipelineStrategy } from '../plugins/parallelism/pipeline';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

/** A stand-in for `worldSize` ranks that all hold the same buffer: the all-reduce multiplies by the world size. */
function mirrorWorld(worldSize: number): Communicator {
  return {
    rank: 0,
    worldSize,
    allReduce: async (b) => void b.forEach((v, i) => (b[i] = v * worldSize)),
    reduceScatter: async (send, recv) => void recv.forEach((_, i) => (recv[i] = send[i]! * worldSize)),
    allGather: async (send, recv) => void recv.forEach((_, i) => (recv[i] = send[i % send.length]!)),
    broadcast: async () => undefined,
    barrier: async () => undefined,
    send: async () => undefined,
    recv: async () => undefined,
    finalize: async () => undefined,
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
    const grads = {
      a: tf.tensor([
        [1, -2],
        [3, 4.5],
      ]),
      b: tf.tensor([7]),
      c: tf.tensor([[[0.25]]]),
    };
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
    await expect(beginDataParallel(mirrorWorld(2), model, { onNonFinite: 'skip' })).rejects.toThrow(
      /trainer.onNonFinite.*"skip" is not supported with 2 ranks/,
    );
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

describe('strategies chosen by the config', () => {
  const quiet = () => undefined;
  const config = (parallelism: unknown) => ({
    ...toyConfig('unused', {
      trackers: ['console'],
      trainer: { epochs: 2, batchSize: 16, validationSplit: 0.25, logEvery: 100, checkpoint: { enabled: false } },
    }),
    model: {
      inputShape: [2],
      layers: [
        { type: 'dense', units: 8, activation: 'tanh', kernelRegularizer: { type: 'l2', l2: 0.01 } },
        { type: 'dense', units: 3 },
      ],
    },
    parallelism,
  });
  const weights = (c: DependencyContainer) =>
    c
      .resolve(TOKENS.Model)
      .parameters()
      .flatMap((p) => Array.from(p.variable.dataSync()));

  it('a pipeline (a single stage here) trains the model the single-process strategy trains, micro-batch by micro-batch', async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const run = async (parallelism: unknown) => {
      const c = await buildRunContainer({ registry, config: config(parallelism), log: quiet });
      const history = await c.resolve(Trainer).fit(c.resolve(TOKENS.TrainData), c.resolve(TOKENS.ValidationData));
      const out = { type: c.resolve(Trainer).strategy.spec.type, history, weights: weights(c) };
      disposeRun(c);
      return out;
    };
    const [pipe, single, mpi] = [await run({ type: 'pipeline', microBatches: 3 }), await run('single-process'), await run('mpi-data-parallel')];
    expect([pipe.type, single.type, mpi.type]).toEqual(['pipeline', 'single-process', 'mpi-data-parallel']);
    expect(mpi.weights, 'mpi-data-parallel in a world of one is single-process training').toEqual(single.weights);
    pipe.weights.forEach((w, i) => expect(Math.abs(w - single.weights[i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(w))));
    pipe.history.epochs.forEach((e, i) => {
      for (const k of ['loss', 'accuracy', 'val_loss', 'val_accuracy']) expect(e[k]).toBeCloseTo(single.history.epochs[i]![k]!, 5);
    });
  });

  it("the trainer reaches the ranks only through its strategy's hooks, and trains on the shard the strategy gives", async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const calls: string[] = [];
    const inner = new DataParallelStrategy(mirrorWorld(1));
    // A strategy that gives this "rank" only the first half of every epoch's order.
    const half: Strategy = {
      spec: { type: 'half' },
      rank: 0,
      worldSize: 1,
      isGlobalZero: true,
      setup: async (h) => void calls.push(`setup ${h.options.batchSize}`),
      shardSize: (n) => Math.floor(n / 2),
      shard: (order) => (calls.push('shard'), order.subarray(0, Math.floor(order.length / 2))),
      gradients: async (batches, h, state) => (calls.push(`gradients ${batches[0]!.x.shape[0]}`), inner.gradients(batches, h, state)),
      synchronize: async () => void calls.push('synchronize'),
      teardown: async () => void calls.push('teardown'),
    };
    const c = await buildRunContainer({
      registry,
      config: config('single-process'),
      log: quiet,
      override: (r) => r.register(TOKENS.Strategy, { useValue: half }),
    });
    const trainer = c.resolve(Trainer);
    // 72 training examples: the strategy's 36 a epoch, in batches of 16, 16 and 4.
    expect(trainer.stepsPerEpoch(c.resolve(TOKENS.TrainData))).toBe(3);
    const history = await trainer.fit(c.resolve(TOKENS.TrainData));
    expect(history.step).toBe(6);
    const epoch = ['shard', 'gradients 16', 'gradients 16', 'gradients 4', 'synchronize'];
    expect(calls).toEqual(['setup 16', ...epoch, ...epoch, 'teardown']);
    disposeRun(c);
  });

  it('a pipeline of several stages refuses, naming the field, what it cannot do', async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const c = await buildRunContainer({ registry, config: config('single-process'), log: quiet });
    const base = trainerOptionsSchema.parse({ epochs: 1, batchSize: 8, checkpoint: { enabled: false } });
    const host = (options: object, model: unknown = c.resolve(TOKENS.Model)) =>
      ({ ...c.resolve(Trainer), model, loss: c.resolve(TOKENS.Loss), options: { ...base, ...options } }) as never;
    const two = () => new PipelineStrategy(mirrorWorld(2), { microBatches: 2 });
    await expect(two().setup(host({ clipNorm: 1 }))).rejects.toThrow(/^trainer\.clipNorm: is not supported by a pipeline of 2 stages/);
    await expect(two().setup(host({ onNonFinite: 'skip' }))).rejects.toThrow(/^trainer\.onNonFinite:/);
    await expect(two().setup(host({ accumulateSteps: 2 }))).rejects.toThrow(/^trainer\.accumulateSteps:/);
    await expect(two().setup(host({}, { parameters: () => [] }))).rejects.toThrow(ConfigError);
    await expect(two().setup(host({}, { parameters: () => [] }))).rejects.toThrow(/^parallelism: a pipeline cuts a model that is a list of layers/);
    await expect(two().gradients([], host({}))).rejects.toThrow(/before setup/);
    disposeRun(c);
  });
});
