/**
 * The training engine: fit / evaluate / predict over a {@link Model} with an injected loss, optimizer, schedule,
 * metrics, callbacks, tracker and strategy. Everything it uses comes in one {@link TrainerComponents} object, so a
 * run is assembled by a container (see `run.ts`, token `TOKENS.TrainerComponents`) and a test can assemble one by
 * hand. It knows no parallel algorithm: the {@link Strategy} sets ranks up, shards the data and computes (and
 * reduces) each step's gradients.
 */
import * as tf from '@tensorflow/tfjs-core';
import { inject, injectable } from 'tsyringe';
import { carriedStateTensors, readToHost } from './backend';
import type { Checkpoint, TrainerSnapshot } from './checkpoint';
import type { TrainerOptions } from './config';
import { batchesOf, bucketedBatches, epochOrder, mixSeed } from './data';
import { ConfigError, NonFiniteError } from './errors';
import { applyMasks } from './masks';
import { yieldToEventLoop } from './signals';
import type {
  Augmentation,
  Batch,
  Callback,
  JsonObject,
  Dataset,
  LearningRateSchedule,
  Logs,
  Loss,
  Metric,
  Model,
  Optimizer,
  Parameter,
  StepGradients,
  Strategy,
  StrategyHost,
  Tracker,
  TrainingState,
} from './interfaces';
import type { Rng } from './random';
import { writeWeights } from './serialization';
import { TOKENS } from './tokens';

/** The squared global L2 norm of `grads`, Σ‖g‖² (0 for none: a rank's ZeRO shard may be empty). */
export function squaredNorm(grads: Record<string, tf.Tensor>): tf.Scalar {
  return tf.tidy(() => {
    const parts = Object.values(grads);
    return parts.length ? (tf.addN(parts.map((g) => tf.sum(tf.square(g)))) as tf.Scalar) : tf.scalar(0);
  });
}

/**
 * Gradient clipping: each element to [−clipValue, clipValue], then all gradients scaled by
 * min(1, clipNorm / ‖g‖) where ‖g‖ is the global L2 norm over every gradient (Pascanu et al. 2013, Algorithm 1).
 * `globalSquaredNorm`, when given, is ‖g‖² of the whole gradient of which `grads` are a part (a ZeRO shard; already
 * clipped by value, as these are by then): the scale is then the whole gradient's. Returns new tensors; the caller
 * disposes both the inputs and the outputs.
 */
export function clipGradients(
  grads: Record<string, tf.Tensor>,
  opts: { clipNorm?: number; clipValue?: number },
  globalSquaredNorm?: number,
): Record<string, tf.Tensor> {
  return tf.tidy(() => {
    let out = Object.fromEntries(
      Object.entries(grads).map(([k, g]) => [k, opts.clipValue !== undefined ? tf.clipByValue(g, -opts.clipValue, opts.clipValue) : tf.clone(g)]),
    );
    if (opts.clipNorm !== undefined) {
      const norm = tf.sqrt(globalSquaredNorm !== undefined ? tf.scalar(globalSquaredNorm) : squaredNorm(out));
      const scale = tf.minimum(1, tf.div(opts.clipNorm, tf.maximum(norm, 1e-12)));
      out = Object.fromEntries(Object.entries(out).map(([k, g]) => [k, tf.mul(g, scale)]));
    }
    return out;
  });
}

/**
 * {@link clipGradients} of a step's gradients, once: by the norm of the whole gradient, summed across the ranks
 * through `step.globalSquaredNorm` when the strategy gave this rank only a part of it. Null when nothing clips.
 */
async function clipStep(step: StepGradients, opts: { clipNorm?: number; clipValue?: number }): Promise<Record<string, tf.Tensor> | null> {
  const { clipNorm, clipValue } = opts;
  if (clipNorm === undefined && clipValue === undefined) return null;
  if (clipNorm === undefined || !step.globalSquaredNorm) return clipGradients(step.grads, { clipNorm, clipValue });
  const byValue = clipValue !== undefined ? clipGradients(step.grads, { clipValue }) : null;
  try {
    const part = byValue ?? step.grads;
    const local = squaredNorm(part);
    const sq = (await local.data().finally(() => local.dispose()))[0]!; // asynchronously: webgpu has no synchronous read
    return clipGradients(part, { clipNorm }, await step.globalSquaredNorm(sq));
  } finally {
    if (byValue) tf.dispose(Object.values(byValue));
  }
}

