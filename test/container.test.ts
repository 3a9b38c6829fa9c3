/**
 * The run container: every token resolves in a fresh child container, runs do not share state, and each documented
 * way of replacing a component (CONTRIBUTING.md, "The run container") replaces just that component.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { container as root, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createRegistry,
  FACTORY_TOKENS,
  RUN_PLUGIN_KINDS,
  selectBackend,
  TOKENS,
  Trainer,
  trainerOptionsSchema,
  type Parameter,
  type PluginRegistry,
  type PluginSpec,
  type Tracker,
} from '../core';
import { buildRunContainer, disposeRun, runExperiment } from '../runtime';
import { registerBuiltins } from '../plugins';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

let registry: PluginRegistry;
let dir: string;
beforeEach(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-container-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const quiet = () => undefined;
/** The toy config, its mlflow-file store under `dir/mlruns`, checkpoints off (nothing written outside `dir`). */
const config = (overrides: Record<string, unknown> = {}) =>
  toyConfig(path.join(dir, 'mlruns'), {
    trainer: { epochs: 2, batchSize: 16, validationSplit: 0.25, logEvery: 2, checkpoint: { enabled: false } },
    ...overrides,
  });

/** A tracker that records what it is asked to do. */
function recordingTracker(): Tracker & { calls: string[] } {
  const calls: string[] = [];
  return {
    spec: { type: 'recording' },
    calls,
    startRun: async () => (calls.push('startRun'), { runId: 'r1', experimentId: '1', location: '' }),
    logParams: () => void calls.push('logParams'),
    logMetrics: (m) => void calls.push(`logMetrics ${Object.keys(m).sort().join(',')}`),
    setTags: () => void calls.push('setTags'),
    logArtifact: async (_p, a) => void calls.push(`logArtifact ${a ?? ''}`),
    flush: async () => undefined,
    endRun: async (status) => void calls.push(`endRun ${status}`),
  };
}

const weightsOf = (c: DependencyContainer) =>
  c
    .resolve(TOKENS.Model)
    .parameters()
    .map((p) => Array.from(p.variable.dataSync()));

describe('run container', () => {
  it('resolves every token, every factory and the trainer, which gets the components the tokens resolve to', async () => {
    const c = await buildRunContainer({ registry, config: config(), log: quiet });
    for (const [name, token] of Object.entries(TOKENS) as [string, InjectionToken<unknown>][]) {
      expect(c.isRegistered(token), `TOKENS.${name} is registered`).toBe(true);
      const value = c.resolve(token);
      if (name !== 'TestData' && name !== 'Schedule') expect(value, `TOKENS.${name}`).toBeTruthy();
      expect(c.resolve(token), `TOKENS.${name} is built once per run`).toBe(value);
    }
    expect(Object.keys(FACTORY_TOKENS).sort()).toEqual([...RUN_PLUGIN_KINDS].sort());
    for (const [kind, token] of Object.entries(FACTORY_TOKENS) as [string, InjectionToken<unknown>][])
      expect(typeof c.resolve(token), `factory for ${kind}`).toBe('function');
    expect(c.resolve(FACTORY_TOKENS.loss)('mse').spec.type).toBe('mse');
    const trainer = c.resolve(Trainer);
    const parts = c.resolve(TOKENS.TrainerComponents);
    for (const k of ['model', 'loss', 'optimizer', 'metrics', 'callbacks', 'tracker', 'strategy', 'options', 'augmentations'] as const)
      expect(trainer[k], k).toBe(parts[k]);
    expect(trainer.model).toBe(c.resolve(TOKENS.Model));
    expect(trainer.strategy.spec.type).toBe('single-process');
    disposeRun(c);
  });

  it('gives each run its own instances and leaves the root container empty', async () => {
    const a = await buildRunContainer({ registry, config: config(), log: quiet });
    const b = await buildRunContainer({ registry, config: config(), log: quiet });
    expect(a.resolve(TOKENS.Model)).not.toBe(b.resolve(TOKENS.Model));
    expect(a.resolve(TOKENS.Rng)).not.toBe(b.resolve(TOKENS.Rng));
    expect(root.isRegistered(TOKENS.Model)).toBe(false);
    disposeRun(a);
    disposeRun(b);
  });

  it('fails on a bad option of any component before the container is returned (no run is tracked yet)', async () => {
    await expect(buildRunContainer({ registry, config: config({ optimizer: { type: 'adam', lr: -1 } }), log: quiet })).rejects.toThrow(/optimizer/);
    await expect(buildRunContainer({ registry, config: config({ callbacks: [{ type: 'early-stopping', patience: -2 }] }), log: quiet })).rejects.toThrow(
      /callbacks\[0\]/,
    );
  });
});

