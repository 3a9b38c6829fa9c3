/**
 * Assembles and executes one run. `buildRunContainer` creates a child container with a provider for every token
 * (core/tokens.ts): a factory that builds its component from the experiment config, resolving what it needs by
 * token, once per run. `RunOptions.override` (or a registration on the returned container) replaces any one of them.
 * `runExperiment` trains, evaluates, logs to the trackers and saves the model as an artifact. Nothing is
 * registered in tsyringe's root container.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { container as rootContainer, type DependencyContainer, type InjectionToken } from 'tsyringe';
import { activateBackend, describeBackend, readToHost, selectBackend } from '../core/backend';
import { flattenConfig, parseExperimentConfig, type ExperimentConfig } from '../core/config';
import {
  Checkpointer,
  clearFinished,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  readFinished,
  writeFinished,
  type Checkpoint,
  type FinishedRecord,
  type TrainerSnapshot,
} from '../core/checkpoint';
import { checkData } from './data-check';
import { kFoldSplit, splitTail, take } from '../core/data';
import { ConfigError, FileError, InterruptedError } from '../core/errors';
import { environmentTags } from './environment';
import { asFileError } from '../core/fs-atomic';
import type { Backend, Dataset, DataSource, JsonObject, Logs, Model, RunInfo, Tracker } from '../core/interfaces';
import { buildModel, upgradeModelConfig } from '../core/model';
import { checkInputShape, preflight } from './preflight';
import { Rng } from '../core/random';
import type { PluginRegistry } from '../core/registry';
import { readWeights, saveModel } from '../core/serialization';
import { FACTORY_TOKENS, RUN_PLUGIN_KINDS, TOKENS, type PluginFactory, type RunPluginKind } from '../core/tokens';
import { SignalWatch, yieldToEventLoop, type StopSignal } from '../core/signals';
import { describeDataset, MultiTracker, withTrackingUri } from './tracking';
import { finalEpochLogs, Trainer } from '../core/trainer';

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
   * metrics join the test metrics (logged as `test_<key>`). Runs before the model is released. `run.checkpoints` is
   * the run's checkpoint directory (null when checkpoints are off), e.g. to average the last checkpoints.
   */
  evaluate?: (trainer: Trainer, test: Dataset | null, run: { checkpoints: string | null }) => Logs | Promise<Logs>;
  /** Called with the freshly built model before training (e.g. to load pretrained weights); not on --resume. */
  initialize?: (model: Model) => void;
  /**
   * Stop on SIGINT / SIGTERM after the current step with a checkpoint and a KILLED run (see {@link runExperiment});
   * default true. Only for single-process runs. False leaves the signals' usual effect (the process ends).
   */
  handleSignals?: boolean;
  /**
   * Replaces components of the run: called with the run's container once its default providers are registered and
   * before anything is built, so what it registers for a token (`c.register(TOKENS.Tracker, { useValue: mine })`, or
   * `{ useFactory }` resolving other tokens) is what the whole run uses. See CONTRIBUTING.md, "The run container".
   */
  override?: (c: DependencyContainer) => void;
}

/**
 * A child container with a provider for every run-scoped token, `opts.override` applied, the backend selected and
 * the components built in the order that fixes the run's random streams: the data (a bad split fails before a model
 * is built), the model (its weights fork the run's stream first; the trainer forks its streams after), the loss
 * (checked against the model by `preflight`), then every other component of the config (so a bad option fails here,
 * before a run is tracked). A provider registered on the returned container afterwards still replaces a component
 * the trainer takes, as the trainer is resolved only when asked for. The caller disposes it with {@link disposeRun}.
 */