export interface History {
  epochs: Logs[];
  /** Optimizer steps taken when training ended. */
  step: number;
  /** The epoch whose weights a callback put back at the end (the best, possibly the last), else null ({@link TrainingState.restoredEpoch}). */
  restoredEpoch: number | null;
}

/**
 * The logs of the epoch whose weights a run ended with: the restored epoch's (early stopping with `restoreBest`),
 * else the last epoch's; empty when no epoch ran.
 */
export function finalEpochLogs(history: readonly Logs[], restoredEpoch: number | null): Logs {
  return (restoredEpoch !== null ? history[restoredEpoch - 1] : undefined) ?? history.at(-1) ?? {};
}

export interface FitOptions {
  /** Called with the trainer's snapshot whenever a checkpoint is due; the caller adds tensors and writes it. */
  checkpointer?: (snapshot: TrainerSnapshot) => void | Promise<void>;
  /** A checkpoint to continue from. */
  resume?: Checkpoint;
  /**
   * Polled after every step, once the event loop has had a turn (so a signal's listener can run): when it returns
   * true, training stops there, after writing a checkpoint of that position (with `checkpointer`). See core/signals.ts.
   */
  stop?: () => boolean;
}

/** Everything a {@link Trainer} uses, by name: what the container's `TOKENS.TrainerComponents` provider assembles. */
export interface TrainerComponents {
  model: Model;
  loss: Loss;
  optimizer: Optimizer;
  /** Sets the optimizer's rate before every step; none: the optimizer's own rate throughout. */
  schedule?: LearningRateSchedule | null;
  metrics?: Metric[];
  callbacks?: Callback[];
  tracker: Tracker;
  strategy: Strategy;
  /** The run's stream: the trainer forks its data-order, forward-pass and augmentation streams from it, in that order. */
  rng: Rng;
  options: TrainerOptions;
  /** Applied in order to every training batch's inputs. */
  augmentations?: Augmentation[];
}

@injectable()
export class Trainer implements StrategyHost {
  readonly model: Model;
  readonly loss: Loss;
  readonly optimizer: Optimizer;
  readonly schedule: LearningRateSchedule | null;
  readonly metrics: Metric[];
  readonly callbacks: Callback[];
  readonly tracker: Tracker;
  readonly strategy: Strategy;
  readonly options: TrainerOptions;
  readonly augmentations: Augmentation[];
  /** Stream for dropout masks and other randomness inside the forward pass. */
  readonly forwardRng: Rng;
  /** Seed of the data order: epoch e's permutation depends only on (dataSeed, e). */
  private readonly dataSeed: number;
  /** The last finite training loss, reported when a later one is not. */
  private lastFiniteLoss: number | null = null;
  /** Stream for data augmentation, separate so that adding an augmentation does not change dropout masks. */
  private readonly augmentRng: Rng;

  constructor(@inject(TOKENS.TrainerComponents) components: TrainerComponents) {
    const { rng } = components;
    ({ model: this.model, loss: this.loss, optimizer: this.optimizer, tracker: this.tracker, strategy: this.strategy, options: this.options } = components);
    this.schedule = components.schedule ?? null;
    this.metrics = components.metrics ?? [];
    this.callbacks = components.callbacks ?? [];
    this.augmentations = components.augmentations ?? [];
    this.dataSeed = rng.fork().seed;
    this.forwardRng = rng.fork();
    this.augmentRng = rng.fork();
  }

  /** The batch with every augmentation applied to its inputs, in order (training batches only). */
  private augment(batch: Batch): Batch {
    if (this.augmentations.length === 0) return batch;
    const x = tf.tidy(() => this.augmentations.reduce((v, a) => a.apply(v, this.augmentRng), batch.x));
    batch.x.dispose();
    return { ...batch, x };
  }

  /**
   * One optimizer step on `batch`, or on several micro-batches whose gradients are averaged (weighted by their sizes)
   * before the step: gradient accumulation, where k micro-batches of n give the update of one batch of k·n. The
   * caller disposes the batches. Returns the mean loss. The strategy computes the step's gradients (and reduces them
   * across ranks, so every rank takes the same step); clipping and the optimizer step follow here.
   */
  async trainStep(
    batch: Batch | Batch[],
    state?: Pick<TrainingState, 'step' | 'epoch'> & Partial<Pick<TrainingState, 'epochs' | 'stepsPerEpoch'>>,
  ): Promise<number> {
    if (this.schedule && state) {
      const planned = state.epochs !== undefined && state.stepsPerEpoch !== undefined ? state.epochs * state.stepsPerEpoch : undefined;
      this.optimizer.learningRate = this.schedule.rate(state.step, state.epoch, planned);
    }
    const stepGrads = await this.strategy.gradients(Array.isArray(batch) ? batch : [batch], this, state);
    const { loss, params, grads } = stepGrads;
    try {
      const clipped = await clipStep(stepGrads, this.options);
      this.optimizer.step(params, clipped ?? grads);
      if (clipped) tf.dispose(Object.values(clipped));
      applyMasks(params); // pruned weights stay 0 whatever the optimizer's moments say
      return loss;
    } finally {
      tf.dispose(Object.values(grads));
    }
  }