describe('replacing a component (CONTRIBUTING.md, "The run container")', () => {
  it("RunOptions.override: a tracker registered for TOKENS.Tracker gets the whole run, the config's trackers nothing, the results unchanged", async () => {
    const fake = recordingTracker();
    const mine = await runExperiment({
      registry,
      config: config(),
      log: quiet,
      handleSignals: false,
      override: (c) => c.register(TOKENS.Tracker, { useValue: fake }),
    });
    expect(fake.calls[0]).toBe('startRun');
    expect(fake.calls).toContain('logMetrics accuracy,epoch,loss,val_accuracy,val_loss');
    expect(fake.calls).toContain('logArtifact model/weights.bin');
    expect(fake.calls.at(-1)).toBe('endRun FINISHED');
    expect(fs.existsSync(path.join(dir, 'mlruns')), 'the mlflow-file tracker of the config wrote nothing').toBe(false);
    // Only the tracker changed: the same seed trains the same model.
    const plain = await runExperiment({ registry, config: config(), log: quiet, handleSignals: false });
    expect(mine.history).toEqual(plain.history);
    expect(mine.test).toEqual(plain.test);
    expect(fs.existsSync(path.join(dir, 'mlruns'))).toBe(true);
  });

  it('RunOptions.override: a factory provider resolving other tokens replaces the optimizer, and only it', async () => {
    // An optimizer that takes the rate of the config's and records what it is given, changing nothing.
    const seen: { params: string[]; lr: number }[] = [];
    const override = (c: DependencyContainer) =>
      c.register(TOKENS.Optimizer, {
        useFactory: (r) => {
          const lr = Number(r.resolve(TOKENS.Registry).normalize('optimizer', r.resolve(TOKENS.Config).optimizer).lr);
          return {
            spec: { type: 'recording' },
            learningRate: lr,
            step(params: readonly Parameter[], grads: Record<string, tf.Tensor>) {
              seen.push({ params: params.map((p) => p.name).filter((n) => grads[n]), lr: this.learningRate });
            },
            getState: () => ({ step: 0, slots: {}, hyper: {} }) as never,
            setState: () => undefined,
            dispose: () => undefined,
          };
        },
      });
    const frozen = await buildRunContainer({ registry, config: config({ trackers: ['console'] }), log: quiet, override });
    const before = weightsOf(frozen);
    const trainer = frozen.resolve(Trainer);
    await trainer.fit(frozen.resolve(TOKENS.TrainData));
    // 72 training examples in batches of 16: 5 steps per epoch, 2 epochs, each with every parameter's gradient.
    expect(seen).toHaveLength(10);
    expect(seen[0]).toEqual({ params: trainer.model.parameters().map((p) => p.name), lr: 0.05 });
    expect(weightsOf(frozen)).toEqual(before);
    const trained = await buildRunContainer({ registry, config: config({ trackers: ['console'] }), log: quiet });
    expect(weightsOf(trained), 'the same seed builds the same initial weights').toEqual(before);
    await trained.resolve(Trainer).fit(trained.resolve(TOKENS.TrainData));
    expect(weightsOf(trained)).not.toEqual(before);
    disposeRun(frozen);
    disposeRun(trained);
  });

  it('RunOptions.override: another data source for TOKENS.DataSource is what the splits and the trainer use', async () => {
    const override = (c: DependencyContainer) =>
      c.register(TOKENS.DataSource, { useFactory: (r) => r.resolve(FACTORY_TOKENS.dataset)({ type: 'toy-blobs', size: 40 }) });
    const c = await buildRunContainer({ registry, config: config(), log: quiet, override });
    // 40 examples, a quarter held out for validation: 30 to train on (the config's source has 96).
    expect(c.resolve(TOKENS.TrainData).size).toBe(30);
    expect(c.resolve(TOKENS.ValidationData)!.size).toBe(10);
    const trainer = c.resolve(Trainer);
    expect(trainer.stepsPerEpoch(c.resolve(TOKENS.TrainData))).toBe(2);
    disposeRun(c);
  });

  it('RunOptions.override: a backend registered for TOKENS.Backend is checked and activated instead of the selection', async () => {
    const said: string[] = [];
    const cpu = registry.create('backend', 'cpu');
    const c = await buildRunContainer({ registry, config: config(), log: (l) => said.push(l), override: (k) => k.register(TOKENS.Backend, { useValue: cpu }) });
    expect(c.resolve(TOKENS.Backend)).toBe(cpu);
    expect(tf.getBackend()).toBe('cpu');
    expect(said[0]).toMatch(/^loom: backend cpu /);
    disposeRun(c);
    // One that is not available here is a user error naming --backend and saying why.
    const absent = { spec: { type: 'fake-gpu' }, priority: 9, available: async () => ({ ok: false, reason: 'no adapter' }), activate: async () => ({}) };
    const override = (k: DependencyContainer) => k.register(TOKENS.Backend, { useValue: absent });
    await expect(buildRunContainer({ registry, config: config(), log: quiet, override })).rejects.toThrow(
      /--backend: backend "fake-gpu" is not available here: no adapter/,
    );
  });

  it('registering on the returned container before the trainer is resolved replaces a component the trainer takes, and only it', async () => {
    const c = await buildRunContainer({ registry, config: config(), log: quiet });
    const model = c.resolve(TOKENS.Model);
    const fake = recordingTracker();
    c.register(TOKENS.Tracker, { useValue: fake });
    const trainer = c.resolve(Trainer);
    expect(trainer.tracker).toBe(fake);
    expect(trainer.model).toBe(model);
    await trainer.fit(c.resolve(TOKENS.TrainData));
    expect(fake.calls.filter((x) => x.startsWith('logMetrics')).length).toBeGreaterThan(0);
    disposeRun(c);
  });

  it('FACTORY_TOKENS.<kind>: another factory changes how every plugin of that kind in the run is built', async () => {
    const built: PluginSpec[] = [];
    const fake = recordingTracker();
    const override = (c: DependencyContainer) => c.register(FACTORY_TOKENS.tracker, { useValue: (spec: PluginSpec) => (built.push(spec), fake) });
    await runExperiment({
      registry,
      config: config({ trackers: ['console', { type: 'mlflow-file', root: path.join(dir, 'mlruns') }] }),
      log: quiet,
      handleSignals: false,
      override,
    });
    expect(built).toEqual(['console', { type: 'mlflow-file', root: path.join(dir, 'mlruns') }]);
    // Both of the run's trackers are the fake: every call arrives twice.
    expect(fake.calls.filter((x) => x === 'startRun')).toHaveLength(2);
    expect(fake.calls.filter((x) => x === 'endRun FINISHED')).toHaveLength(2);
    expect(fs.existsSync(path.join(dir, 'mlruns'))).toBe(false);
  });
});