export async function buildRunContainer(opts: RunOptions): Promise<DependencyContainer> {
  const config = parseExperimentConfig(opts.config);
  const c = rootContainer.createChildContainer();
  registerProviders(c, config, opts);
  opts.override?.(c);

  // A backend the override registered is the run's (activated here); else the requested or best available one.
  const chosen = c.isRegistered(TOKENS.Backend, false) ? c.resolve(TOKENS.Backend) : null;
  const { backend, tags: backendTags } = chosen ? await activateBackend(chosen) : await selectBackend(opts.registry, opts.backend);
  (opts.log ?? console.log)(describeBackend(backendTags));
  c.registerInstance(TOKENS.Backend, backend);
  c.registerInstance(BACKEND_TAGS, backendTags);
  const precision = config.trainer.precision ?? 'fp32';
  // bf16 on a backend that cannot is refused before any data is read.
  if (precision === 'bf16' && !backend.setPrecision)
    throw new ConfigError(
      'trainer.precision',
      `bf16 needs a backend that computes matrix products in bf16 (native-cpu); backend "${backend.spec.type}" computes them in fp32 only`,
    );

  const train = c.resolve(TOKENS.TrainData);
  c.resolve(TOKENS.ValidationData);
  c.resolve(TOKENS.TestData);
  const model = c.resolve(TOKENS.Model);
  try {
    preflight(model, train, c.resolve(TOKENS.Loss));
    for (const token of [TOKENS.Optimizer, TOKENS.Schedule, TOKENS.Metrics, TOKENS.Augmentations, TOKENS.Callbacks, TOKENS.Tracker, TOKENS.Strategy])
      c.resolve<unknown>(token);
    // Last, once nothing else can fail: disposeRun puts fp32 back.
    Object.assign(backendTags, applyPrecision(backend, precision, opts.log ?? console.log));
  } catch (e) {
    model.dispose();
    throw e;
  }
  return c;
}

/**
 * Sets the backend's matrix products to `trainer.precision` and returns the tag that records it
 * (`backend.precision`: `fp32`, `bf16 (amx)`, `bf16 (avx512_bf16)` or `bf16 (portable)` on native-cpu). bf16 on a backend that
 * cannot (tfjs's cpu, tfjs-node, webgpu) was refused when the run started, naming `trainer.precision`, rather than
 * run in fp32 unnoticed.
 */
function applyPrecision(backend: Backend, precision: 'fp32' | 'bf16', say: (line: string) => void): Record<string, string> {
  if (!backend.setPrecision) return { 'backend.precision': 'fp32' }; // bf16 was refused at the start
  const tags = backend.setPrecision(precision);
  if (precision === 'bf16')
    say(`loom: matrix products in ${tags['backend.precision'] ?? 'bf16'}: bf16 operands, fp32 sums; weights, gradients and optimizer state fp32`);
  return tags;
}

/** The training, validation and test sets, split as the config (and a cross-validation fold) say. */
interface Splits {
  train: Dataset;
  validation: Dataset | null;
  test: Dataset | null;
}
const SPLITS: InjectionToken<Splits> = Symbol.for('loom.Splits');

/**
 * A provider that builds its value on first resolution and then returns it (per container: each run registers its
 * own). tsyringe's `instanceCachingFactory` would rebuild a null value on every resolution.
 */
function once<T>(build: (c: DependencyContainer) => T): { useFactory: (c: DependencyContainer) => T } {
  let built: { value: T } | null = null;
  return { useFactory: (c) => (built ??= { value: build(c) }).value };
}

/** The default provider of every token: each component built from `config`, its dependencies resolved by token. */
function registerProviders(c: DependencyContainer, config: ExperimentConfig, opts: RunOptions): void {
  const { registry } = opts;
  c.registerInstance(TOKENS.Registry, registry);
  c.registerInstance(TOKENS.Config, config);
  c.registerInstance(TOKENS.TrainerOptions, config.trainer);
  for (const kind of RUN_PLUGIN_KINDS) {
    const factory: PluginFactory<RunPluginKind> = (spec, p) => registry.create(kind, spec, p);
    c.registerInstance(FACTORY_TOKENS[kind], factory);
  }
  const make = <K extends RunPluginKind>(r: DependencyContainer, kind: K): PluginFactory<K> => r.resolve(FACTORY_TOKENS[kind]);
  c.register(
    TOKENS.Rng,
    once(() => new Rng(config.seed)),
  );
  c.register(
    TOKENS.DataSource,
    once((r) => make(r, 'dataset')(config.data.source, 'data.source')),
  );
  c.register(
    SPLITS,
    once((r) => splitData(r.resolve(TOKENS.DataSource), config, opts.fold)),
  );
  c.register(
    TOKENS.TrainData,
    once((r) => r.resolve(SPLITS).train),
  );
  c.register(
    TOKENS.ValidationData,
    once((r) => r.resolve(SPLITS).validation),
  );
  c.register(
    TOKENS.TestData,
    once((r) => r.resolve(SPLITS).test),
  );
  c.register(
    TOKENS.Model,
    once((r) => {
      const model = buildModel(config.model, registry);
      checkInputShape(model, r.resolve(TOKENS.TrainData));
      model.build(model.inputShape, r.resolve(TOKENS.Rng).fork());
      return model;
    }),
  );
  c.register(
    TOKENS.Loss,
    once((r) => make(r, 'loss')(config.loss, 'loss')),
  );
  c.register(
    TOKENS.Optimizer,
    once((r) => make(r, 'optimizer')(config.optimizer, 'optimizer')),
  );
  c.register(
    TOKENS.Schedule,
    once((r) => (config.schedule ? make(r, 'schedule')(config.schedule, 'schedule') : null)),
  );
  c.register(
    TOKENS.Metrics,
    once((r) => config.metrics.map((m, i) => make(r, 'metric')(m, `metrics[${i}]`))),
  );
  c.register(
    TOKENS.Augmentations,
    once((r) => config.augmentations.map((a, i) => make(r, 'augmentation')(a, `augmentations[${i}]`))),
  );
  c.register(
    TOKENS.Callbacks,
    once((r) => config.callbacks.map((m, i) => make(r, 'callback')(m, `callbacks[${i}]`))),
  );
  c.register(
    TOKENS.Tracker,
    once((r) => new MultiTracker(withTrackingUri(config.trackers, opts.trackingUri).map((t, i) => make(r, 'tracker')(t, `trackers[${i}]`)))),
  );
  c.register(
    TOKENS.Strategy,
    once((r) => make(r, 'parallelism')(config.parallelism, 'parallelism')),
  );
  c.register(
    TOKENS.TrainerComponents,
    once((r) => ({
      model: r.resolve(TOKENS.Model),
      loss: r.resolve(TOKENS.Loss),
      optimizer: r.resolve(TOKENS.Optimizer),
      schedule: r.resolve(TOKENS.Schedule),
      metrics: r.resolve(TOKENS.Metrics),
      callbacks: r.resolve(TOKENS.Callbacks),
      tracker: r.resolve(TOKENS.Tracker),
      strategy: r.resolve(TOKENS.Strategy),
      rng: r.resolve(TOKENS.Rng),
      options: r.resolve(TOKENS.TrainerOptions),
      augmentations: r.resolve(TOKENS.Augmentations),
    })),
  );
  c.register(Trainer, { useClass: Trainer });
}

