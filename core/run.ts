/**
 * Assembles and executes one run. `buildRunContainer` creates a child container holding everything the trainer
 * injects (built from the experiment config through the registry); `runExperiment` trains, evaluates, logs to the
 * trackers and saves the model as an artifact. Nothing is registered in tsyringe's root container.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { container as rootContainer, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { selectBackend } from './backend';
import { flattenConfig, parseExperimentConfig, type ExperimentConfig } from './config';
import { splitTail, take } from './data';
import { environmentTags } from './environment';
import type { Dataset, JsonObject, Logs, RunInfo, Tracker } from './interfaces';
import { Sequential } from './model';
import { Rng } from './random';
import { PLUGIN_KINDS, type PluginKind, type PluginRegistry } from './registry';
import { saveModel } from './serialization';
import { FACTORY_TOKENS, TOKENS, type PluginFactory } from './tokens';
import { describeDataset, MultiTracker, withTrackingUri } from './tracking';
import { Trainer } from './trainer';

export interface RunOptions {
  registry: PluginRegistry;
  /** Raw config (validated here). */
  config: unknown;
  /** Backend to force (else automatic selection). */
  backend?: string;
  runName?: string;
  tags?: Record<string, string>;
  /** An http(s) MLflow tracking server: `mlflow-file` trackers log there instead (see `withTrackingUri`). */
  trackingUri?: string;
  /** Where the run prints its one-line notices (the backend it chose). Default: console.log. */
  log?: (line: string) => void;
}

/** A child container with every run-scoped token registered. The caller disposes it with {@link disposeRun}. */
export async function buildRunContainer(opts: RunOptions): Promise<DependencyContainer> {
  const config = parseExperimentConfig(opts.config);
  const { registry } = opts;
  const c = rootContainer.createChildContainer();
  c.registerInstance(TOKENS.Registry, registry);
  c.registerInstance(TOKENS.Config, config);
  c.registerInstance(TOKENS.TrainerOptions, config.trainer);
  for (const kind of PLUGIN_KINDS) {
    const factory: PluginFactory<PluginKind> = (spec, p) => registry.create(kind, spec, p);
    c.registerInstance(FACTORY_TOKENS[kind], factory);
  }

  const { backend, tags: backendTags } = await selectBackend(registry, opts.backend);
  const skipped = backendTags['backend.skipped'] ? `; not used: ${backendTags['backend.skipped']}` : '';
  (opts.log ?? console.log)(`loom: backend ${backendTags.backend} (${backendTags['backend.kernels'] ?? backendTags['tfjs.backend']})${skipped}`);
  c.registerInstance(TOKENS.Backend, backend);
  c.registerInstance(BACKEND_TAGS, backendTags);

  const rng = new Rng(config.seed);
  c.registerInstance(TOKENS.Rng, rng);

  const source = registry.create('dataset', config.data.source, 'data.source');
  c.registerInstance(TOKENS.DataSource, source);
  let trainAll: Dataset = source.load(config.data.train);
  if (config.data.trainLimit) trainAll = take(trainAll, config.data.trainLimit);
  const { train, validation } = splitTail(trainAll, config.trainer.validationSplit);
  c.registerInstance(TOKENS.TrainData, train);
  registerNullable(c, TOKENS.ValidationData, validation);
  let test: Dataset | null = config.data.test ? source.load(config.data.test) : null;
  if (test && config.data.testLimit) test = take(test, config.data.testLimit);
  registerNullable(c, TOKENS.TestData, test);

  const model = new Sequential(config.model, registry);
  model.build(undefined, rng.fork());
  c.registerInstance(TOKENS.Model, model);
  c.registerInstance(TOKENS.Loss, registry.create('loss', config.loss, 'loss'));
  c.registerInstance(TOKENS.Optimizer, registry.create('optimizer', config.optimizer, 'optimizer'));
  registerNullable(c, TOKENS.Schedule, config.schedule ? registry.create('schedule', config.schedule, 'schedule') : null);
  c.registerInstance(TOKENS.Metrics, config.metrics.map((m, i) => registry.create('metric', m, `metrics[${i}]`)));
  c.registerInstance(TOKENS.Callbacks, config.callbacks.map((m, i) => registry.create('callback', m, `callbacks[${i}]`)));
  c.registerInstance(TOKENS.Tracker, new MultiTracker(withTrackingUri(config.trackers, opts.trackingUri).map((t, i) => registry.create('tracker', t, `trackers[${i}]`))));
  c.registerInstance(TOKENS.Parallelism, registry.create('parallelism', config.parallelism, 'parallelism'));
  c.register(Trainer, { useClass: Trainer });
  return c;
}

