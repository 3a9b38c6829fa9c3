/**
 * Injection tokens: the components a run is assembled from. `buildRunContainer` (runtime/run.ts) registers a provider
 * (a factory, built from the config, that resolves what it needs by token and is cached per run) for each; a test or
 * a user replaces one component by registering another provider for its token (CONTRIBUTING.md, "The run
 * container"). Every constructor parameter of an injectable class names its token explicitly with
 * `@inject(TOKENS.X)`: vitest and tsx compile with esbuild, which emits no decorator metadata, so tsyringe could not
 * infer types (an inherited constructor would silently receive `undefined`).
 */
import type { InjectionToken } from 'tsyringe';
import type {
  Augmentation,
  Backend,
  Callback,
  Dataset,
  DataSource,
  LearningRateSchedule,
  Loss,
  Metric,
  Model,
  Optimizer,
  PluginSpec,
  Strategy,
  Tracker,
} from './interfaces';
import type { Rng } from './random';
import type { PluginKind, PluginKinds, PluginRegistry } from './registry';
import type { ExperimentConfig, TrainerOptions } from './config';
import type { TrainerComponents } from './trainer';

/** Builds a plugin of one kind from a spec: what a component injects when it needs to create plugins itself. */
export type PluginFactory<K extends PluginKind> = (spec: PluginSpec, path?: string) => PluginKinds[K];

const t = <T>(name: string): InjectionToken<T> => Symbol.for(`loom.${name}`) as InjectionToken<T>;

export const TOKENS = {
  Registry: t<PluginRegistry>('Registry'),
  Config: t<ExperimentConfig>('Config'),
  TrainerOptions: t<TrainerOptions>('TrainerOptions'),
  Rng: t<Rng>('Rng'),
  Backend: t<Backend>('Backend'),
  Model: t<Model>('Model'),
  Loss: t<Loss>('Loss'),
  Optimizer: t<Optimizer>('Optimizer'),
  /** Null when the config names none: the optimizer keeps its own rate. */
  Schedule: t<LearningRateSchedule | null>('Schedule'),
  Metrics: t<Metric[]>('Metrics'),
  Callbacks: t<Callback[]>('Callbacks'),
  /** Applied in order to every training batch's inputs (empty when the config names none). */
  Augmentations: t<Augmentation[]>('Augmentations'),
  Tracker: t<Tracker>('Tracker'),
  /** The config's `parallelism`: single-process, mpi-data-parallel or pipeline (see docs/parallelism.md). */
  Strategy: t<Strategy>('Strategy'),
  DataSource: t<DataSource>('DataSource'),
  TrainData: t<Dataset>('TrainData'),
  ValidationData: t<Dataset | null>('ValidationData'),
  TestData: t<Dataset | null>('TestData'),
  /** Everything the trainer takes, assembled from the tokens above; the `Trainer` class resolves with it. */
  TrainerComponents: t<TrainerComponents>('TrainerComponents'),
} as const;

/** The plugin kinds a run builds from its config (layers, activations, initializers and regularizers are the model's). */
export const RUN_PLUGIN_KINDS = ['dataset', 'loss', 'optimizer', 'schedule', 'metric', 'callback', 'tracker', 'parallelism', 'augmentation'] as const;
export type RunPluginKind = (typeof RUN_PLUGIN_KINDS)[number];

/**
 * One factory token per plugin kind a run builds: the run's providers build those plugins from the config through
 * these (the optimizer through `FACTORY_TOKENS.optimizer`, each tracker through `FACTORY_TOKENS.tracker`, ...). By
 * default a factory is `registry.create`; registering another for a kind changes how every plugin of that kind in
 * the run is built (wrapping each tracker, say). The model's layers build their sub-layers, initializers and
 * activations through their plugin context's factory (`PluginContext.create`), not through these.
 */
export const FACTORY_TOKENS: { [K in RunPluginKind]: InjectionToken<PluginFactory<K>> } = {
  dataset: t('Factory.dataset'),
  loss: t('Factory.loss'),
  optimizer: t('Factory.optimizer'),
  schedule: t('Factory.schedule'),
  metric: t('Factory.metric'),
  callback: t('Factory.callback'),
  tracker: t('Factory.tracker'),
  parallelism: t('Factory.parallelism'),
  augmentation: t('Factory.augmentation'),
};