/** The config's training split (limited), with its validation part (held out, a named split or a fold) and test split. */
function splitData(source: DataSource, config: ExperimentConfig, fold: RunOptions['fold']): Splits {
  // A split the source does not have is a config error naming the field (the source's own message cannot).
  const load = (field: string, split: string): Dataset => {
    if (!source.splits.includes(split))
      throw new ConfigError(field, `data set "${source.spec.type}" has no split "${split}"; its splits: ${source.splits.join(', ')}`);
    return source.load(split);
  };
  let trainAll: Dataset = load('data.train', config.data.train);
  if (config.data.trainLimit) trainAll = take(trainAll, config.data.trainLimit);
  if (config.data.validation && config.trainer.validationSplit > 0) {
    throw new ConfigError(
      'trainer.validationSplit',
      `is ${config.trainer.validationSplit}, but data.validation names a split ("${config.data.validation}"): use one or the other`,
    );
  }
  const { train, validation } = fold
    ? kFoldSplit(trainAll, fold.of, fold.index, config.seed)
    : config.data.validation
      ? { train: trainAll, validation: load('data.validation', config.data.validation) }
      : splitTail(trainAll, config.trainer.validationSplit);
  let test: Dataset | null = config.data.test ? load('data.test', config.data.test) : null;
  if (test && config.data.testLimit) test = take(test, config.data.testLimit);
  return { train, validation, test };
}

/** Tags that the backend selection produced (which backend, which kernels, why others were skipped). */
export const BACKEND_TAGS = Symbol.for('loom.BackendTags');

export interface RunResult {
  run: RunInfo;
  config: ExperimentConfig;
  backend: string;
  history: Logs[];
  /**
   * The 1-based epoch whose weights a callback put back when training ended (early stopping's `restoreBest`: the
   * best epoch, possibly the last; tag `loom.restored_epoch`), else null. {@link finalEpochLogs} gives its logs.
   */
  restoredEpoch: number | null;
  test: Logs | null;
  /**
   * Wall time of the run: this process's, plus, for a resumed run, the earlier processes' time up to the checkpoint
   * it resumed from (see {@link Checkpoint.elapsedSec}; the `loom.wall_time` tag says which).
   */
  wallTimeSec: number;
  tags: Record<string, string>;
}

