/**
 * loom as a library, in the habits of Keras and Lightning: a {@link Learner} pairs a model (built in code or from a
 * config) with a loss, an optimizer, metrics, callbacks and trackers, and then `fit`s it on arrays or tensors in
 * memory (with validation data), `evaluate`s, `predict`s and saves it. No dataset plugin and no experiment config
 * are needed, and the model stays the caller's: nothing here disposes it (a run of `runExperiment` does, as it
 * owns its model). It drives the same {@link Trainer} as a run, with the same random streams: a Learner built from
 * an experiment config's parts and seed, fitted on the same examples, trains exactly as the run does.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { z } from 'zod';
import { flattenConfig, trainerOptionsSchema } from '../core/config';
import { readsAsynchronously, readToHost, selectBackend } from '../core/backend';
import { splitTail, TensorDataset } from '../core/data';
import { ConfigError } from '../core/errors';
import type { Callback, Dataset, JsonObject, LearningRateSchedule, Logs, Loss, Metric, Model, Optimizer, PluginSpec, Tracker } from '../core/interfaces';
import { buildModel, modelConfigSchema, type ModelConfig } from '../core/model';
import { Rng } from '../core/random';
import type { PluginRegistry } from '../core/registry';
import { saveModel } from '../core/serialization';
import { Trainer, type History } from '../core/trainer';
import { checkData } from './data-check';
import { checkInputShape, preflight } from './preflight';
import { MultiTracker } from './tracking';

/** Inputs or targets in memory: a tensor (left as it is: the caller still owns it) or nested arrays / a typed array. */
export type ArrayOrTensor = tf.Tensor | tf.TensorLike;

/** Examples in memory (`x[i]` and `y[i]` are example i), or a {@link Dataset} already built. */
export type FitData = { x: ArrayOrTensor; y: ArrayOrTensor } | Dataset;

/** The trainer's options a Learner takes (as the config's `trainer` section; epochs 1 and batch size 32 by default). */
export type LearnerTrainerOptions = Partial<Omit<z.input<typeof trainerOptionsSchema>, 'checkpoint'>>;

export interface LearnerOptions extends LearnerTrainerOptions {
  /** Where plugins named by a spec (loss, optimizer, ...) and model layers come from: `registerBuiltins(createRegistry())`. */
  registry: PluginRegistry;
  /** A model config (`{ inputShape, layers }` or `{ type: 'gpt', ... }`), built here from `seed`, or a built model (loaded, or built in code). */
  model: Model | ModelConfig | { inputShape: number[]; layers: unknown[] };
  loss: PluginSpec | Loss;
  optimizer: PluginSpec | Optimizer;
  schedule?: PluginSpec | LearningRateSchedule;
  metrics?: (PluginSpec | Metric)[];
  callbacks?: (PluginSpec | Callback)[];
  /** Where `fit` logs (one tracked run per call); default: none. */
  trackers?: (PluginSpec | Tracker)[];
  /** The experiment name the trackers file runs under (default: "loom"). */
  experiment?: string;
  /** Seeds the model's initial weights (when built here), the data order, dropout and augmentations (default 0). */
  seed?: number;
  /** A backend to activate (default: LOOM_BACKEND, else the fastest available); see `selectBackend`. */
  backend?: string;
}

export interface FitCallOptions extends LearnerTrainerOptions {
  /** Examples to validate on after every epoch (`val_*` in the history); or hold out `validationSplit` of the training data. */
  validationData?: FitData;
  /** The tracked run's name (default: `<experiment>-<seed>`). */
  runName?: string;
}

/** A plugin instance as it is, or one built from its spec (`path` names the option in errors). */
function plugin<T>(registry: PluginRegistry, kind: Parameters<PluginRegistry['create']>[0], v: PluginSpec | T, path: string): T {
  return typeof v === 'string' || (typeof v === 'object' && v !== null && 'type' in v && !('spec' in v))
    ? (registry.create(kind, v as PluginSpec, path) as T)
    : (v as T);
}