  /**
   * The single-process step's gradients ({@link StrategyHost.localGradients}): of every trainable parameter, on each
   * micro-batch, summed with weights proportional to their sizes. The caller owns (and disposes) the gradients.
   */
  async localGradients(micro: Batch[], state?: Pick<TrainingState, 'step' | 'epoch'>): Promise<StepGradients> {
    const params = this.model.parameters().filter((p) => p.trainable);
    const total = micro.reduce((n, b) => n + b.x.shape[0]!, 0);
    let sum: Record<string, tf.Tensor> | null = null;
    let lossSum = 0;
    try {
      for (const b of micro) {
        const { loss, grads } = await this.gradients(b, params, state);
        const w = b.x.shape[0]! / total;
        lossSum += loss * w;
        if (micro.length === 1) {
          sum = grads; // a single batch: its gradients as they are
          continue;
        }
        const prev: Record<string, tf.Tensor> | null = sum;
        sum = tf.tidy(() =>
          Object.fromEntries(params.map((p) => [p.name, prev ? tf.add(prev[p.name]!, tf.mul(grads[p.name]!, w)) : tf.mul(grads[p.name]!, w)])),
        );
        tf.dispose(Object.values(grads));
        if (prev) tf.dispose(Object.values(prev));
      }
      return { loss: lossSum, params, grads: sum! };
    } catch (e) {
      if (sum) tf.dispose(Object.values(sum));
      throw e;
    }
  }

  /**
   * What a skipped step (`onNonFinite: 'skip'`) must leave as it was, taken before the step: the model's buffers
   * (batch norm's moving statistics, updated by the forward pass: one batch of inf or NaN would poison them for every
   * later evaluation), the state its stateful layers carry to the next batch, and the metrics' sums (updated by each
   * finite micro-batch of an accumulated step). The optimizer needs nothing: the step throws before it.
   */
  private async stepUndo(): Promise<{ restore(): void; dispose(): void }> {
    const buffers = this.model.buffers();
    const saved = buffers.map((b) => tf.keep(tf.clone(b.variable)));
    await readToHost(carriedStateTensors(this.model)); // getState reads them synchronously (webgpu: the host copy)
    const carried = this.model.getState?.() ?? null;
    const metrics = this.metrics.map((m) => m.getState?.() ?? null);
    return {
      restore: () => {
        for (const [i, b] of buffers.entries()) b.variable.assign(saved[i]!);
        if (carried !== null) this.model.setState?.(carried);
        for (const [i, m] of this.metrics.entries()) if (metrics[i] !== null) m.setState?.(metrics[i]!);
      },
      dispose: () => tf.dispose(saved),
    };
  }

  async updateMetrics(yTrue: tf.Tensor, yPred: tf.Tensor): Promise<void> {
    for (const m of this.metrics) await m.update(yTrue, yPred);
  }

