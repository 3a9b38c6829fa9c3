/**
 * Injection tokens. Every constructor parameter of an injectable class names its token explicitly with
 * `@inject(TOKENS.X)`: vitest and tsx compile with esbuild, which emits no decorator metadata, so tsyringe
 * could not infer types (an inherited constructor would silently receive `undefined`).
 */
import type { InjectionToken } from 'tsyringe';
import type {
  Augmentation, Backend, Callback, Dataset, DataSource, LearningRateSchedule, Loss, Metric, Model, Optimizer,
  ParallelismStrategy, PluginSpec, Tracker,
} from './interfaces';
import type { Rng } from './random';
import type { PluginKind, PluginKinds, PluginRegistry } from './registry';
import type { ExperimentConfig, TrainerOptions } from './config';

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
  /** May be absent from a config; then a constant schedule at the optimizer's rate is registered. */
  Schedule: t<LearningRateSchedule>('Schedule'),
  Metrics: t<Metric[]>('Metrics'),
  Callbacks: t<Callback[]>('Callbacks'),
  /** Applied in order to every training batch's inputs (empty when the config names none). */
  Augmentations: t<Augmentation[]>('Augmentations'),
  Tracker: t<Tracker>('Tracker'),
  Parallelism: t<ParallelismStrategy>('Parallelism'),
  DataSource: t<DataSource>('DataSource'),
  TrainData: t<Dataset>('TrainData'),
  ValidationData: t<Dataset | null>('ValidationData'),
  TestData: t<Dataset | null>('TestData'),
} as const;

/** One factory token per plugin kind (layers, activations, initializers and regularizers are built this way). */
export const FACTORY_TOKENS: { [K in PluginKind]: InjectionToken<PluginFactory<K>> } = {
  layer: t('Factory.layer'),
  activation: t('Factory.activation'),
  loss: t('Factory.loss'),
  optimizer: t('Factory.optimizer'),
  regularizer: t('Factory.regularizer'),
  initializer: t('Factory.initializer'),
  schedule: t('Factory.schedule'),
  metric: t('Factory.metric'),
  callback: t('Factory.callback'),
  tracker: t('Factory.tracker'),
  parallelism: t('Factory.parallelism'),
  backend: t('Factory.backend'),
  dataset: t('Factory.dataset'),
  augmentation: t('Factory.augmentation'),
};