/**
 * Trains and evaluates one experiment, logging everything to its trackers. Marks the run FAILED on error.
 *
 * Before training it checks the data (runtime/data-check.ts: empty splits, non-finite values, targets the loss cannot
 * take) so bad data fails at once, with no tracked run left behind. While training, the first SIGINT or SIGTERM
 * stops the run after its current step (core/signals.ts): it writes a checkpoint, ends the tracked run as KILLED
 * and throws an {@link InterruptedError} that says how to resume; a second signal ends the process at once.
 *
 * With `resume` it continues from a checkpoint and prints what it restored. Resuming a run that ended FINISHED
 * changes nothing (it says so and returns the recorded results) unless the config asks to train further: a larger
 * `trainer.epochs` than the checkpoint's. Then it reopens the run, trains on to the new
 * length and logs the new results at the new final step (a schedule that depends on the planned length sees the
 * new one from there on). It may also change the checkpoint cadence and add callbacks (say, validation metrics and
 * early stopping for the epochs still to train); every other field must equal the checkpoint's.
 */
export async function runExperiment(opts: RunOptions): Promise<RunResult> {
  const started = Date.now();
  const say = opts.log ?? console.log;
  const parsed = parseExperimentConfig(opts.config);
  // The checkpoint is read and checked before anything is built: a wrong or damaged one fails in a moment.
  const resumePath = opts.resume ? resolveCheckpoint(opts.resume) : null;
  const resume = resumePath ? loadForResume(resumePath) : null;
  const extended = resume ? compareResumeConfig(resume, parsed, opts.registry) : [];
  if (resume && resumePath) {
    const finished = readFinished(path.dirname(resumePath), resume.run.runId);
    if (finished && !extended.some((e) => e.grows)) return alreadyFinished(finished, resume, parsed, say);
  }
  const c = await buildRunContainer({ ...opts, config: parsed });
  let watch: SignalWatch | null = null;
  try {
    const config = c.resolve(TOKENS.Config);
    const tracker = c.resolve(TOKENS.Tracker);
    const strategy = c.resolve(TOKENS.Strategy);
    const model = c.resolve(TOKENS.Model);
    const data: [string, Dataset | null][] = [
      ['training', c.resolve(TOKENS.TrainData)],
      ['validation', c.resolve(TOKENS.ValidationData)],
      ['test', c.resolve(TOKENS.TestData)],
    ];
    checkData(data, c.resolve(TOKENS.Loss), model.outputShape);
    const trainSize = c.resolve(TOKENS.TrainData).size;
    if (config.trainer.batchSize > trainSize)
      say(
        `loom: trainer.batchSize ${config.trainer.batchSize} is larger than the ${trainSize} training examples: each epoch is one batch of ${trainSize} (as in Keras)`,
      );
    const tags: Record<string, string> = {
      ...environmentTags(),
      ...c.resolve<Record<string, string>>(BACKEND_TAGS),
      seed: String(config.seed),
      ...(opts.fold ? { fold: `${opts.fold.index + 1}/${opts.fold.of}` } : {}),
      ...opts.tags,
    };
    const log = strategy.isGlobalZero;
    const machine = machineTags(tags); // what decides the run's bits, carried by its checkpoints
    const runName = (opts.runName ?? `${config.experiment}-${config.seed}`) + (opts.fold ? `-fold${opts.fold.index + 1}of${opts.fold.of}` : '');
    if (resume) {
      const s = resume.trainer;
      const where =
        s.batch > 0 ? `epoch ${s.epoch + 1} of ${config.trainer.epochs}, ${s.batch} batches into it` : `${s.epoch} of ${config.trainer.epochs} epochs done`;
      say(
        `loom: resuming run ${resume.run.runId} from ${resumePath}: step ${s.step}, ${where}${extended.length ? `; training further: ${extended.map((e) => e.text).join(', ')}` : ''}`,
      );
      clearFinished(path.dirname(resumePath!)); // it trains again: no longer FINISHED until it ends so
      // Bits are the same only on the same instruction set and thread count: a resume elsewhere continues, and says so.
      const was = resume.machine;
      const changed = was ? MACHINE_TAGS.filter((k) => k !== 'cpu.model' && was[k] !== undefined && was[k] !== machine[k]) : [];
      if (changed.length)
        say(
          `loom: warning: this checkpoint was written on ${describeMachine(was!)}; this process runs on ${describeMachine(machine)} (${changed.join(', ')} differ): the run continues, but its results will not be bit for bit those of an uninterrupted run (the run's tag loom.resumed.${s.step}.machine records it)`,
        );
    }
    // Signals are handled for single-process runs; under mpirun every rank would have to stop at the same step.
    if (opts.handleSignals !== false && strategy.worldSize === 1) watch = new SignalWatch(say);
    const run = log
      ? await tracker.startRun({ experiment: config.experiment, runName, tags, resume: resume ? { ...resume.run, step: resume.trainer.step } : undefined })
      : { runId: `rank${strategy.rank}-not-logging`, experimentId: '', location: '' }; // one rank (isGlobalZero) tracks the run
    const ck = config.trainer.checkpoint;
    const dir = resumePath ? path.dirname(resumePath) : path.resolve(ck.dir ?? path.join('checkpoints', run.experimentId, run.runId));
    let lastCheckpoint: { path: string; step: number } | null = resume ? { path: resumePath!, step: resume.trainer.step } : null;
    // The earlier processes' wall time, carried by the checkpoint (unknown for checkpoints that predate it).
    const carried = resume ? resume.elapsedSec : 0;
    const elapsed = () => (Date.now() - started) / 1000;
    const interrupted = (signal: StopSignal, step: number): InterruptedError => {
      const saved = lastCheckpoint
        ? `checkpoint ${lastCheckpoint.path} (step ${lastCheckpoint.step})`
        : 'no checkpoint (trainer.checkpoint.enabled is false), so it cannot be resumed';
      const how = lastCheckpoint
        ? `\nTo continue it, run the same command with --resume latest (the same preset, seed and --set values), or with --resume ${lastCheckpoint.path}`
        : '';
      return new InterruptedError(signal, `interrupted by ${signal} after step ${step}: ${saved}; MLflow run ${run.runId} marked KILLED${how}`);
    };
    try {
      if (log) {
        const params = flattenConfig(config as unknown as JsonObject);
        // Params are immutable in MLflow: the fields a resume may change keep their first value (a tag records each change),
        // so a resumed run logs none of them, whether this resume or an earlier one changed them.
        const changeable = resume ? [...EXTENDABLE, ...ADJUSTABLE, ...extended.map((e) => e.key)] : [];
        for (const key of changeable) for (const k of Object.keys(params)) if (k === key || k.startsWith(`${key}.`)) delete params[k];
        if (resume) for (const k of Object.keys(params)) if (PATIENCE.test(k)) delete params[k];
        tracker.logParams(params);
        tracker.logParams({ 'model.parameters': model.countParams() });
        if (extended.length) tracker.setTags(Object.fromEntries(extended.map((e) => [`loom.extended.${e.key}`, `${e.text} at step ${resume!.trainer.step}`])));
        // Each resume leaves a tag (a run record lists the steps a run was resumed from), and the commit it ran from
        // there (the run's git.commit is its first process's: a run resumed on a later checkout spans commits).
        if (resume)
          tracker.setTags({
            [`loom.resumed.${resume.trainer.step}`]: resumePath!,
            [`loom.resumed.${resume.trainer.step}.commit`]: tags['git.commit'] ?? 'unknown',
            [`loom.resumed.${resume.trainer.step}.machine`]: describeMachine(machine),
          });
        for (const [context, ds] of data)
          if (ds && tracker.logDataset) tracker.logDataset(describeDataset(ds, context === 'training' ? 'train' : context, config.data.source));
      }
      if (opts.initialize && !resume) opts.initialize(model);
      const trainer = c.resolve(Trainer);
      const writer = new Checkpointer(dir, ck.keep);
      const checkpointer =
        log && ck.enabled
          ? (snapshot: TrainerSnapshot) => {
              const p = writer.save({
                run: { runId: run.runId, experimentId: run.experimentId, experiment: config.experiment, runName },
                config: config as unknown as JsonObject,
                trainer: snapshot,
                weights: readWeights(model.weights()),
                optimizer: trainer.optimizer.getState(),
                ...(carried === undefined ? {} : { elapsedSec: carried + elapsed() }),
                machine,
              });
              lastCheckpoint = { path: p, step: snapshot.step };
            }
          : undefined;
      if (log && ck.enabled) tracker.setTags({ 'loom.checkpoints': dir });
      const stop = watch ? () => watch!.signal !== null : undefined;
      // A checkpoint taken after early stopping (or the step cap) ended training resumes to the test, unless the resume
      // asks to train further (more epochs, more patience) and the step cap, which a resume cannot raise, is not reached.
      const capped = config.trainer.maxSteps !== undefined && (resume?.trainer.step ?? 0) >= config.trainer.maxSteps;
      const trainOn = !capped && extended.some((e) => e.grows || PATIENCE.test(e.key));
      const from = resume && trainOn ? { ...resume, trainer: { ...resume.trainer, stopped: false } } : resume;
      const history = await trainer.fit(c.resolve(TOKENS.TrainData), c.resolve(TOKENS.ValidationData), { checkpointer, resume: from ?? undefined, stop });
      const finalStep = history.step;
      if (watch?.signal) throw interrupted(watch.signal, finalStep);
      const testData = c.resolve(TOKENS.TestData);
      let test: Logs | null = testData ? await trainer.evaluate(testData) : null;
      if (opts.evaluate) test = { ...(test ?? {}), ...(await opts.evaluate(trainer, testData, { checkpoints: ck.enabled ? dir : null })) };
      if (watch) await yieldToEventLoop();
      if (watch?.signal) throw interrupted(watch.signal, finalStep); // training is complete: resuming only evaluates
      if (test && log) tracker.logMetrics(Object.fromEntries(Object.entries(test).map(([k, v]) => [`test_${k}`, v])), finalStep);
      const processSec = elapsed();
      const wallTimeSec = processSec + (carried ?? 0);
      if (log) {
        tracker.logMetrics({ wall_time_s: wallTimeSec }, finalStep);
        if (resume) {
          tracker.logMetrics({ process_wall_time_s: processSec }, finalStep);
          tracker.setTags({ 'loom.wall_time': wallTimeNote(carried, resume.trainer.step) });
        }
        if (history.restoredEpoch !== null) tracker.setTags({ 'loom.restored_epoch': String(history.restoredEpoch) });
        await logRunArtifacts(tracker, model, config, { history: history.epochs, restoredEpoch: history.restoredEpoch, test, wallTimeSec });
        // A resumed run's status reason (from its KILLED or FAILED end) would be stale: it says how it finished instead.
        await tracker.endRun('FINISHED', resume ? `finished after resuming from step ${resume.trainer.step}` : undefined);
        if (ck.enabled)
          writeFinished(dir, {
            runId: run.runId,
            experimentId: run.experimentId,
            location: run.location,
            step: finalStep,
            epochs: config.trainer.epochs,
            backend: tags.backend ?? tf.getBackend(),
            test,
            wallTimeSec,
            restoredEpoch: history.restoredEpoch,
          });
      }
      return { run, config, backend: tags.backend ?? tf.getBackend(), history: history.epochs, restoredEpoch: history.restoredEpoch, test, wallTimeSec, tags };
    } catch (caught) {
      const err = asFileError(caught) ?? caught; // a full disk under a tracker too: a clear error, not Node's
      if (log) {
        const killed = err instanceof InterruptedError;
        await tracker
          .endRun(killed ? 'KILLED' : 'FAILED', killed ? `interrupted by ${err.signal}` : err instanceof Error ? err.message : String(err))
          .catch(() => undefined);
      }
      throw err;
    }
  } finally {
    watch?.dispose();
    disposeRun(c);
  }
}

