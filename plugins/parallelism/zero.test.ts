/**
 * ZeRO-1's sharding in one process (a world of one: one shard holding everything). Several ranks are tested under
 * mpirun by mpi.test.ts (the trajectory of unsharded Adam, 1/N of the moments per rank, checkpoints).
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { ConfigError, Rng, Sequential, type Strategy, Trainer, trainerOptionsSchema } from '../../core';
import { DataParallelStrategy } from './data-parallel';
import { testRegistry } from '../../test/harness';
import { worldOfOne } from './single-process';
import { optimizerStateBytes, ZeroShards } from './zero';

describe('ZeRO-1 shards', () => {
  it("a world of one: one piece per parameter; its steps are the unsharded optimizer's; the state is cut and consolidated losslessly", async () => {
    const registry = await testRegistry();
    const build = () => {
      const m = new Sequential(
        {
          inputShape: [3],
          layers: [
            { type: 'dense', units: 4, activation: 'tanh' },
            { type: 'dense', units: 2 },
          ],
        },
        registry,
      );
      m.build(undefined, new Rng(3));
      return m;
    };
    const [a, b] = [build(), build()];
    const [optA, optB] = [
      registry.create('optimizer', { type: 'adam', lr: 0.1, weightDecay: 0.1 }),
      registry.create('optimizer', { type: 'adam', lr: 0.1, weightDecay: 0.1 }),
    ];
    const before = tf.memory().numTensors;
    const zero = new ZeroShards(worldOfOne('test'), a.parameters(), optA);
    expect(zero.pieces.length).toBe(4);
    expect(zero.shardSize).toBe(3 * 4 + 4 + 4 * 2 + 2);
    const g = new Rng(9);
    for (let step = 0; step < 3; step++) {
      const grads = () =>
        Object.fromEntries(
          a.parameters().map((p) => [
            p.name,
            tf.tensor(
              Array.from({ length: p.variable.size }, () => g.normal()),
              p.variable.shape,
            ),
          ]),
        );
      const ga = grads();
      const gb = Object.fromEntries(Object.entries(ga).map(([k, t]) => [k, tf.clone(t)]));
      await zero.gather();
      const r = await zero.reduceGradients(ga, 1.5);
      expect(r.loss).toBe(1.5);
      optA.step(zero.shardParameters(), r.grads);
      tf.dispose(Object.values(r.grads));
      optB.step(b.parameters(), gb);
      tf.dispose(Object.values(gb));
    }
    await zero.gather();
    const flat = (m: Sequential) => m.parameters().flatMap((p) => Array.from(p.variable.dataSync()));
    expect(flat(a)).toEqual(flat(b));
    // Consolidated: the unsharded optimizer's state, value for value; cut again: the pieces' state.
    await zero.consolidate();
    const whole = optA.getState();
    expect(Object.keys(whole.slots).sort()).toEqual(Object.keys(optB.getState().slots).sort());
    for (const [name, slot] of Object.entries(optB.getState().slots))
      for (const k of ['m', 'v']) expect(whole.slots[name]![k]!.values).toEqual(slot[k]!.values);
    zero.shardState();
    expect(optimizerStateBytes(optA.getState())).toBe(optimizerStateBytes(optB.getState()));
    zero.dispose();
    optA.dispose();
    optB.dispose();
    expect(tf.memory().numTensors).toBe(before);
    a.dispose();
    b.dispose();
  });

  it('refuses an optimizer not known to update element by element, naming parallelism.zero', async () => {
    const registry = await testRegistry();
    const m = new Sequential({ inputShape: [2], layers: [{ type: 'dense', units: 2 }] }, registry);
    m.build(undefined, new Rng(1));
    const lamb = {
      spec: { type: 'lamb' },
      learningRate: 0.1,
      step: () => undefined,
      getState: () => ({ step: 0, hyper: {}, slots: {} }),
      setState: () => undefined,
      dispose: () => undefined,
    };
    expect(() => new ZeroShards(worldOfOne('test'), m.parameters(), lamb)).toThrow(ConfigError);
    expect(() => new ZeroShards(worldOfOne('test'), m.parameters(), lamb)).toThrow(/^parallelism\.zero: .*optimizer "lamb"/);
    m.dispose();
  });
});

describe('ZeRO-1 with gradient clipping', () => {
  it('a world of one with clipNorm and clipValue: the trainer steps bit for bit as unsharded AdamW clipped once, by the norm of the whole gradient', async () => {
    const registry = await testRegistry();
    const make = (parallelism: Strategy) => {
      const model = new Sequential(
        {
          inputShape: [3],
          layers: [
            { type: 'dense', units: 5, activation: 'tanh' },
            { type: 'dense', units: 2 },
          ],
        },
        registry,
      );
      model.build(undefined, new Rng(4));
      return new Trainer({
        model,
        loss: registry.create('loss', 'mse'),
        optimizer: registry.create('optimizer', { type: 'adam', lr: 0.05, weightDecay: 0.1 }),
        tracker: registry.create('tracker', 'console'),
        strategy: parallelism,
        rng: new Rng(5),
        options: trainerOptionsSchema.parse({ epochs: 1, batchSize: 8, clipNorm: 0.05, clipValue: 0.5 }),
      });
    };
    const sharded = make(Object.assign(new DataParallelStrategy(worldOfOne('test'), { zero: 1 }), { spec: { type: 'single-process', zero: 1 } }));
    const plain = make(registry.create('parallelism', 'single-process'));
    await sharded.strategy.setup(sharded);
    await plain.strategy.setup(plain);
    const g = new Rng(6);
    let before = 0;
    for (let step = 0; step < 4; step++) {
      if (step === 1) before = tf.memory().numTensors; // the optimizers' moments exist from the first step on
      const xs = Array.from({ length: 8 * 3 }, () => g.normal() * 3);
      const ys = Array.from({ length: 8 * 2 }, () => g.normal() * 3);
      for (const t of [sharded, plain]) {
        const batch = { x: tf.tensor2d(xs, [8, 3]), y: tf.tensor2d(ys, [8, 2]) };
        await t.trainStep(batch, { step, epoch: 0 });
        tf.dispose([batch.x, batch.y]);
      }
    }
    expect(tf.memory().numTensors).toBe(before);
    await sharded.strategy.teardown(sharded);
    await plain.strategy.teardown(plain);
    const flat = (t: Trainer) => t.model.parameters().flatMap((p) => Array.from(p.variable.dataSync()));
    expect(flat(sharded)).toEqual(flat(plain));
    for (const t of [sharded, plain]) {
      t.model.dispose();
      t.optimizer.dispose();
    }
  });
});