  /**
   * Loss and gradients (by parameter name) of one batch; updates the metrics. A non-finite loss or gradient throws
   * a {@link NonFiniteError} naming the step, the layers whose gradients are non-finite and the last finite loss.
   */
  private async gradients(
    batch: Batch,
    params: Parameter[],
    state?: Pick<TrainingState, 'step' | 'epoch'>,
  ): Promise<{ loss: number; grads: Record<string, tf.Tensor> }> {
    let yPred: tf.Tensor | undefined;
    const { value, grads } = tf.variableGrads(
      () => {
        const out = this.model.apply(batch.x, { training: true, rng: this.forwardRng });
        yPred = tf.keep(out);
        let l = this.loss.compute(batch.y, out, batch.x);
        for (const p of params) if (p.regularizer) l = tf.add(l, p.regularizer.penalty(p.variable));
        return l as tf.Scalar;
      },
      params.map((p) => p.variable),
    );
    const byName = Object.fromEntries(params.map((p) => [p.name, grads[p.variable.name]!]));
    try {
      // The loss and one sum per gradient in a single read from the backend: a sum is finite only if every element
      // is (an overflowing sum is reported too). Read with `await data()`: a GPU backend (webgpu) reads asynchronously.
      const stacked = tf.tidy(() => tf.stack([value, ...params.map((p) => tf.sum(byName[p.name]!))]));
      const read = await stacked.data().finally(() => stacked.dispose());
      const loss = read[0]!;
      const bad = params.filter((_, i) => !Number.isFinite(read[i + 1]!)).map((p) => p.name);
      if (!Number.isFinite(loss) || bad.length > 0) {
        const layers = [...new Set(bad.map((n) => n.slice(0, n.lastIndexOf('/'))))];
        throw new NonFiniteError(
          `non-finite ${Number.isFinite(loss) ? 'gradient' : `loss (${loss})`} at step ${state?.step ?? '?'} (epoch ${state?.epoch === undefined ? '?' : state.epoch + 1}); ` +
            `layers with non-finite gradients: ${layers.length ? layers.join(', ') : 'none'}; last finite loss: ${this.lastFiniteLoss ?? 'none yet'}`,
        );
      }
      this.lastFiniteLoss = loss;
      await this.updateMetrics(batch.y, yPred!);
      return { loss, grads: byName };
    } catch (e) {
      tf.dispose(Object.values(grads));
      throw e;
    } finally {
      value.dispose();
      yPred?.dispose();
    }
  }