/**
 * Fields a resume may raise to train a run further; every other field must equal the checkpoint's. Not
 * `trainer.maxSteps`: a run it stopped mid-epoch checkpointed that epoch as done, so training on from there would
 * skip the rest of the epoch.
 */
const EXTENDABLE = ['trainer.epochs'];

/**
 * Fields a resume may change freely: they decide when checkpoints are written and how many are kept, not what is
 * trained, so the resumed run computes what the checkpoint's config would have.
 */
const ADJUSTABLE = ['trainer.checkpoint.everySteps', 'trainer.checkpoint.keep'];

/**
 * Early stopping's patience, in a callback the checkpoint has, may be raised (never lowered): the run waits longer
 * for its monitor to improve, as when a noisy validation metric would otherwise end it early. Up to the step it
 * resumes from, the run is the one the checkpoint's config trained.
 */
const PATIENCE = /^callbacks\.\d+\.patience$/;
const isPatience = (key: string, flat: Record<string, unknown>) => PATIENCE.test(key) && flat[key.replace(/patience$/, 'type')] === 'early-stopping';

/** A difference a resume accepts: the field, how it is described, and whether it trains the run further. */
export interface ResumeChange {
  key: string;
  text: string;
  grows: boolean;
}

/**
 * Refuses a resume whose config differs from the checkpoint's, except for {@link EXTENDABLE} fields raised,
 * {@link ADJUSTABLE} fields and callbacks appended after the checkpoint's (a validation metric or early stopping
 * added to a run trained further, as Lightning allows on a resume: the callbacks already there keep their state;
 * an added one starts fresh at the resumed step). Returns those changes, described.
 */