describe('Trainer', () => {
  it('is built by hand from one TrainerComponents object; schedule, metrics, callbacks and augmentations are optional', async () => {
    const c = await buildRunContainer({ registry, config: config(), log: quiet });
    const trainer = new Trainer({
      model: c.resolve(TOKENS.Model),
      loss: c.resolve(TOKENS.Loss),
      optimizer: c.resolve(TOKENS.Optimizer),
      tracker: recordingTracker(),
      strategy: registry.create('parallelism', 'single-process'),
      rng: c.resolve(TOKENS.Rng),
      options: trainerOptionsSchema.parse({ epochs: 1, batchSize: 16 }),
    });
    expect([trainer.schedule, trainer.metrics, trainer.callbacks, trainer.augmentations]).toEqual([null, [], [], []]);
    const history = await trainer.fit(c.resolve(TOKENS.TrainData));
    expect(history.epochs).toHaveLength(1);
    expect(Number.isFinite(history.epochs[0]!.loss)).toBe(true);
    disposeRun(c);
  });
});

describe('backend selection', () => {
  it('falls back to tfjs cpu kernels, recording why, when the native addon is unavailable', async () => {
    const before = process.env.LOOM_NATIVE;
    process.env.LOOM_NATIVE = '0';
    try {
      const r = registerBuiltins(createRegistry());
      const { backend, tags } = await selectBackend(r);
      expect(backend.spec.type).toBe('cpu');
      expect(tags['backend.skipped']).toMatch(/native-cpu: disabled by LOOM_NATIVE=0/);
      expect(tags['backend.skipped']).toMatch(/tfjs-node: @tensorflow\/tfjs-node is not installed/);
      await expect(selectBackend(r, 'native-cpu')).rejects.toThrow(/--backend: backend "native-cpu" is not available here: disabled by LOOM_NATIVE=0/);
    } finally {
      if (before === undefined) delete process.env.LOOM_NATIVE;
      else process.env.LOOM_NATIVE = before;
    }
  });
});
