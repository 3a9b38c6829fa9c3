/**
 * The programmatic API (runtime/learner.ts) as a user meets it: fit on arrays and tensors with validation data,
 * callbacks and a tracker; evaluate, predict, save and load with the model still the caller's; no tensor left behind;
 * the same training as a config run; mistakes named before a step.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Callback, type Dataset, type PluginRegistry, type RunInfo, type Tracker } from '../core';
import { testRegistry } from '../test/harness';
import toyBlobs, { toyConfig } from '../test/toy-data';
import { inMemoryDataset, Learner } from './learner';
import { runExperiment } from './run';

let registry: PluginRegistry;
let dir: string;
beforeAll(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-learner-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Three separable blobs in 2-D as plain arrays: x number[][] and y integer labels. */
function blobs(n: number): { x: number[][]; y: Int32Array } {
  const x: number[][] = [];
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    const a = (2 * Math.PI * c) / 3;
    y[i] = c;
    x.push([2 * Math.cos(a) + 0.2 * Math.sin(7 * i), 2 * Math.sin(a) + 0.2 * Math.cos(5 * i)]);
  }
  return { x, y };
}

const MLP = {
  inputShape: [2],
  layers: [
    { type: 'dense', units: 16, activation: 'relu' },
    { type: 'dense', units: 3 },
  ],
};