  /**
   * Trains for `options.epochs` epochs. With `checkpointer`, saves a checkpoint every `checkpoint.everySteps` steps
   * and at the end of every epoch; with `resume`, continues from a checkpoint exactly (same data order, random
   * streams, optimizer state and running sums), so the result equals that of a run that never stopped.
   */
  async fit(train: Dataset, validation: Dataset | null = null, opts: FitOptions = {}): Promise<History> {
    const { epochs, logEvery } = this.options;
    const k = this.options.accumulateSteps;
    const stepsPerEpoch = this.stepsPerEpoch(train);
    const state: TrainingState = {
      model: this.model,
      optimizer: this.optimizer,
      epoch: 0,
      step: 0,
      epochs,
      stepsPerEpoch,
      stopTraining: false,
      restoredEpoch: null,
      isGlobalZero: this.strategy.isGlobalZero,
    };
    const history: History = { epochs: [], step: 0, restoredEpoch: null };
    const log = this.strategy.isGlobalZero;
    let sums = { loss: 0, count: 0, window: 0, windowCount: 0, skipped: 0 };
    let resumeBatch = -1;
    await this.each((c) => c.onTrainBegin?.(state));
    if (opts.resume) {
      const snap = this.restore(opts.resume);
      state.epoch = snap.epoch;
      state.step = snap.step;
      history.epochs.push(...snap.history);
      sums = { ...snap.sums };
      state.stopTraining = snap.stopped ?? false;
      // A checkpoint from an epoch's end (batch 0) starts the next epoch afresh; one from mid-epoch continues it.
      resumeBatch = snap.batch > 0 ? snap.batch : -1;
    }
    const snapshot = (epoch: number, batch: number): TrainerSnapshot => ({
      epoch,
      batch,
      step: state.step,
      sums: { ...sums },
      history: [...history.epochs],
      lastFiniteLoss: this.lastFiniteLoss,
      rng: { forward: this.forwardRng.getState(), augment: this.augmentRng.getState() },
      metrics: this.metrics.map((m) => m.getState?.() ?? null),
      callbacks: this.callbacks.map((c) => c.getState?.() ?? null),
      model: (this.model.getState?.() ?? {}) as JsonObject,
      stopped: state.stopTraining,
    });
    await this.strategy.setup(this);
    if (this.options.validateEvery && validation) {
      const lost = this.metrics.filter((m) => !m.getState || !m.setState).map((m) => `metric "${m.key}"`);
      if (lost.length)
        throw new ConfigError('trainer.validateEvery', `validating inside an epoch would lose ${lost.join(', ')} (no getState/setState to put it back)`);
    }
    const every = this.options.checkpoint?.everySteps;
    for (let epoch = state.epoch; epoch < epochs && !state.stopTraining; epoch++) {
      state.epoch = epoch;
      const resumed = resumeBatch >= 0;
      if (!resumed) {
        this.model.resetStates?.();
        for (const m of this.metrics) m.reset();
        sums = { loss: 0, count: 0, window: sums.window, windowCount: sums.windowCount, skipped: sums.skipped };
      }
      await this.each((c) => c.onEpochBegin?.(state));
      const all = this.epochBatches(train, epoch);
      for (let i = resumed ? resumeBatch : 0; i < all.length; i += k) {
        const group = all.slice(i, i + k);
        const batches = group.map((idx) => this.augment(train.batch(idx)));
        const n = group.reduce((a, idx) => a + idx.length, 0);
        let l: number;
        const undo = this.options.onNonFinite === 'skip' ? await this.stepUndo() : null;
        try {
          l = await this.trainStep(batches, state);
        } catch (e) {
          if (!(e instanceof NonFiniteError) || !undo) throw e;
          undo.restore();
          sums.skipped++;
          if (log) this.tracker.logMetrics({ skipped_batches: sums.skipped }, state.step);
          continue;
        } finally {
          undo?.dispose();
          for (const b of batches) tf.dispose([b.x, b.y]);
        }
        state.step++;
        sums.loss += l * n;
        sums.count += n;
        sums.window += l;
        sums.windowCount++;
        const logs: Logs = { loss: l, lr: this.optimizer.learningRate };
        if (log && state.step % logEvery === 0) {
          this.tracker.logMetrics({ batch_loss: sums.window / sums.windowCount, lr: this.optimizer.learningRate }, state.step);
          sums.window = sums.windowCount = 0;
        }
        await this.each((c) => c.onBatchEnd?.(state, logs));
        if (this.options.maxSteps !== undefined && state.step >= this.options.maxSteps) state.stopTraining = true;
        if (state.stopTraining) break;
        const validate = this.options.validateEvery;
        if (validation && validate && state.step % validate === 0 && i + k < all.length) await this.validateMidEpoch(validation, state.step);
        // Every rank synchronizes (a collective for ZeRO, pipeline and tensor parallelism), whether or not it is the
        // one that writes: only the global-zero rank has a checkpointer, and a collective it entered alone would hang.
        const due = !!every && state.step % every === 0 && i + k < all.length;
        if (due) await this.strategy.synchronize(this);
        const saved = due && !!opts.checkpointer;
        if (saved) {
          await readToHost(this.model);
          await opts.checkpointer!(snapshot(epoch, i + k));
        }
        if (opts.stop) await yieldToEventLoop();
        if (opts.stop?.()) {
          // A mid-epoch position, even after the epoch's last batch: resuming finishes the epoch (validation, logs).
          await this.strategy.teardown(this);
          if (opts.checkpointer && !saved) {
            await readToHost(this.model);
            await opts.checkpointer(snapshot(epoch, i + k));
          }
          history.step = state.step;
          return history;
        }
      }
      resumeBatch = -1;
      if (sums.count === 0 && sums.skipped > 0) {
        // Every batch was skipped: there is no loss to log (it read 0) and nothing was learnt.
        throw new NonFiniteError(
          `every batch of epoch ${epoch + 1} had a non-finite loss or gradient and was skipped (trainer.onNonFinite "skip"); last finite loss: ${this.lastFiniteLoss ?? 'none yet'}`,
        );
      }
      await this.strategy.synchronize(this); // the whole model, current, for validation, callbacks and checkpoints
      const logs: Logs = { loss: sums.loss / Math.max(sums.count, 1) };
      for (const m of this.metrics) logs[m.key] = m.result();
      if (validation) for (const [key, v] of Object.entries(await this.evaluate(validation))) logs[`val_${key}`] = v;
      await this.each((c) => c.onEpochMetrics?.(state, logs));
      if (log) this.tracker.logMetrics({ ...logs, epoch: epoch + 1 }, state.step);
      history.epochs.push(logs);
      await this.each((c) => c.onEpochEnd?.(state, logs));
      if (opts.checkpointer) {
        this.model.resetStates?.(); // the next epoch starts from zero state anyway
        await readToHost(this.model);
        await opts.checkpointer(snapshot(epoch + 1, 0));
      }
    }
    await this.strategy.teardown(this);
    await this.each((c) => c.onTrainEnd?.(state, history.epochs.at(-1) ?? {}));
    history.step = state.step;
    history.restoredEpoch = state.restoredEpoch;
    return history;
  }

  /** The batches of epoch `epoch`: this rank's shard of the epoch's order, in batches (bucketed by length if asked). */
  private epochBatches(train: Dataset, epoch: number): Int32Array[] {
    const { batchSize, shuffle, bucketByLength } = this.options;
    const order = this.strategy.shard(epochOrder(train.size, this.dataSeed, epoch, shuffle));
    if (!bucketByLength) return [...batchesOf(order, batchSize)];
    if (!train.lengths) throw new ConfigError('trainer.bucketByLength', `the training set "${train.name}" does not give its examples' lengths`);
    return bucketedBatches(order, train.lengths(), batchSize, bucketByLength.poolBatches, mixSeed(this.dataSeed, 0x6275 + epoch));
  }