/** `o` without its undefined fields (which would otherwise hide a default). */
function defined(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/** Whether `m` is a model (rather than a model config). */
function isModel(m: LearnerOptions['model']): m is Model {
  return typeof (m as Model).apply === 'function';
}

/** A tensor of `v` (a new one the caller disposes) and whether it was made here. */
function asTensor(v: ArrayOrTensor): { t: tf.Tensor; made: boolean } {
  return v instanceof tf.Tensor ? { t: v, made: false } : { t: tf.tensor(v as tf.TensorLike), made: true };
}

/**
 * A {@link Dataset} of examples in memory, copied out of the tensors (which stay the caller's). `field` names the
 * argument in errors: x and y must hold the same number of examples.
 */
export function inMemoryDataset(data: FitData, name = 'data', field = 'data'): Dataset {
  if (typeof (data as Dataset).batch === 'function') return data as Dataset;
  if (!('x' in data && 'y' in data)) throw new ConfigError(field, 'expected { x, y } (arrays or tensors) or a Dataset');
  const [x, y] = [asTensor(data.x), asTensor(data.y)];
  try {
    const n = (t: tf.Tensor) => (t.rank === 0 ? 0 : t.shape[0]!);
    if (x.t.rank === 0 || n(x.t) !== n(y.t))
      throw new ConfigError(field, `x and y must hold the same number of examples along their first axis, got x [${x.t.shape}] and y [${y.t.shape}]`);
    const values = (t: tf.Tensor) => (t.dtype === 'int32' || t.dtype === 'bool' ? Int32Array.from(t.dataSync()) : Float32Array.from(t.dataSync()));
    return new TensorDataset(name, values(x.t), x.t.shape.slice(1), values(y.t), y.t.shape.slice(1));
  } finally {
    if (x.made) x.t.dispose();
    if (y.made) y.t.dispose();
  }
}

/**
 * A model with its training setup (Keras's compiled model; Lightning's module with its trainer). Create one with
 * {@link Learner.create}; `fit` may be called again to train further (the optimizer keeps its state). The model
 * belongs to the caller: {@link Learner.dispose} releases the optimizer's state only.
 */
export class Learner {
  /** The run's random stream: each `fit` forks its data-order, dropout and augmentation streams from it. */
  private readonly rng: Rng;
  private readonly metrics: Metric[];
  private readonly callbacks: Callback[];
  private readonly schedule: LearningRateSchedule | null;
  private readonly tracker: MultiTracker;

  private constructor(
    readonly model: Model,
    readonly loss: Loss,
    readonly optimizer: Optimizer,
    private readonly opts: LearnerOptions,
    rng: Rng,
  ) {
    const { registry } = opts;
    this.rng = rng;
    this.schedule = opts.schedule === undefined ? null : plugin<LearningRateSchedule>(registry, 'schedule', opts.schedule, 'schedule');
    this.metrics = (opts.metrics ?? []).map((m, i) => plugin<Metric>(registry, 'metric', m, `metrics[${i}]`));
    this.callbacks = (opts.callbacks ?? []).map((c, i) => plugin<Callback>(registry, 'callback', c, `callbacks[${i}]`));
    this.tracker = new MultiTracker((opts.trackers ?? []).map((t, i) => plugin<Tracker>(registry, 'tracker', t, `trackers[${i}]`)));
  }

  /**
   * Activates the backend, builds the model when given a config (its weights drawn from `seed`, as a run draws
   * them) and the loss, optimizer and other parts from their specs; a bad spec is a ConfigError naming it.
   */
  static async create(opts: LearnerOptions): Promise<Learner> {
    const { registry } = opts;
    await selectBackend(registry, opts.backend ?? (process.env.LOOM_BACKEND || undefined));
    const rng = new Rng(opts.seed ?? 0);
    const loss = plugin<Loss>(registry, 'loss', opts.loss, 'loss');
    const optimizer = plugin<Optimizer>(registry, 'optimizer', opts.optimizer, 'optimizer');
    let model: Model;
    if (isModel(opts.model)) model = opts.model;
    else {
      const config = modelConfigSchema.safeParse(opts.model);
      if (!config.success) throw new ConfigError(`model.${config.error.issues[0]!.path.join('.')}`, config.error.issues[0]!.message);
      model = buildModel(config.data, registry);
      model.build(model.inputShape, rng.fork());
    }
    return new Learner(model, loss, optimizer, opts, rng);
  }

  /**
   * A Trainer for one call, with the Learner's parts and these options over the Learner's. Evaluation and prediction
   * draw nothing at random: they get a stream of their own, so that they leave the next `fit`'s streams unchanged.
   */
  private trainer(options: LearnerTrainerOptions = {}, rng = this.rng): Trainer {
    const own = Object.fromEntries(Object.keys(trainerOptionsSchema.shape).map((k) => [k, (this.opts as unknown as Record<string, unknown>)[k]]));
    const parsed = trainerOptionsSchema.safeParse({ epochs: 1, batchSize: 32, ...defined(own), ...defined(options), checkpoint: { enabled: false } });
    if (!parsed.success) {
      const i = parsed.error.issues[0]!;
      throw new ConfigError(i.path.join('.'), i.message);
    }
    // trainer.precision is set on the backend by a run (runtime/run.ts), which a Learner does not start: refused, not ignored.
    if (parsed.data.precision === 'bf16')
      throw new ConfigError('precision', 'bf16 is set for a run (runExperiment, loom train, loom paper); a Learner trains in fp32');
    return new Trainer({
      model: this.model,
      loss: this.loss,
      optimizer: this.optimizer,
      schedule: this.schedule,
      metrics: this.metrics,
      callbacks: this.callbacks,
      tracker: this.tracker,
      strategy: this.opts.registry.create('parallelism', 'single-process'),
      rng,
      options: parsed.data,
    });
  }

  /**
   * Trains on `data` for `epochs` epochs (validating on `validationData`, or on the last `validationSplit` of `data`,
   * after each); returns the history, one entry of logs per epoch. The data is checked first (shapes against the
   * model, targets against the loss, no NaN): a mistake is an error naming it, before any step. With trackers, the
   * call is one tracked run, ended FINISHED or FAILED.
   */
  async fit(data: FitData, options: FitCallOptions = {}): Promise<History> {
    const { validationData, runName, ...trainerOptions } = options;
    const trainer = this.trainer(trainerOptions);
    const all = inMemoryDataset(data, 'train', 'data');
    if (validationData && trainer.options.validationSplit > 0)
      throw new ConfigError('validationSplit', `is ${trainer.options.validationSplit}, but validationData is given: use one or the other`);
    const held = validationData ? { train: all, validation: inMemoryDataset(validationData, 'validation', 'validationData') } : null;
    const { train, validation } = held ?? splitTail(all, trainer.options.validationSplit);
    checkInputShape(this.model, train);
    checkData(
      [
        ['training', train],
        ['validation', validation],
      ],
      this.loss,
      this.model.outputShape,
    );
    preflight(this.model, train, this.loss);
    const tracked = this.tracker.trackers.length > 0;
    const experiment = this.opts.experiment ?? 'loom';
    if (tracked) {
      await this.tracker.startRun({ experiment, runName: runName ?? `${experiment}-${this.opts.seed ?? 0}`, tags: { seed: String(this.opts.seed ?? 0) } });
      // The run's setup as a config run logs it (flattened: `optimizer.lr`, `trainer.batchSize`, ...).
      const setup = {
        seed: this.opts.seed ?? 0,
        model: this.model.spec,
        loss: this.loss.spec,
        optimizer: this.optimizer.spec,
        ...(this.schedule ? { schedule: this.schedule.spec } : {}),
        metrics: this.metrics.map((m) => m.spec),
        callbacks: this.callbacks.map((c) => c.spec),
        trainer: defined(trainer.options),
      };
      this.tracker.logParams({ ...flattenConfig(setup as JsonObject), 'model.parameters': this.model.countParams() });
    }
    try {
      const history = await trainer.fit(train, validation);
      if (tracked) await this.tracker.endRun('FINISHED');
      return history;
    } catch (e) {
      if (tracked) await this.tracker.endRun('FAILED', e instanceof Error ? e.message : String(e)).catch(() => undefined);
      throw e;
    }
  }

  /** Mean loss and metrics over `data`, in inference mode (dropout off). */
  evaluate(data: FitData, options: Pick<LearnerTrainerOptions, 'evalBatchSize'> = {}): Promise<Logs> {
    const ds = inMemoryDataset(data, 'evaluation', 'data');
    checkInputShape(this.model, ds);
    return this.trainer(options, new Rng(0)).evaluate(ds);
  }

  /** The model's outputs for the inputs `x`, in inference mode; a new tensor the caller disposes. */
  predict(x: ArrayOrTensor, options: Pick<LearnerTrainerOptions, 'evalBatchSize'> = {}): tf.Tensor {
    const { t, made } = asTensor(x);
    try {
      return this.trainer(options, new Rng(0)).predict(t);
    } finally {
      if (made) t.dispose();
    }
  }

  /**
   * Writes the model (its config and weights) to `dir`; `loadModel(dir, registry)` reads it back. Await it: on a
   * backend that reads asynchronously (webgpu) the weights are fetched to the host first ({@link readToHost}); on
   * the others the files are written before it returns, as when it returned nothing.
   */
  save(dir: string): Promise<void> {
    if (!readsAsynchronously()) {
      saveModel(this.model, dir);
      return Promise.resolve();
    }
    return readToHost(this.model).then(() => saveModel(this.model, dir));
  }

  /** Releases the optimizer's state (its moment estimates); the model stays usable and is the caller's to dispose. */
  dispose(): void {
    this.optimizer.dispose();
  }
}