/** tsyringe treats a registered `null` value as unregistered; a factory can return null. */
function registerNullable<T>(c: DependencyContainer, token: InjectionToken<T | null>, value: T | null): void {
  c.register(token, { useFactory: () => value });
}

/** Tags that the backend selection produced (which backend, which kernels, why others were skipped). */
export const BACKEND_TAGS = Symbol.for('loom.BackendTags');

export interface RunResult {
  run: RunInfo;
  config: ExperimentConfig;
  backend: string;
  history: Logs[];
  test: Logs | null;
  wallTimeSec: number;
  tags: Record<string, string>;
}

/** Trains and evaluates one experiment, logging everything to its trackers. Marks the run FAILED on error. */
export async function runExperiment(opts: RunOptions): Promise<RunResult> {
  const started = Date.now();
  const c = await buildRunContainer(opts);
  const config = c.resolve(TOKENS.Config);
  const tracker = c.resolve(TOKENS.Tracker);
  const strategy = c.resolve(TOKENS.Parallelism);
  const model = c.resolve(TOKENS.Model) as Sequential;
  const tags: Record<string, string> = {
    ...environmentTags(),
    ...c.resolve<Record<string, string>>(BACKEND_TAGS),
    seed: String(config.seed),
    ...opts.tags,
  };
  const log = strategy.isGlobalZero;
  const run = log ? await tracker.startRun({ experiment: config.experiment, runName: opts.runName ?? `${config.experiment}-${config.seed}`, tags }) : { runId: 'rank>0', experimentId: '', location: '' };
  try {
    if (log) {
      tracker.logParams(flattenConfig(config as unknown as JsonObject));
      tracker.logParams({ 'model.parameters': model.countParams() });
      const inputs: [Dataset | null, string][] = [[c.resolve(TOKENS.TrainData), 'train'], [c.resolve(TOKENS.ValidationData), 'validation'], [c.resolve(TOKENS.TestData), 'test']];
      for (const [ds, context] of inputs) if (ds && tracker.logDataset) tracker.logDataset(describeDataset(ds, context, config.data.source));
    }
    const trainer = c.resolve(Trainer);
    const history = await trainer.fit(c.resolve(TOKENS.TrainData), c.resolve(TOKENS.ValidationData));
    const testData = c.resolve(TOKENS.TestData);
    let test: Logs | null = null;
    if (testData) {
      test = trainer.evaluate(testData);
      const epochs = history.epochs.length;
      if (log) tracker.logMetrics(Object.fromEntries(Object.entries(test).map(([k, v]) => [`test_${k}`, v])), epochs);
    }
    const wallTimeSec = (Date.now() - started) / 1000;
    if (log) {
      tracker.logMetrics({ wall_time_s: wallTimeSec }, history.epochs.length);
      await logRunArtifacts(tracker, model, config, { history: history.epochs, test, wallTimeSec });
      await tracker.endRun('FINISHED');
    }
    return { run, config, backend: tags.backend ?? tf.getBackend(), history: history.epochs, test, wallTimeSec, tags };
  } catch (err) {
    if (log) {
      await tracker.endRun('FAILED', err instanceof Error ? err.message : String(err)).catch(() => undefined);
    }
    throw err;
  } finally {
    disposeRun(c);
  }
}

async function logRunArtifacts(tracker: Tracker, model: Sequential, config: ExperimentConfig, summary: object): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-artifacts-'));
  try {
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
    fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 2));
    saveModel(model, path.join(dir, 'model'));
    await tracker.logArtifact(path.join(dir, 'config.json'));
    await tracker.logArtifact(path.join(dir, 'summary.json'));
    await tracker.logArtifact(path.join(dir, 'model', 'model.json'), 'model/model.json');
    await tracker.logArtifact(path.join(dir, 'model', 'weights.bin'), 'model/weights.bin');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Releases the tensors a run container holds (model weights, optimizer slots). */
export function disposeRun(c: DependencyContainer): void {
  c.resolve(TOKENS.Model).dispose();
  c.resolve(TOKENS.Optimizer).dispose();
}