function compareResumeConfig(resume: Checkpoint, config: ExperimentConfig, registry: PluginRegistry): ResumeChange[] {
  if (resume.run.experiment !== config.experiment) {
    throw new ConfigError('--resume', `the checkpoint belongs to experiment "${resume.run.experiment}", not "${config.experiment}"`);
  }
  // A checkpoint written before GPT, BERT and the seq2seq Transformer were models names one as a Sequential's layer.
  const saved = { ...resume.config, model: upgradeModelConfig(resume.config.model, registry) } as JsonObject;
  const [was, now] = [flattenConfig(saved), flattenConfig(config as unknown as JsonObject)];
  const differ = [...new Set([...Object.keys(was), ...Object.keys(now)])].filter((k) => was[k] !== now[k]);
  const limit = (v: unknown) => (v === undefined ? Infinity : Number(v));
  const shrunk = differ.filter((k) => (EXTENDABLE.includes(k) || isPatience(k, was)) && limit(now[k]) < limit(was[k]));
  if (shrunk.length)
    throw new ConfigError(
      '--resume',
      `${shrunk.map((k) => `${k} is ${now[k] ?? 'unlimited'}, less than the checkpoint's ${was[k]}`).join('; ')}: a resumed run can train further, not shorter`,
    );
  const before = Array.isArray(resume.config.callbacks) ? resume.config.callbacks.length : 0;
  const appended = (k: string) => {
    const m = /^callbacks\.(\d+)(\.|$)/.exec(k);
    return m !== null && Number(m[1]) >= before && was[k] === undefined;
  };
  const other = differ.filter((k) => !EXTENDABLE.includes(k) && !ADJUSTABLE.includes(k) && !isPatience(k, was) && !appended(k));
  if (other.length)
    throw new ConfigError(
      '--resume',
      `the config differs from the checkpoint's in ${other
        .slice(0, 5)
        .map((k) => `${k} (was ${was[k]}, now ${now[k]})`)
        .join(
          ', ',
        )}; resume with the same preset, seed and options (a resume may raise trainer.epochs and early stopping's patience, change trainer.checkpoint.everySteps or .keep, and add callbacks after the checkpoint's)`,
    );
  const changes: ResumeChange[] = differ
    .filter((k) => !appended(k))
    .map((k) => ({ key: k, text: `${k}=${now[k] ?? 'unlimited'} (was ${was[k] ?? 'unlimited'})`, grows: EXTENDABLE.includes(k) }));
  config.callbacks.slice(before).forEach((cb, i) => {
    changes.push({ key: `callbacks.${before + i}`, text: `callbacks.${before + i} added: ${JSON.stringify(cb)}`, grows: false });
  });
  return changes;
}

