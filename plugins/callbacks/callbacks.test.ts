/** Early stopping and reduce-on-plateau on scripted metric sequences. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { beforeAll, describe, expect, it } from 'vitest';
import { applyMasks, definePlugin, Rng, Sequential, setMask, type Callback, type PluginRegistry, type TrainingState } from '../../core';
import { runExperiment } from '../../runtime';
import { testRegistry } from '../../test/harness';
import { autoMode } from './monitor';
import toyBlobs, { toyConfig } from '../../test/toy-data';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

function play(cb: Callback, values: number[], key = 'val_loss'): { stoppedAfter: number | null; lrs: number[]; state: TrainingState } {
  const state = { epoch: 0, step: 0, epochs: values.length, stepsPerEpoch: 1, stopTraining: false, optimizer: { learningRate: 1 } } as unknown as TrainingState;
  cb.onTrainBegin?.(state);
  const lrs: number[] = [];
  for (let e = 0; e < values.length; e++) {
    state.epoch = e;
    cb.onEpochEnd?.(state, { [key]: values[e]! });
    lrs.push(state.optimizer.learningRate);
    if (state.stopTraining) return { stoppedAfter: e, lrs, state };
  }
  return { stoppedAfter: null, lrs, state };
}

describe('early-stopping', () => {
  it('stops at the epoch that makes `patience` in a row without improvement, as Keras and Lightning do (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 30 }), fc.integer({ min: 1, max: 4 }), (values, patience) => {
        // Lightning's EarlyStopping: wait_count += 1 on a non-improving epoch, stop when wait_count >= patience.
        let best = Infinity;
        let wait = 0;
        let expected: number | null = null;
        for (const [e, v] of values.entries()) {
          if (v < best) {
            best = v;
            wait = 0;
          } else if (++wait >= patience) {
            expected = e;
            break;
          }
        }
        expect(play(registry.create('callback', { type: 'early-stopping', patience }), values).stoppedAfter).toBe(expected);
      }),
    );
  });

  it('stops after `patience` epochs without improvement, and not before', () => {
    const cb = registry.create('callback', { type: 'early-stopping', patience: 2 });
    expect(play(cb, [5, 4, 4.5, 4.2, 4.1, 3]).stoppedAfter).toBe(3); // the second epoch in a row without improvement
    expect(play(registry.create('callback', { type: 'early-stopping', patience: 3 }), [5, 4, 4.5, 4.2, 3.9, 4, 4, 4]).stoppedAfter).toBe(7);
    expect(play(registry.create('callback', { type: 'early-stopping', patience: 2 }), [5, 4, 3, 2, 1]).stoppedAfter).toBeNull();
    expect(
      play(registry.create('callback', { type: 'early-stopping', patience: 0, mode: 'max', monitor: 'val_accuracy' }), [0.5, 0.6, 0.6], 'val_accuracy')
        .stoppedAfter,
    ).toBe(2);
  });

  it("mode 'auto' (the default, Keras's rule): accuracy-like metrics are maximised, losses, perplexity and error rates minimised", () => {
    // Before, the default was min: monitoring val_accuracy without a mode stopped a run whose accuracy was rising.
    const rising = [0.5, 0.6, 0.7, 0.8, 0.9];
    expect(play(registry.create('callback', { type: 'early-stopping', patience: 1, monitor: 'val_accuracy' }), rising, 'val_accuracy').stoppedAfter).toBeNull();
    expect(play(registry.create('callback', { type: 'early-stopping', patience: 1, monitor: 'val_wer' }), rising, 'val_wer').stoppedAfter).toBe(1);
    expect(['val_accuracy', 'accuracy', 'val_acc', 'val_auc', 'val_f1', 'val_loss', 'val_perplexity', 'val_wer', 'loss'].map(autoMode)).toEqual([
      'max',
      'max',
      'max',
      'max',
      'max',
      'min',
      'min',
      'min',
      'min',
    ]);
  });

  it('names the missing metric', () => {
    expect(() => play(registry.create('callback', { type: 'early-stopping', monitor: 'val_bleu' }), [1])).toThrow(/no epoch metric "val_bleu"; have val_loss/);
  });

  it("restoreBest puts back the best epoch's weights but keeps weights pruned since at 0 (their masks stand)", () => {
    // Before, the restored values overwrote pruned positions: the model tested was denser than its masks said.
    const model = new Sequential({ inputShape: [3], layers: [{ type: 'dense', units: 2 }] }, registry);
    model.build(undefined, new Rng(1));
    const cb = registry.create('callback', { type: 'early-stopping', patience: 3, restoreBest: true });
    const state = { model, epoch: 0, step: 0, epochs: 2, stepsPerEpoch: 1, stopTraining: false, restoredEpoch: null } as unknown as TrainingState;
    cb.onTrainBegin?.(state);
    const kernel = model.parameters().find((p) => p.name.endsWith('/kernel'))!;
    kernel.variable.assign(tf.fill([3, 2], 0.5));
    cb.onEpochEnd!(state, { val_loss: 1 }); // the best epoch: every weight 0.5
    state.epoch = 1;
    setMask(kernel, tf.tensor2d([1, 0, 0, 1, 1, 0], [3, 2])); // pruned in epoch 2
    applyMasks(model.parameters());
    cb.onEpochEnd!(state, { val_loss: 2 });
    cb.onTrainEnd!(state, {});
    expect([state.restoredEpoch, Array.from(kernel.variable.dataSync())]).toEqual([1, [0.5, 0, 0, 0.5, 0.5, 0]]);
    model.dispose();
  });

  it("restoreBest puts back the best epoch's buffers too (batch norm's moving statistics, as Keras's restore_best_weights)", () => {
    // Before, only the parameters came back: the model tested paired the best weights with the last epoch's statistics.
    const model = new Sequential({ inputShape: [3], layers: [{ type: 'dense', units: 2 }, { type: 'batch-norm' }] }, registry);
    model.build(undefined, new Rng(1));
    const cb = registry.create('callback', { type: 'early-stopping', patience: 3, restoreBest: true });
    const state = { model, epoch: 0, step: 0, epochs: 2, stepsPerEpoch: 1, stopTraining: false, restoredEpoch: null } as unknown as TrainingState;
    cb.onTrainBegin?.(state);
    const [mean] = model.buffers();
    mean!.variable.assign(tf.tensor1d([0.25, -0.5]));
    cb.onEpochEnd!(state, { val_loss: 1 });
    state.epoch = 1;
    mean!.variable.assign(tf.tensor1d([3, 4]));
    cb.onEpochEnd!(state, { val_loss: 2 });
    // Through the callback's saved state too (a resume between the best epoch and the end).
    const again = registry.create('callback', { type: 'early-stopping', patience: 3, restoreBest: true });
    again.setState!(JSON.parse(JSON.stringify(cb.getState!())));
    for (const c of [cb, again]) {
      mean!.variable.assign(tf.tensor1d([3, 4]));
      c.onTrainEnd!(state, {});
      expect(Array.from(mean!.variable.dataSync())).toEqual([0.25, -0.5]);
    }
    model.dispose();
  });

  it("restoreBest ends with the best epoch's weights, also through a state round trip (40 cases)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 10, noNaN: true }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 3 }),
        fc.boolean(),
        (losses, patience, viaState) => {
          const model = new Sequential({ inputShape: [3], layers: [{ type: 'dense', units: 2 }] }, registry);
          model.build(undefined, new Rng(1));
          let cb = registry.create('callback', { type: 'early-stopping', patience, restoreBest: true }) as Callback;
          const state = {
            model,
            epoch: 0,
            step: 0,
            epochs: losses.length,
            stepsPerEpoch: 1,
            stopTraining: false,
            restoredEpoch: null,
          } as unknown as TrainingState;
          cb.onTrainBegin?.(state);
          const snapshots: Float32Array[][] = [];
          let best = Infinity;
          let bestAt = -1;
          for (let e = 0; e < losses.length && !state.stopTraining; e++) {
            state.epoch = e;
            // This epoch's weights: new random values, as training would leave them.
            for (const p of model.parameters()) p.variable.assign(tf.randomNormal(p.variable.shape, 0, 1, 'float32', 1000 * e + 7));
            snapshots.push(model.parameters().map((p) => Float32Array.from(p.variable.dataSync())));
            if (losses[e]! < best) (best = losses[e]!), (bestAt = e);
            cb.onEpochEnd?.(state, { val_loss: losses[e]! });
          }
          for (const p of model.parameters()) p.variable.assign(tf.zeros(p.variable.shape)); // training moved on
          if (viaState) {
            const saved = JSON.parse(JSON.stringify(cb.getState!()));
            cb = registry.create('callback', { type: 'early-stopping', patience, restoreBest: true }) as Callback;
            cb.setState!(saved);
          }
          cb.onTrainEnd?.(state, {});
          model.parameters().forEach((p, i) => expect(Array.from(p.variable.dataSync())).toEqual(Array.from(snapshots[bestAt]![i]!)));
          expect(state.restoredEpoch).toBe(bestAt + 1); // 1-based, as the trainer's history reports it
          model.dispose();
        },
      ),
      { numRuns: 40 },
    );
  });

  it("monitors a metric a callback adds in onEpochMetrics, which is logged with the epoch's others", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-epoch-metrics-'));
    try {
      const seen: string[][] = [];
      const reg = (await testRegistry()).register(
        toyBlobs,
        definePlugin({
          kind: 'callback',
          name: 'rising-metric',
          description: 'test: adds val_score = 5, 6, 7, ... per epoch',
          schema: z.object({}),
          create: () => ({ onEpochMetrics: (s: TrainingState, logs: Record<string, number>) => void (logs.val_score = s.epoch === 0 ? 5 : 5 + s.epoch) }),
        }),
        definePlugin({
          kind: 'callback',
          name: 'see-logs',
          description: 'test: records the epoch logs keys',
          schema: z.object({}),
          create: () => ({ onEpochEnd: (_s: TrainingState, logs: Record<string, number>) => void seen.push(Object.keys(logs)) }),
        }),
      );
      const config = toyConfig(path.join(dir, 'mlruns'), {
        callbacks: ['rising-metric', { type: 'early-stopping', monitor: 'val_score', patience: 1 }, 'see-logs'],
        trainer: { epochs: 6, batchSize: 16, validationSplit: 0.25, checkpoint: { enabled: false } },
      });
      const r = await runExperiment({ registry: reg, config, log: () => undefined });
      expect(r.history).toHaveLength(2); // best at epoch 1, then one epoch without improvement: patience 1 is spent
      expect(seen[0]).toContain('val_score');
      const metrics = fs
        .readFileSync(path.join(r.run.location, 'metrics', 'val_score'), 'utf8')
        .trim()
        .split('\n');
      expect(metrics.map((l) => Number(l.split(' ')[1]))).toEqual([5, 6]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('reduce-on-plateau', () => {
  it('multiplies the learning rate by factor after `patience` flat epochs, down to minLr (Keras ReduceLROnPlateau)', () => {
    // Keras: the cut comes at the epoch where `patience` epochs have passed without improvement (wait >= patience),
    // and the count restarts. Before, loom cut one epoch later (wait > patience): 1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.2.
    const cb = registry.create('callback', { type: 'reduce-on-plateau', factor: 0.5, patience: 1, minLr: 0.2 });
    expect(play(cb, [3, 2, 2, 2, 2, 2, 2, 2]).lrs).toEqual([1, 1, 0.5, 0.25, 0.2, 0.2, 0.2, 0.2]);
    const two = registry.create('callback', { type: 'reduce-on-plateau', factor: 0.5, patience: 2 });
    expect(play(two, [3, 2, 2, 2, 1, 1, 1, 1]).lrs).toEqual([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]);
  });

  it('counts no flat epoch during the cooldown after a cut, and an improvement must beat the best by minDelta', () => {
    // Keras's rule, by hand: patience 1, cooldown 2. A cut at epoch 2 sets the counter to 2; each epoch first counts
    // it down, so epoch 3 (counter 1 after it) is not counted and epoch 4 (counter 0) is, and cuts: every other epoch.
    const cb = registry.create('callback', { type: 'reduce-on-plateau', factor: 0.5, patience: 1, cooldown: 2 });
    expect(play(cb, [3, 2, 2, 2, 2, 2, 2]).lrs).toEqual([1, 1, 0.5, 0.5, 0.25, 0.25, 0.125]);
    const none = registry.create('callback', { type: 'reduce-on-plateau', factor: 0.5, patience: 1 });
    expect(play(none, [3, 2, 2, 2, 2]).lrs).toEqual([1, 1, 0.5, 0.25, 0.125]);
    // 2 − 1e-5 is no improvement on 2 with the default minDelta 1e-4; with minDelta 0 it is one.
    const flat = registry.create('callback', { type: 'reduce-on-plateau', factor: 0.5, patience: 1 });
    expect(play(flat, [2, 2 - 1e-5]).lrs).toEqual([1, 0.5]);
    const exact = registry.create('callback', { type: 'reduce-on-plateau', factor: 0.5, patience: 1, minDelta: 0 });
    expect(play(exact, [2, 2 - 1e-5]).lrs).toEqual([1, 1]);
  });
});

describe('the best-value callbacks', () => {
  it("load the states checkpoints hold (best as a number or null, wait, early stopping's best epoch) and continue from them", () => {
    const resumed = (spec: object, saved: object) => {
      const cb = registry.create('callback', spec as never);
      const state = { epoch: 5, step: 5, epochs: 9, stepsPerEpoch: 1, stopTraining: false, optimizer: { learningRate: 1 } } as unknown as TrainingState;
      cb.onTrainBegin?.(state); // the trainer's order on a resume: onTrainBegin, then the checkpoint's state
      cb.setState!(saved as never);
      expect(cb.getState!()).toEqual(saved); // the same format back
      return { cb, state };
    };
    // early stopping, patience 2, one flat epoch behind it: a second stops training; an improvement would not.
    const flat = resumed({ type: 'early-stopping', patience: 2 }, { best: 1, wait: 1, bestEpoch: 3 });
    flat.cb.onEpochEnd!(flat.state, { val_loss: 1 });
    expect(flat.state.stopTraining).toBe(true);
    const better = resumed({ type: 'early-stopping', patience: 2 }, { best: 1, wait: 1, bestEpoch: 3 });
    better.cb.onEpochEnd!(better.state, { val_loss: 0.5 });
    expect([better.state.stopTraining, better.cb.getState!()]).toEqual([false, { best: 0.5, wait: 0, bestEpoch: 6 }]);
    // null is "no best yet" (JSON has no infinity): any value improves on it, in either mode.
    const fresh = resumed({ type: 'early-stopping', mode: 'max', monitor: 'val_accuracy', patience: 0 }, { best: null, wait: 0, bestEpoch: null });
    fresh.cb.onEpochEnd!(fresh.state, { val_accuracy: -5 });
    expect(fresh.cb.getState!()).toMatchObject({ best: -5, wait: 0 });
    // reduce-on-plateau, patience 2, one flat epoch behind it: a second multiplies the rate and restarts the count.
    const plateau = resumed({ type: 'reduce-on-plateau', patience: 2, factor: 0.5, cooldown: 1 }, { best: 2, wait: 1, cooldown: 0 });
    plateau.cb.onEpochEnd!(plateau.state, { val_loss: 2 });
    expect([plateau.state.optimizer.learningRate, plateau.cb.getState!()]).toEqual([0.5, { best: 2, wait: 0, cooldown: 1 }]);
    // model-checkpoint keeps best and the saved directories (no wait).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-best-state-'));
    try {
      const ckpt = resumed({ type: 'model-checkpoint', dir, saveBestOnly: true }, { best: 0.5, saved: [] });
      ckpt.cb.onEpochEnd!({ ...ckpt.state, isGlobalZero: true } as TrainingState, { val_loss: 0.7 });
      expect([fs.existsSync(path.join(dir, 'best')), ckpt.cb.getState!()]).toEqual([false, { best: 0.5, saved: [] }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