  /** Optimizer steps in one epoch over `train` (the last batch may be smaller; groups of `accumulateSteps`). */
  stepsPerEpoch(train: Dataset): number {
    return Math.ceil(Math.ceil(this.strategy.shardSize(train.size) / this.options.batchSize) / this.options.accumulateSteps);
  }

  /** Puts the trainer, model and optimizer back into a checkpoint's state; returns its loop position. */
  private restore(ckpt: Checkpoint): TrainerSnapshot {
    const snap = ckpt.trainer;
    writeWeights([...this.model.parameters(), ...(this.model.buffers?.() ?? [])], ckpt.weights, 'checkpoint');
    this.optimizer.setState(ckpt.optimizer, this.model.parameters());
    this.forwardRng.setState(snap.rng.forward!);
    this.augmentRng.setState(snap.rng.augment!);
    this.lastFiniteLoss = snap.lastFiniteLoss;
    this.metrics.forEach((m, i) => snap.metrics[i] !== null && m.setState?.(snap.metrics[i]!));
    this.callbacks.forEach((c, i) => snap.callbacks[i] != null && c.setState?.(snap.callbacks[i]!)); // one added on a resume starts fresh
    this.model.setState?.(snap.model);
    return snap;
  }

  /**
   * Mean loss and metrics over `data`, in inference mode (dropout off), from freshly reset recurrent states. Values are
   * read with `await data()`, which a GPU backend (webgpu) needs.
   */
  async evaluate(data: Dataset): Promise<Logs> {
    this.model.resetStates?.();
    for (const m of this.metrics) m.reset();
    let sum = 0;
    for (const idx of batchesOf(epochOrder(data.size, 0, 0, false), this.options.evalBatchSize)) {
      const batch = data.batch(idx);
      try {
        const yPred = tf.tidy(() => this.model.apply(batch.x, { training: false, rng: this.forwardRng }));
        try {
          const loss = tf.tidy(() => this.loss.compute(batch.y, yPred, batch.x));
          sum += (await loss.data().finally(() => loss.dispose()))[0]! * idx.length;
          for (const m of this.metrics) await m.update(batch.y, yPred);
        } finally {
          yPred.dispose();
        }
      } finally {
        tf.dispose([batch.x, batch.y]);
      }
    }
    const logs: Logs = { loss: sum / Math.max(data.size, 1) };
    for (const m of this.metrics) logs[m.key] = m.result();
    return logs;
  }

  /**
   * `trainer.validateEvery`: evaluates `validation` inside an epoch and logs `val_*` at `step`, then puts back what
   * evaluation resets (the epoch's running metrics, the model's carried state), so the epoch continues as if it had
   * not happened.
   */
  private async validateMidEpoch(validation: Dataset, step: number): Promise<void> {
    await this.strategy.synchronize(this);
    await readToHost(this.model); // getState reads the carried state synchronously (webgpu: from the host copy), as a checkpoint does
    const metrics = this.metrics.map((m) => m.getState?.() ?? null);
    const carried = this.model.getState?.();
    const logs = await this.evaluate(validation);
    this.metrics.forEach((m, i) => metrics[i] !== null && m.setState?.(metrics[i]!));
    if (carried !== undefined) this.model.setState?.(carried);
    if (this.strategy.isGlobalZero) this.tracker.logMetrics(Object.fromEntries(Object.entries(logs).map(([k, v]) => [`val_${k}`, v])), step);
  }

  /** Model outputs for `x`, computed in batches of `evalBatchSize`, in inference mode. */
  predict(x: tf.Tensor): tf.Tensor {
    const n = x.shape[0]!;
    const bs = this.options.evalBatchSize;
    const parts: tf.Tensor[] = [];
    for (let s = 0; s < n; s += bs) {
      parts.push(tf.tidy(() => this.model.apply(tf.slice(x, s, Math.min(bs, n - s)), { training: false, rng: this.forwardRng })));
    }
    const out = tf.concat(parts, 0);
    tf.dispose(parts);
    return out;
  }

  private async each(f: (c: Callback) => void | Promise<void>): Promise<void> {
    for (const c of this.callbacks) await f(c);
  }
}