/** Loads the checkpoint to resume from; if it is damaged, the error also names an intact earlier one of the run. */
function loadForResume(p: string): Checkpoint {
  try {
    return loadCheckpoint(p);
  } catch (e) {
    if (!(e instanceof FileError)) throw e;
    const earlier = listCheckpoints(path.dirname(p))
      .filter((c) => path.basename(c) < path.basename(p))
      .reverse()
      .find((c) => {
        try {
          loadCheckpoint(c);
          return true;
        } catch {
          return false;
        }
      });
    throw new FileError(
      e.file,
      `${e.message}. ${earlier ? `An earlier checkpoint of the run is intact: resume from it with --resume ${earlier} (or delete ${p})` : 'No intact earlier checkpoint of the run exists'}`,
    );
  }
}

/** The run tags that decide a run's bits: the CPU, the backend, its instruction set and thread count. */
const MACHINE_TAGS = ['cpu.model', 'cpu.id', 'backend', 'backend.simd', 'backend.threads'] as const;

/** The machine facts among a run's tags (those present). */
export function machineTags(tags: Record<string, string>): Record<string, string> {
  return Object.fromEntries(MACHINE_TAGS.flatMap((k) => (tags[k] === undefined ? [] : [[k, tags[k]!]])));
}

/** "AMD EPYC (AuthenticAMD family 26 ...), native-cpu avx512, 1 thread(s)": a machine in words. */
export function describeMachine(m: Record<string, string>): string {
  const cpu = `${m['cpu.model'] ?? '?'}${m['cpu.id'] ? ` (${m['cpu.id']})` : ''}`;
  const backend = [m.backend, m['backend.simd']].filter(Boolean).join(' ');
  return [cpu, backend, m['backend.threads'] && `${m['backend.threads']} thread(s)`].filter(Boolean).join(', ');
}

/** What a resumed run's `wall_time_s` covers (the `loom.wall_time` tag). */
function wallTimeNote(carried: number | undefined, step: number): string {
  return carried === undefined
    ? `the last process only (resumed from step ${step}, whose checkpoint predates the carried wall time): the earlier processes' time is unknown`
    : `every process's time up to the checkpoint the next one resumed from (${carried.toFixed(1)} s before step ${step}) plus the last process's; time lost to interruptions after a checkpoint is not counted`;
}

