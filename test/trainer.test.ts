/** The trainer end to end on toy data: it learns, it does not leak, and the same seed gives the same run. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { clipGradients, epochOrder, TOKENS, Trainer, type PluginRegistry, type Tracker } from '../core';
import { buildRunContainer, disposeRun, runExperiment } from '../runtime';
import { expectNoLeak, testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

let registry: PluginRegistry;
let dir: string;
beforeEach(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-trainer-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A stateful LSTM over the toy blobs' two features as a sequence of two steps, then `head`. */
const statefulLstm = (head: object[]) => [
  { type: 'reshape', targetShape: [2, 1] },
  { type: 'lstm', units: 4, stateful: true, returnSequences: false },
  ...head,
];

describe('Trainer', () => {
  it('learns separable blobs and reports per-epoch loss, accuracy and validation metrics', async () => {
    const r = await runExperiment({ registry, config: toyConfig(dir, { trainer: { epochs: 6, batchSize: 16, validationSplit: 0.25 } }) });
    expect(r.history).toHaveLength(6);
    expect(r.history[5]!.loss).toBeLessThan(r.history[0]!.loss);
    expect(Object.keys(r.history[0]!).sort()).toEqual(['accuracy', 'loss', 'val_accuracy', 'val_loss']);
    // Three blobs 2 apart with noise 0.3 are separable: a trained classifier gets nearly all of them.
    expect(r.test!.accuracy).toBeGreaterThan(0.9);
  });

  it('keeps the number of live tensors flat across training steps (with gradient clipping too)', async () => {
    const c = await buildRunContainer({ registry, config: toyConfig(dir, { trainer: { epochs: 1, batchSize: 16, clipNorm: 0.5, clipValue: 1 } }) });
    const trainer = c.resolve(Trainer);
    const data = c.resolve(TOKENS.TrainData);
    const step = async (s: number) => {
      const b = data.batch([0, 1, 2, 3]);
      await trainer.trainStep(b, { step: s, epoch: 0 });
      tf.dispose([b.x, b.y]);
    };
    await step(0); // creates the optimizer's slots
    const before = tf.memory().numTensors;
    for (let s = 1; s <= 5; s++) await step(s);
    expect(tf.memory().numTensors, 'live tensors after repeated steps').toBe(before);
    await trainer.evaluate(data); // as expectNoLeak does: a first pass, then the count must stay put
    const beforeEval = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await trainer.evaluate(data);
    expect(tf.memory().numTensors, 'live tensors after repeated evaluations').toBe(beforeEval);
    const x = tf.zeros([5, 2]);
    expectNoLeak(() => tf.dispose(trainer.predict(x)));
    x.dispose();
    disposeRun(c);
  });

  it('leaves no tensor behind across runs: two runs in a row (runExperiment; built, fit and disposeRun) end at the first count', async () => {
    const config = toyConfig(dir, {
      model: {
        inputShape: [2],
        layers: [{ type: 'dense', units: 8, activation: 'relu' }, { type: 'batch-norm' }, { type: 'dropout', rate: 0.2 }, { type: 'dense', units: 3 }],
      },
      trainer: { epochs: 2, batchSize: 16, validationSplit: 0.25, clipNorm: 1, checkpoint: { enabled: true, dir: path.join(dir, 'ck'), everySteps: 2 } },
    });
    const baseline = tf.memory().numTensors;
    for (let k = 0; k < 2; k++) {
      await runExperiment({ registry, config, log: () => undefined, handleSignals: false });
      expect(tf.memory().numTensors, `after runExperiment ${k + 1}`).toBe(baseline);
      const c = await buildRunContainer({ registry, config: { ...config, trackers: [] }, log: () => undefined });
      await c.resolve(Trainer).fit(c.resolve(TOKENS.TrainData), c.resolve(TOKENS.ValidationData));
      disposeRun(c);
      expect(tf.memory().numTensors, `after disposeRun ${k + 1}`).toBe(baseline);
    }
  });

  it('gives identical metrics for the same seed and different ones for another seed', async () => {
    const run = async (seed: number) => (await runExperiment({ registry, config: { ...toyConfig(dir), seed } })).history;
    const a = await run(11);
    const b = await run(11);
    const c = await run(12);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it('ends a decaying schedule with the run when its totalSteps is left out (epochs × steps per epoch)', async () => {
    const config = toyConfig(dir, {
      schedule: { type: 'linear-warmup-decay', lr: 0.05, warmupSteps: 2 },
      trainer: { epochs: 3, batchSize: 16, logEvery: 1 },
      trackers: ['console'],
    });
    const c = await buildRunContainer({ registry, config, log: () => undefined });
    const trainer = c.resolve(Trainer);
    const train = c.resolve(TOKENS.TrainData);
    const total = 3 * trainer.stepsPerEpoch(train);
    const seen: number[] = [];
    trainer.callbacks.push({ spec: { type: 'spy' }, onBatchEnd: (_st, logs) => void seen.push(logs.lr!) });
    await trainer.fit(train);
    expect(seen).toHaveLength(total);
    // step s ≥ warm-up: lr · (total − s)/(total − warmup); the last step (s = total − 1) is one step from 0.
    seen.forEach((lr, s) => expect(lr).toBeCloseTo(s < 2 ? (0.05 * (s + 1)) / 2 : (0.05 * (total - s)) / (total - 2), 12));
    disposeRun(c);
  });

  it('sets the optimizer learning rate from the schedule before every step', async () => {
    const config = toyConfig(dir, {
      schedule: { type: 'step-decay', lr: 0.05, factor: 0.5, startEpoch: 1 },
      trainer: { epochs: 3, batchSize: 16, logEvery: 1 },
      trackers: ['console'],
    });
    const c = await buildRunContainer({ registry, config, log: () => undefined });
    const trainer = c.resolve(Trainer);
    const seen: [number, number][] = [];
    trainer.callbacks.push({ spec: { type: 'spy' }, onBatchEnd: (st, logs) => void seen.push([st.epoch, logs.lr!]) });
    await trainer.fit(c.resolve(TOKENS.TrainData));
    // step-decay: lr · 0.5^{max(0, epoch − 1 + 1)} → 0.05, 0.025, 0.0125 for epochs 0, 1, 2.
    for (const [epoch, lr] of seen) expect(lr).toBeCloseTo(0.05 * 0.5 ** Math.max(0, epoch), 12);
    expect(new Set(seen.map(([e]) => e))).toEqual(new Set([0, 1, 2]));
    disposeRun(c);
  });

  it('applies the configured augmentations to training batches, reproducibly from the seed', async () => {
    const images = (augmentations: object[]) =>
      toyConfig(dir, {
        data: { source: { type: 'toy-blobs', size: 48, imageSize: 6 } },
        model: { inputShape: [6, 6, 1], layers: [{ type: 'flatten' }, { type: 'dense', units: 3 }] },
        augmentations,
        trainer: { epochs: 2, batchSize: 16 },
      });
    const aug = [{ type: 'random-crop', padding: 1 }, { type: 'random-flip' }];
    const [a, b, plain] = [
      await runExperiment({ registry, config: images(aug), log: () => undefined }),
      await runExperiment({ registry, config: images(aug), log: () => undefined }),
      await runExperiment({ registry, config: images([]), log: () => undefined }),
    ];
    expect(a.history).toEqual(b.history);
    expect(a.history[0]!.loss).not.toBe(plain.history[0]!.loss);
    expect(a.test).toEqual(b.test);
  });

  it('carries stateful LSTM state across batches and resets it at the start of every epoch and evaluation', async () => {
    const config = toyConfig(dir, {
      model: {
        inputShape: [2],
        layers: statefulLstm([{ type: 'dense', units: 3 }]),
      },
      trainer: { epochs: 3, batchSize: 8, evalBatchSize: 8, shuffle: false, validationSplit: 0.25 },
      trackers: [],
    });
    const c = await buildRunContainer({ registry, config, log: () => undefined });
    const model = c.resolve(TOKENS.Model) as unknown as { resetStates(): void; layers: { resetStates?(): void }[] };
    const events: string[] = [];
    const lstm = model.layers[1]!;
    const original = lstm.resetStates!.bind(lstm);
    lstm.resetStates = () => {
      events.push('reset');
      original();
    };
    const trainer = c.resolve(Trainer);
    const apply = trainer.model.apply.bind(trainer.model);
    trainer.model.apply = (x, ctx) => {
      events.push(ctx.training ? 'train' : 'eval');
      return apply(x, ctx);
    };
    await trainer.fit(c.resolve(TOKENS.TrainData), c.resolve(TOKENS.ValidationData));
    // Per epoch: a reset, 9 training batches carrying state, then a reset before the 3 validation batches.
    const epoch = ['reset', ...Array(9).fill('train'), 'reset', ...Array(3).fill('eval')];
    expect(events).toEqual([...epoch, ...epoch, ...epoch]);
    disposeRun(c);
  });

  it("onNonFinite 'skip': a skipped step leaves no trace in batch norm's moving statistics or the carried LSTM state", async () => {
    // Before, the forward pass of the skipped batch had already moved batch norm's statistics (a batch of inf made the
    // moving variance inf/NaN for every later evaluation) and handed its state to the next batch.
    const config = toyConfig(dir, {
      model: {
        inputShape: [2],
        layers: statefulLstm([{ type: 'batch-norm' }, { type: 'dense', units: 3 }]),
      },
      trainer: { epochs: 1, batchSize: 8, shuffle: false, onNonFinite: 'skip' },
      trackers: [],
    });
    const c = await buildRunContainer({ registry, config, log: () => undefined });
    const trainer = c.resolve(Trainer);
    const data = c.resolve(TOKENS.TrainData);
    const steps = Math.ceil(data.size / 8);
    let calls = 0;
    let before: { buffers: number[][]; state: unknown } | null = null;
    // The last batch of the epoch is poisoned (inf inputs); what the model holds just before it is what it must hold after.
    const poisoned = Object.assign(Object.create(data), {
      batch: (idx: number[]) => {
        const b = data.batch(idx);
        if (++calls < steps) return b;
        before = { buffers: trainer.model.buffers().map((p) => Array.from(p.variable.dataSync())), state: trainer.model.getState() };
        const x = tf.mul(b.x, Infinity);
        b.x.dispose();
        return { x, y: b.y };
      },
    });
    const history = await trainer.fit(poisoned, null);
    expect(calls).toBe(steps);
    expect([history.step, Number.isFinite(history.epochs[0]!.loss)]).toEqual([steps - 1, true]);
    expect(before!.buffers.flat().every(Number.isFinite)).toBe(true);
    expect(trainer.model.buffers().map((p) => Array.from(p.variable.dataSync()))).toEqual(before!.buffers);
    expect(trainer.model.getState()).toEqual(before!.state);
    disposeRun(c);
  });

  it("adds a layer's declared regularizer to the loss it trains on: λ‖W‖² in the loss, 2λW in the step (SGD)", async () => {
    const lambda = 0.5;
    const lr = 0.1;
    const run = async (regularized: boolean) => {
      const config = toyConfig(dir, {
        model: { inputShape: [2], layers: [{ type: 'dense', units: 3, ...(regularized ? { kernelRegularizer: { type: 'l2', l2: lambda } } : {}) }] },
        optimizer: { type: 'sgd', lr },
        trackers: [],
      });
      const c = await buildRunContainer({ registry, config, log: () => undefined });
      const trainer = c.resolve(Trainer);
      const kernel = trainer.model.parameters().find((p) => p.name.endsWith('/kernel'))!;
      const w0 = Array.from(kernel.variable.dataSync());
      const b = c.resolve(TOKENS.TrainData).batch([0, 1, 2, 3, 4, 5]);
      const loss = await trainer.trainStep(b, { step: 0, epoch: 0 });
      tf.dispose([b.x, b.y]);
      const w1 = Array.from(kernel.variable.dataSync());
      disposeRun(c);
      return { w0, w1, loss };
    };
    const [plain, reg] = [await run(false), await run(true)];
    expect(reg.w0).toEqual(plain.w0); // the same draw: the regularizer changes nothing else
    const sq = plain.w0.reduce((a, w) => a + w * w, 0);
    expect(reg.loss - plain.loss).toBeCloseTo(lambda * sq, 5);
    reg.w1.forEach((w, i) => expect(w - plain.w1[i]!).toBeCloseTo(-lr * 2 * lambda * plain.w0[i]!, 6));
  });

  it('synchronizes the strategy at every mid-epoch checkpoint step on every rank, also one without a checkpointer', async () => {
    // Only the global-zero rank writes checkpoints; before, only it synchronized (a collective for ZeRO, pipeline and
    // tensor parallelism), and the other ranks went on: a multi-rank run with checkpoint.everySteps hung.
    const calls = async (withCheckpointer: boolean) => {
      const config = toyConfig(dir, { trainer: { epochs: 1, batchSize: 8, shuffle: false, checkpoint: { enabled: true, everySteps: 2 } }, trackers: [] });
      const c = await buildRunContainer({ registry, config, log: () => undefined });
      const trainer = c.resolve(Trainer);
      let n = 0;
      const sync = trainer.strategy.synchronize.bind(trainer.strategy);
      trainer.strategy.synchronize = async (t) => {
        n++;
        await sync(t);
      };
      const written: number[] = [];
      await trainer.fit(c.resolve(TOKENS.TrainData), null, withCheckpointer ? { checkpointer: async (s) => void written.push(s.batch) } : {});
      disposeRun(c);
      return { n, written };
    };
    const [writer, other] = [await calls(true), await calls(false)];
    expect(writer.written.length).toBeGreaterThan(1);
    expect(other.n).toBe(writer.n);
  });

  it('predicts in batches with the same result as one forward pass', async () => {
    const c = await buildRunContainer({ registry, config: toyConfig(dir, { trainer: { epochs: 1, batchSize: 8, evalBatchSize: 3 } }) });
    const trainer = c.resolve(Trainer);
    const x = tf.randomNormal([10, 2], 0, 1, 'float32', 1);
    const batched = trainer.predict(x);
    const whole = trainer.model.apply(x, { training: false, rng: c.resolve(TOKENS.Rng) });
    expect(Array.from(batched.dataSync())).toEqual(Array.from(whole.dataSync()));
    tf.dispose([x, batched, whole]);
    disposeRun(c);
  });
});

describe('trainer.validateEvery', () => {
  /** A tracker keeping every logged metric with its step. */
  const metricsTracker = () => {
    const logged: { step: number; m: Record<string, number> }[] = [];
    const tracker: Tracker = {
      spec: { type: 'recording' },
      startRun: async () => ({ runId: 'r1', experimentId: '1', location: '' }),
      logParams: () => undefined,
      logMetrics: (m, step) => void logged.push({ step, m: { ...m } }),
      setTags: () => undefined,
      logArtifact: async () => undefined,
      flush: async () => undefined,
      endRun: async () => undefined,
    };
    return { tracker, logged };
  };
  // A model with dropout (random draws in training) and a stateful LSTM (carried state), with a metric: the three
  // things a validation inside an epoch could disturb.
  const model = {
    inputShape: [2],
    layers: [
      { type: 'dense', units: 8, activation: 'relu' },
      { type: 'dropout', rate: 0.3 },
      { type: 'reshape', targetShape: [8, 1] },
      { type: 'lstm', units: 4, stateful: true, returnSequences: false },
      { type: 'dense', units: 3 },
    ],
  };
  const run = async (validateEvery?: number) => {
    const { tracker, logged } = metricsTracker();
    const trainer = { epochs: 2, batchSize: 8, evalBatchSize: 8, validationSplit: 0.25, logEvery: 1, checkpoint: { enabled: false }, validateEvery };
    const r = await runExperiment({
      registry,
      config: toyConfig(dir, { model, trainer, trackers: [] }),
      log: () => undefined,
      handleSignals: false,
      override: (c) => c.register(TOKENS.Tracker, { useValue: tracker }),
    });
    return { r, logged };
  };

  it('logs val_* every N steps inside an epoch and leaves the training trajectory bit for bit unchanged', async () => {
    const plain = await run();
    const mid = await run(4);
    // 72 training examples in batches of 8: 9 steps an epoch, steps counted over the run (as checkpoint.everySteps):
    // validation inside epochs at 4, 8, 12 and 16; at 9 and 18 the epochs end and validate anyway.
    const valSteps = (l: typeof plain.logged) => l.filter((e) => 'val_loss' in e.m && !('epoch' in e.m)).map((e) => e.step);
    expect(valSteps(plain.logged)).toEqual([]);
    expect(valSteps(mid.logged)).toEqual([4, 8, 12, 16]);
    for (const e of mid.logged.filter((x) => 'val_loss' in x.m)) {
      expect(
        Object.keys(e.m)
          .filter((k) => k.startsWith('val_'))
          .sort(),
      ).toEqual(['val_accuracy', 'val_loss']);
      expect(Number.isFinite(e.m.val_loss!)).toBe(true);
    }
    // Every batch loss, every epoch's logs (running accuracy included) and the test result are those of the plain run.
    const batchLosses = (l: typeof plain.logged) => l.filter((e) => 'batch_loss' in e.m).map((e) => [e.step, e.m.batch_loss]);
    expect(batchLosses(mid.logged)).toEqual(batchLosses(plain.logged));
    expect(mid.r.history).toEqual(plain.r.history);
    expect(mid.r.test).toEqual(plain.r.test);
  });

  it('refuses a metric whose running state it could not put back, naming the field', async () => {
    const { tracker } = metricsTracker();
    const noState = { spec: { type: 'count' }, key: 'count', reset() {}, update() {}, result: () => 0 };
    const config = toyConfig(dir, {
      trainer: { epochs: 1, batchSize: 8, validationSplit: 0.25, validateEvery: 2, checkpoint: { enabled: false } },
      trackers: [],
    });
    const c = await buildRunContainer({ registry, config, log: () => undefined, override: (x) => x.register(TOKENS.Tracker, { useValue: tracker }) });
    const trainer = c.resolve(Trainer);
    trainer.metrics.push(noState);
    await expect(trainer.fit(c.resolve(TOKENS.TrainData), c.resolve(TOKENS.ValidationData))).rejects.toThrow(/trainer\.validateEvery.*metric "count"/);
    disposeRun(c);
  });
});

describe('epochOrder', () => {
  it('is a permutation that depends only on (seed, epoch)', () => {
    const a = epochOrder(50, 3, 2, true);
    expect(Array.from(a).sort((p, q) => p - q)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Array.from(epochOrder(50, 3, 2, true))).toEqual(Array.from(a));
    expect(Array.from(epochOrder(50, 3, 3, true))).not.toEqual(Array.from(a));
    expect(Array.from(epochOrder(5, 3, 2, false))).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('clipGradients', () => {
  const grads = fc.array(fc.array(fc.double({ min: -10, max: 10, noNaN: true }), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 });
  const norm = (gs: number[][]) => Math.sqrt(gs.flat().reduce((s, x) => s + x * x, 0));

  it('rescales to a global norm of at most clipNorm, keeping the direction; leaves small gradients alone', () => {
    fc.assert(
      fc.property(grads, fc.double({ min: 0.01, max: 50, noNaN: true }), (gs, c) => {
        const input = Object.fromEntries(gs.map((g, i) => [`p${i}`, tf.tensor(g)]));
        const out = clipGradients(input, { clipNorm: c });
        const got = gs.map((_, i) => Array.from(out[`p${i}`]!.dataSync()));
        const n = norm(gs.map((g) => g.map(Math.fround)));
        const scale = n > c ? c / n : 1;
        got.flat().forEach((x, j) => expect(Math.abs(x - gs.flat()[j]! * scale)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(x))));
        expect(norm(got)).toBeLessThanOrEqual(c * (1 + 1e-5) + 1e-6);
        tf.dispose([...Object.values(input), ...Object.values(out)]);
      }),
      { numRuns: 100 },
    );
  });

  it("given the whole gradient's squared norm, clips a part of it (a ZeRO shard) as the whole is clipped", () => {
    fc.assert(
      fc.property(grads, grads, fc.double({ min: 0.01, max: 50, noNaN: true }), (mine, others, c) => {
        const part = Object.fromEntries(mine.map((g, i) => [`p${i}`, tf.tensor(g)]));
        const rest = Object.fromEntries(others.map((g, i) => [`q${i}`, tf.tensor(g)]));
        const whole = clipGradients({ ...part, ...rest }, { clipNorm: c });
        const sq = (gs: Record<string, tf.Tensor>) => tf.tidy(() => tf.addN(Object.values(gs).map((g) => tf.sum(tf.square(g)))).dataSync()[0]!);
        const out = clipGradients(part, { clipNorm: c }, sq(part) + sq(rest));
        for (const k of Object.keys(part)) {
          const [a, b] = [out[k]!.dataSync(), whole[k]!.dataSync()];
          a.forEach((x, j) => expect(Math.abs(x - b[j]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(b[j]!))));
        }
        tf.dispose([...Object.values(part), ...Object.values(rest), ...Object.values(whole), ...Object.values(out)]);
      }),
      { numRuns: 100 },
    );
  });

  it('clamps each element to [-clipValue, clipValue]', () => {
    const out = clipGradients({ w: tf.tensor([-3, -0.5, 0.2, 7]) }, { clipValue: 1 });
    expect(Array.from(out.w!.dataSync())).toEqual([-1, -0.5, Math.fround(0.2), 1]);
    tf.dispose(Object.values(out));
  });
});

describe('gradient accumulation', () => {
  let registry2: PluginRegistry;
  beforeEach(async () => {
    registry2 = (await testRegistry()).register(toyBlobs);
  });

  it('k micro-batches give the same update as one batch k times as large', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 4 }), fc.integer({ min: 0, max: 1000 }), fc.constantFrom('sgd', 'adam'), async (k, seed, opt) => {
        const make = async () => {
          const cfg = toyConfig(dir, { seed, optimizer: { type: opt, lr: 0.1 }, trackers: ['console'] });
          return buildRunContainer({ registry: registry2, config: cfg, log: () => undefined });
        };
        const [a, b] = [await make(), await make()];
        const data = a.resolve(TOKENS.TrainData);
        const n = 4 * k;
        const whole = data.batch(Array.from({ length: n }, (_, i) => i));
        const parts = Array.from({ length: k }, (_, j) => data.batch(Array.from({ length: 4 }, (_, i) => 4 * j + i)));
        await a.resolve(Trainer).trainStep(whole);
        await b.resolve(Trainer).trainStep(parts);
        const wa = a
          .resolve(TOKENS.Model)
          .parameters()
          .map((p) => Array.from(p.variable.dataSync()));
        const wb = b
          .resolve(TOKENS.Model)
          .parameters()
          .map((p) => Array.from(p.variable.dataSync()));
        wa.flat().forEach((x, i) => expect(Math.abs(x - wb.flat()[i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(x))));
        for (const t of [whole, ...parts]) tf.dispose([t.x, t.y]);
        disposeRun(a);
        disposeRun(b);
      }),
      { numRuns: 6 },
    );
  });

  it('fit with accumulateSteps takes one optimizer step per k batches and does not leak', async () => {
    const c = await buildRunContainer({
      registry: registry2,
      config: toyConfig(dir, { trainer: { epochs: 1, batchSize: 8, accumulateSteps: 3 }, trackers: ['console'] }),
      log: () => undefined,
    });
    const trainer = c.resolve(Trainer);
    let steps = 0;
    trainer.callbacks.push({ spec: { type: 'count' }, onBatchEnd: () => void steps++ });
    await trainer.fit(c.resolve(TOKENS.TrainData)); // creates the optimizer's slots
    // 96 examples, no validation split here: 12 batches of 8, grouped by 3 -> 4 optimizer steps.
    expect(steps).toBe(4);
    const before = tf.memory().numTensors;
    await trainer.fit(c.resolve(TOKENS.TrainData));
    expect(tf.memory().numTensors).toBe(before);
    disposeRun(c);
  });
});