describe('Learner', () => {
  it('fits on arrays with validation data, callbacks and a tracker; evaluates, predicts, saves and loads; the model stays usable', async () => {
    const events: string[] = [];
    const callback: Callback = { spec: { type: 'mine' }, onEpochEnd: (s, logs) => void events.push(`epoch ${s.epoch} ${logs.val_accuracy}`) };
    const logged: Record<string, number>[] = [];
    const params: Record<string, string | number | boolean> = {};
    const tracker: Tracker = {
      spec: { type: 'recording' },
      startRun: async (o): Promise<RunInfo> => (events.push(`start ${o.experiment}`), { runId: 'r', experimentId: 'e', location: '' }),
      logParams: (p) => void Object.assign(params, p),
      logMetrics: (m) => void logged.push(m),
      setTags: () => undefined,
      logArtifact: async () => undefined,
      flush: async () => undefined,
      endRun: async (status) => void events.push(`end ${status}`),
    };
    const learner = await Learner.create({
      registry,
      model: MLP,
      loss: 'sparse-categorical-crossentropy',
      optimizer: { type: 'adam', lr: 0.05 },
      metrics: ['accuracy'],
      callbacks: [callback],
      trackers: [tracker],
      experiment: 'blobs',
      seed: 1,
      epochs: 4,
      batchSize: 16,
    });
    const train = blobs(90);
    const valid = blobs(30);
    const history = await learner.fit(train, { validationData: { x: tf.tensor2d(valid.x), y: tf.tensor1d(valid.y, 'int32') } });
    expect(history.epochs).toHaveLength(4);
    expect(history.step).toBe(4 * Math.ceil(90 / 16));
    expect(history.epochs.at(-1)!.val_accuracy).toBeGreaterThan(0.9);
    expect(history.epochs.at(-1)!.loss).toBeLessThan(history.epochs[0]!.loss!);
    expect(events[0]).toBe('start blobs');
    expect(events.filter((e) => e.startsWith('epoch'))).toHaveLength(4);
    expect(events.at(-1)).toBe('end FINISHED');
    expect(logged.some((m) => m.epoch === 4 && 'val_loss' in m)).toBe(true);
    // The setup is logged as a config run logs it.
    expect(params).toMatchObject({ seed: '1', 'optimizer.lr': '0.05', 'trainer.batchSize': '16', 'model.layers.0.units': '16', 'metrics.0.type': 'accuracy' });
    expect(params['model.parameters']).toBe(2 * 16 + 16 + 16 * 3 + 3);

    const test = await learner.evaluate(blobs(30));
    expect(test.accuracy).toBeGreaterThan(0.9);
    const pred = learner.predict(valid.x);
    expect(pred.shape).toEqual([30, 3]);
    // Fitting again trains further from where it stopped (the optimizer keeps its state).
    const more = await learner.fit(train, { epochs: 1 });
    expect(more.epochs).toHaveLength(1);
    const after = learner.predict(valid.x);
    await learner.save(path.join(dir, 'model'));
    const loaded = loadModel(path.join(dir, 'model'), registry);
    const again = (await Learner.create({ registry, model: loaded, loss: 'sparse-categorical-crossentropy', optimizer: 'sgd' })).predict(valid.x);
    expect(Array.from(again.dataSync())).toEqual(Array.from(after.dataSync()));
    tf.dispose([pred, after, again]);
    learner.dispose();
    // The model is the caller's: still there after dispose.
    expect(learner.model.parameters()[0]!.variable.isDisposed).toBe(false);
    learner.model.dispose();
    loaded.dispose();
  });

  it('trains exactly as a config run does with the same parts, seed and examples', async () => {
    const config = toyConfig(path.join(dir, 'mlruns'), { trackers: [] });
    // The same backend for both: a Learner honours LOOM_BACKEND (as the CLI does); runExperiment takes it as an option.
    const run = await runExperiment({ registry, config, backend: process.env.LOOM_BACKEND || undefined, log: () => undefined, handleSignals: false });
    const source = registry.create('dataset', config.data.source);
    const ds: Dataset = source.load('train');
    const learner = await Learner.create({ registry, ...config, ...config.trainer, trackers: [] });
    const history = await learner.fit(ds);
    expect(history.epochs).toEqual(run.history);
    const test = await learner.evaluate(source.load('test'));
    expect(test).toEqual(run.test);
    learner.dispose();
    learner.model.dispose();
  });

  it('leaves no tensor behind across fit, evaluate and predict (beyond the optimizer state of the first fit)', async () => {
    const learner = await Learner.create({ registry, model: MLP, loss: 'sparse-categorical-crossentropy', optimizer: 'adam', epochs: 1, batchSize: 8 });
    const data = blobs(24);
    const x = tf.tensor2d(data.x);
    const y = tf.tensor1d(data.y, 'int32');
    await learner.fit({ x, y }, { validationSplit: 0.25 });
    const before = tf.memory().numTensors;
    await learner.fit({ x, y }, { validationData: { x, y } });
    await learner.evaluate({ x, y });
    learner.predict(x).dispose();
    learner.predict(data.x).dispose();
    expect(tf.memory().numTensors).toBe(before);
    // The caller's tensors are untouched.
    expect(x.isDisposed || y.isDisposed).toBe(false);
    tf.dispose([x, y]);
    learner.dispose();
    learner.model.dispose();
  });

  it('names a mistake before any step: examples of the wrong shape, x and y of different lengths, a bad option or plugin', async () => {
    const learner = await Learner.create({ registry, model: MLP, loss: 'sparse-categorical-crossentropy', optimizer: 'adam' });
    const { x, y } = blobs(12);
    await expect(learner.fit({ x: x.map((r) => [...r, 0]), y })).rejects.toThrow(/model\.inputShape: is \[2\], but the examples .* have shape \[3\]/);
    await expect(learner.fit({ x, y: y.slice(1) })).rejects.toThrow(/data: x and y must hold the same number of examples.*\[12,2\].*\[11\]/);
    await expect(learner.fit({ x, y: y.map(() => 5) })).rejects.toThrow(/the training set "train": example 0/);
    await expect(learner.fit({ x, y }, { batchSize: 0 })).rejects.toThrow(/^batchSize: /);
    await expect(learner.fit({ x, y }, { validationSplit: 0.5, validationData: { x, y } })).rejects.toThrow(
      /^validationSplit: is 0\.5, but validationData is given: use one or the other$/,
    );
    expect(() => inMemoryDataset({ x: 1, y: 1 })).toThrow(/same number of examples/);
    await expect(Learner.create({ registry, model: MLP, loss: 'nope', optimizer: 'adam' })).rejects.toThrow(/loss/);
    learner.dispose();
    learner.model.dispose();
  });
});