/** The result of a FINISHED run asked to resume with nothing to add: recorded, not recomputed; nothing is logged. */
function alreadyFinished(f: FinishedRecord, resume: Checkpoint, config: ExperimentConfig, say: (line: string) => void): RunResult {
  say(
    `loom: run ${f.runId} already FINISHED at step ${f.step} (${f.epochs} epochs); nothing to resume, nothing changed. To train it further, resume with a larger --set trainer.epochs=N`,
  );
  const tags = { ...environmentTags(), backend: f.backend, seed: String(config.seed) };
  return {
    run: { runId: f.runId, experimentId: f.experimentId, location: f.location },
    config,
    backend: f.backend,
    history: resume.trainer.history,
    restoredEpoch: f.restoredEpoch ?? null,
    test: f.test,
    wallTimeSec: f.wallTimeSec,
    tags,
  };
}

async function logRunArtifacts(tracker: Tracker, model: Model, config: ExperimentConfig, summary: object): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-artifacts-'));
  try {
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
    fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 2));
    await readToHost(model); // the weights' values on the host first, where the backend reads asynchronously (webgpu)
    saveModel(model, path.join(dir, 'model'));
    await tracker.logArtifact(path.join(dir, 'config.json'));
    await tracker.logArtifact(path.join(dir, 'summary.json'));
    await tracker.logArtifact(path.join(dir, 'model', 'model.json'), 'model/model.json');
    await tracker.logArtifact(path.join(dir, 'model', 'weights.bin'), 'model/weights.bin');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Releases what a run container holds: the tensors (model weights, optimizer slots) and the strategy's MPI groups. */
export function disposeRun(c: DependencyContainer): void {
  c.resolve(TOKENS.Backend).setPrecision?.('fp32'); // trainer.precision lasts for the run only
  c.resolve(TOKENS.Model).dispose();
  c.resolve(TOKENS.Optimizer).dispose();
  c.resolve(TOKENS.Loss).dispose?.(); // a distillation teacher's weights
  c.resolve(TOKENS.Strategy).dispose?.(); // hybrid parallelism's MPI sub-communicators
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
    folds.push(finalEpochLogs(r.history, r.restoredEpoch));
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

/**
 * The newest checkpoint of `experiment` under `root` (default ./checkpoints), for `--resume latest`. The root holds
 * `<experiment id>/<run id>/ckpt-*` folders; anything else there (a file, a cache, a folder without checkpoints) is
 * not a run and is skipped. A run's experiment is read from the newest of its checkpoints whose state.json can be
 * read; the newest checkpoint of the chosen run is returned even if it is damaged, so that resuming it reports the
 * damage (and names an intact earlier checkpoint) rather than silently going back further. With `runName`, only
 * runs of that name count (a paper that trains several runs, one per variant, resumes each from its own).
 */
export function findLatestCheckpoint(experiment: string, root = 'checkpoints', runName?: string): string | null {
  const abs = path.resolve(root);
  const dirs = (d: string) => {
    try {
      return fs
        .readdirSync(d, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => path.join(d, e.name));
    } catch {
      return []; // not a directory, or unreadable: holds no runs
    }
  };
  let best: { ckpt: string; mtime: number } | null = null;
  for (const runDir of dirs(abs).flatMap(dirs)) {
    const ckpts = listCheckpoints(runDir);
    const run = ckpts.length ? runOf(ckpts) : null;
    if (!run || run.experiment !== experiment || (runName !== undefined && run.runName !== runName)) continue;
    const newest = ckpts.at(-1)!;
    const mtime = fs.statSync(path.join(newest, 'state.json')).mtimeMs;
    if (!best || mtime > best.mtime) best = { ckpt: newest, mtime };
  }
  return best?.ckpt ?? null;
}

/** The experiment and run name recorded by the newest readable state.json among a run's checkpoints, or null. */
function runOf(ckpts: string[]): { experiment: string; runName: unknown } | null {
  for (const c of [...ckpts].reverse()) {
    try {
      const run = (JSON.parse(fs.readFileSync(path.join(c, 'state.json'), 'utf8')) as { run?: { experiment?: unknown; runName?: unknown } }).run;
      if (typeof run?.experiment === 'string') return { experiment: run.experiment, runName: run.runName };
    } catch {
      // damaged: try an older one
    }
  }
  return null;
}
