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
import { describeBackend, selectBackend } from './backend';
import { flattenConfig, parseExperimentConfig, type ExperimentConfig } from './config';
import { Checkpointer, latestCheckpoint, loadCheckpoint, type TrainerSnapshot } from './checkpoint';
import { kFoldSplit, splitTail, take } from './data';
import { ConfigError } from './errors';
import { environmentTags } from './environment';
import type { Dataset, JsonObject, Logs, RunInfo, Tracker } from './interfaces';
import { Sequential } from './model';
import { checkInputShape, preflight } from './preflight';
import { Rng } from './random';
import { PLUGIN_KINDS, type PluginKind, type PluginRegistry } from './registry';
import { readWeights, saveModel } from './serialization';
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
  /** An http(s) MLflow tracking server, or a `file:` URI of a local store: `mlflow-file` trackers log there (see `withTrackingUri`). */
  trackingUri?: string;
  /** Where the run prints its one-line notices (the backend it chose). Default: console.log. */
  log?: (line: string) => void;
  /** k-fold cross-validation: train on the other folds and validate on fold `index` (replaces validationSplit). */
  fold?: { index: number; of: number };
  /**
   * Continue an interrupted run: a checkpoint directory (`ckpt-*`), or a run's checkpoint directory (its latest
   * checkpoint is used). The same tracked run continues.
   */
  resume?: string;
  /**
   * Extra evaluation after training (e.g. Monte-Carlo dropout), given the trained trainer and the test split; its
   * metrics join the test metrics (logged as `test_<key>`). Runs before the model is released.
   */
  evaluate?: (trainer: Trainer, test: Dataset | null) => Logs | Promise<Logs>;
  /** Called with the freshly built model before training (e.g. to load pretrained weights); not on --resume. */
  initialize?: (model: Sequential) => void;
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
  (opts.log ?? console.log)(describeBackend(backendTags));
  c.registerInstance(TOKENS.Backend, backend);
  c.registerInstance(BACKEND_TAGS, backendTags);

  const rng = new Rng(config.seed);
  c.registerInstance(TOKENS.Rng, rng);

  const source = registry.create('dataset', config.data.source, 'data.source');
  c.registerInstance(TOKENS.DataSource, source);
  // A split the source does not have is a config error naming the field (the source's own message cannot).
  const load = (field: string, split: string): Dataset => {
    if (!source.splits.includes(split)) throw new ConfigError(field, `data set "${source.spec.type}" has no split "${split}"; its splits: ${source.splits.join(', ')}`);
    return source.load(split);
  };
  let trainAll: Dataset = load('data.train', config.data.train);
  if (config.data.trainLimit) trainAll = take(trainAll, config.data.trainLimit);
  if (config.data.validation && config.trainer.validationSplit > 0) {
    throw new ConfigError('trainer.validationSplit', `is ${config.trainer.validationSplit}, but data.validation names a split ("${config.data.validation}"): use one or the other`);
  }
  const { train, validation } = opts.fold
    ? kFoldSplit(trainAll, opts.fold.of, opts.fold.index, config.seed)
    : config.data.validation
      ? { train: trainAll, validation: load('data.validation', config.data.validation) }
      : splitTail(trainAll, config.trainer.validationSplit);
  c.registerInstance(TOKENS.TrainData, train);
  registerNullable(c, TOKENS.ValidationData, validation);
  let test: Dataset | null = config.data.test ? load('data.test', config.data.test) : null;
  if (test && config.data.testLimit) test = take(test, config.data.testLimit);
  registerNullable(c, TOKENS.TestData, test);

  checkInputShape(config.model.inputShape, train);
  const model = new Sequential(config.model, registry);
  model.build(undefined, rng.fork());
  c.registerInstance(TOKENS.Model, model);
  c.registerInstance(TOKENS.Loss, registry.create('loss', config.loss, 'loss'));
  try {
    preflight(model, train, c.resolve(TOKENS.Loss));
  } catch (e) {
    model.dispose();
    throw e;
  }
  c.registerInstance(TOKENS.Optimizer, registry.create('optimizer', config.optimizer, 'optimizer'));
  registerNullable(c, TOKENS.Schedule, config.schedule ? registry.create('schedule', config.schedule, 'schedule') : null);
  c.registerInstance(TOKENS.Metrics, config.metrics.map((m, i) => registry.create('metric', m, `metrics[${i}]`)));
  c.registerInstance(TOKENS.Augmentations, config.augmentations.map((a, i) => registry.create('augmentation', a, `augmentations[${i}]`)));
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
    ...(opts.fold ? { fold: `${opts.fold.index + 1}/${opts.fold.of}` } : {}),
    ...opts.tags,
  };
  const log = strategy.isGlobalZero;
  const runName = (opts.runName ?? `${config.experiment}-${config.seed}`) + (opts.fold ? `-fold${opts.fold.index + 1}of${opts.fold.of}` : '');
  const resumePath = opts.resume ? resolveCheckpoint(opts.resume) : null;
  const resume = resumePath ? loadCheckpoint(resumePath) : null;
  if (resume && resume.run.experiment !== config.experiment) {
    throw new ConfigError('--resume', `the checkpoint belongs to experiment "${resume.run.experiment}", not "${config.experiment}"`);
  }
  if (resume) {
    const [was, now] = [flattenConfig(resume.config), flattenConfig(config as unknown as JsonObject)];
    const differ = [...new Set([...Object.keys(was), ...Object.keys(now)])].filter((k) => was[k] !== now[k]);
    if (differ.length) throw new ConfigError('--resume', `the config differs from the checkpoint's in ${differ.slice(0, 5).map((k) => `${k} (was ${was[k]}, now ${now[k]})`).join(', ')}; resume with the same preset, seed and options`);
  }
  const run = log
    ? await tracker.startRun({ experiment: config.experiment, runName, tags, resume: resume ? { ...resume.run, step: resume.trainer.step } : undefined })
    : { runId: 'rank>0', experimentId: '', location: '' };
  try {
    if (log) {
      tracker.logParams(flattenConfig(config as unknown as JsonObject));
      tracker.logParams({ 'model.parameters': model.countParams() });
      const inputs: [Dataset | null, string][] = [[c.resolve(TOKENS.TrainData), 'train'], [c.resolve(TOKENS.ValidationData), 'validation'], [c.resolve(TOKENS.TestData), 'test']];
      for (const [ds, context] of inputs) if (ds && tracker.logDataset) tracker.logDataset(describeDataset(ds, context, config.data.source));
    }
    if (opts.initialize && !resume) opts.initialize(model);
    const trainer = c.resolve(Trainer);
    const ck = config.trainer.checkpoint;
    const dir = resumePath ? path.dirname(resumePath) : path.resolve(ck.dir ?? path.join('checkpoints', run.experimentId, run.runId));
    const writer = new Checkpointer(dir, ck.keep);
    const checkpointer = log && ck.enabled
      ? (snapshot: TrainerSnapshot) => void writer.save({
          run: { runId: run.runId, experimentId: run.experimentId, experiment: config.experiment, runName },
          config: config as unknown as JsonObject,
          trainer: snapshot,
          weights: readWeights([...model.parameters(), ...model.buffers()]),
          optimizer: trainer.optimizer.stateDict(),
        })
      : undefined;
    if (log && ck.enabled) tracker.setTags({ 'loom.checkpoints': dir });
    const history = await trainer.fit(c.resolve(TOKENS.TrainData), c.resolve(TOKENS.ValidationData), { checkpointer, resume: resume ?? undefined });
    const finalStep = history.step;
    const testData = c.resolve(TOKENS.TestData);
    let test: Logs | null = testData ? trainer.evaluate(testData) : null;
    if (opts.evaluate) test = { ...(test ?? {}), ...(await opts.evaluate(trainer, testData)) };
    if (test && log) tracker.logMetrics(Object.fromEntries(Object.entries(test).map(([k, v]) => [`test_${k}`, v])), finalStep);
    const wallTimeSec = (Date.now() - started) / 1000;
    if (log) {
      tracker.logMetrics({ wall_time_s: wallTimeSec }, finalStep);
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

export interface CrossValidationResult {
  /** The last epoch's logs of each fold (validation metrics under `val_*`). */
  folds: Logs[];
  mean: Logs;
  /** Sample standard deviation across folds (n − 1 in the denominator). */
  std: Logs;
}

/**
 * k-fold cross-validation: one tracked run per fold (tagged `fold`), each training a fresh model on k − 1 folds and
 * validating on the held-out one; returns every fold's final logs with their mean and standard deviation.
 */
export async function crossValidate(opts: RunOptions & { folds: number }): Promise<CrossValidationResult> {
  const folds: Logs[] = [];
  for (let index = 0; index < opts.folds; index++) {
    const r = await runExperiment({ ...opts, fold: { index, of: opts.folds } });
    folds.push(r.history.at(-1) ?? {});
  }
  const keys = Object.keys(folds[0] ?? {}).filter((k) => folds.every((f) => k in f));
  const mean: Logs = {};
  const std: Logs = {};
  for (const k of keys) {
    const v = folds.map((f) => f[k]!);
    mean[k] = v.reduce((a, b) => a + b, 0) / v.length;
    std[k] = Math.sqrt(v.reduce((a, b) => a + (b - mean[k]!) ** 2, 0) / Math.max(v.length - 1, 1));
  }
  return { folds, mean, std };
}

/** A checkpoint directory itself, or the newest checkpoint in a run's checkpoint directory. */
export function resolveCheckpoint(p: string): string {
  const abs = path.resolve(p);
  if (fs.existsSync(path.join(abs, 'state.json'))) return abs;
  const latest = latestCheckpoint(abs);
  if (!latest) throw new ConfigError('--resume', `no checkpoint at ${abs} (expected a ckpt-* directory or a directory holding them)`);
  return latest;
}

/** The newest checkpoint of `experiment` under `root` (default ./checkpoints), for `--resume` without a path. */
export function findLatestCheckpoint(experiment: string, root = 'checkpoints'): string | null {
  const abs = path.resolve(root);
  if (!fs.existsSync(abs)) return null;
  const all = fs.readdirSync(abs).flatMap((exp) => {
    const e = path.join(abs, exp);
    return fs.statSync(e).isDirectory() ? fs.readdirSync(e).map((run) => latestCheckpoint(path.join(e, run))).filter((c): c is string => c !== null) : [];
  });
  const mine = all.filter((c) => (JSON.parse(fs.readFileSync(path.join(c, 'state.json'), 'utf8')) as { run: { experiment: string } }).run.experiment === experiment);
  return mine.sort((a, b) => fs.statSync(path.join(a, 'state.json')).mtimeMs - fs.statSync(path.join(b, 'state.json')).mtimeMs).at(-1) ?? null;
}
