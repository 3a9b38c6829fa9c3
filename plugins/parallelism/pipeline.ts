/**
 * Pipeline parallelism (GPipe, Huang et al. 2019): a sequential model cut into contiguous stages, stage s on rank s
 * of the given communicator. A batch is split into micro-batches; in the forward phase stage s receives each
 * micro-batch's activation from stage s−1, applies its layers and sends the result on; the last stage computes the
 * loss. In the backward phase (micro-batches in reverse order) each stage receives dL/d(its output) from the next
 * stage, recomputes its forward pass from the stored input (GPipe's re-materialisation: only stage inputs are
 * kept) and takes the vector-Jacobian product, which gives the gradients of its own parameters and the dL/d(its
 * input) that it sends back. Gradients are summed over micro-batches, each weighted by its share of the batch, so
 * a step's gradients are those of the whole model on the whole batch.
 *
 * Every rank builds the whole model from the same seed (so the stages start from one model's weights) and uses
 * only its stage's layers. Transfers are blocking and follow one fixed order on both sides of each link (all
 * forwards, then all backwards), so they cannot deadlock. A padding mask set in one stage (`ctx.mask`) does not
 * travel to the next.
 *
 * `PipelineStage` is the building block; the `pipeline` plugin (`"parallelism": {"type": "pipeline", ...}`) is the
 * {@link Strategy} that lets the trainer drive it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  ConfigError,
  definePlugin,
  NonFiniteError,
  type Batch,
  type Communicator,
  type Layer,
  type Loss,
  type Optimizer,
  type OptimizerState,
  type Parameter,
  type Rng,
  type StepGradients,
  type Strategy,
  type StrategyHost,
  type TrainingState,
} from '../../core';
import { broadcastParameters } from './data-parallel';
import { worldCommunicator } from './mpi-data-parallel';

/** What a pipeline cuts: a model that is a list of layers applied in order (a Sequential). */
export interface LayerList {
  readonly layers: readonly Layer[];
}

export interface PipelineOptions {
  /** Micro-batches per batch (GPipe's M); a batch smaller than this gives one example per micro-batch. */
  microBatches: number;
  /**
   * Index of the first layer of each stage after the first (stages − 1 increasing indices); default: layers split
   * as evenly as possible by count.
   */
  boundaries?: number[];
  /**
   * Every stage already holds rank 0's weights: setup broadcasts nothing (the hybrid strategy broadcasts them once
   * over its whole world, which covers this pipeline).
   */
  inSync?: boolean;
}

/** Transfers carry a header (rank and dimensions) before the data, so no stage needs to know another's shapes. */
const HEADER = 8;
const TAG_FORWARD = 11;
const TAG_BACKWARD = 12;
/** Optimizer state sent to the last stage for a checkpoint: a text header (its length, then its characters), then values. */
const TAG_STATE = 13;

/** Sends `text` to `dest`: its length, then its UTF-16 code units as floats (exact: each is below 2^16). */
async function sendText(comm: Communicator, text: string, dest: number): Promise<void> {
  await comm.send(Float32Array.of(text.length), dest, TAG_STATE);
  await comm.send(
    Float32Array.from({ length: text.length }, (_, i) => text.charCodeAt(i)),
    dest,
    TAG_STATE,
  );
}

async function receiveText(comm: Communicator, source: number): Promise<string> {
  const n = new Float32Array(1);
  await comm.recv(n, source, TAG_STATE);
  const codes = new Float32Array(n[0]!);
  await comm.recv(codes, source, TAG_STATE);
  let text = '';
  for (let i = 0; i < codes.length; i += 4096) text += String.fromCharCode(...codes.subarray(i, i + 4096));
  return text;
}

export class PipelineStage {
  readonly stage: number;
  readonly stages: number;
  /** This stage's layers. */
  readonly layers: Layer[];
  /** Index of each stage's first layer, and the number of layers at the end. */
  private readonly starts: number[];

  constructor(
    private readonly model: LayerList,
    private readonly comm: Communicator,
    private readonly loss: Loss,
    private readonly opts: PipelineOptions,
  ) {
    this.stages = comm.worldSize;
    this.stage = comm.rank;
    const n = model.layers.length;
    if (this.stages > n) throw new ConfigError('pipeline', `${this.stages} stages but the model has only ${n} layers`);
    if (!Number.isInteger(opts.microBatches) || opts.microBatches < 1)
      throw new ConfigError('pipeline.microBatches', `expected a positive integer, got ${opts.microBatches}`);
    const b = opts.boundaries ?? Array.from({ length: this.stages - 1 }, (_, i) => Math.round(((i + 1) * n) / this.stages));
    if (b.length !== this.stages - 1 || b.some((x, i) => !Number.isInteger(x) || x <= (i === 0 ? 0 : b[i - 1]!) || x >= n)) {
      throw new ConfigError('pipeline.boundaries', `expected ${this.stages - 1} increasing layer indices in 1..${n - 1}, got [${b.join(', ')}]`);
    }
    this.starts = [0, ...b, n];
    this.layers = this.layersOf(this.stage);
  }

  /** The layers of stage `s`. */
  layersOf(s: number): Layer[] {
    return this.model.layers.slice(this.starts[s], this.starts[s + 1]);
  }

  /**
   * Makes every rank's copy of the whole model current: each stage broadcasts its layers' parameters and buffers
   * (only its own rank updated them). Collective: every rank calls it.
   */
  async gatherWeights(): Promise<void> {
    for (let s = 0; s < this.stages; s++) {
      const layers = this.layersOf(s);
      await broadcastParameters(
        this.comm,
        layers.flatMap((l) => [...l.parameters(), ...(l.buffers?.() ?? [])]),
        s,
      );
    }
  }

  get isFirst(): boolean {
    return this.stage === 0;
  }

  get isLast(): boolean {
    return this.stage === this.stages - 1;
  }

  /** This stage's trainable parameters: the ones its optimizer updates. */
  parameters(): Parameter[] {
    return this.layers.flatMap((l) => l.parameters()).filter((p) => p.trainable);
  }

  /**
   * One GPipe pass over `batch` (every rank passes the same batch: the first stage reads `x`, the last `y`).
   * Returns the gradients of the mean loss (plus every regularization penalty, each added by the stage that owns
   * the parameter) with respect to this stage's parameters (the caller disposes them) and, on the last stage, the
   * mean loss without penalties (null elsewhere). On the last stage `onOutput` (if given) sees each micro-batch's
   * targets and the model's outputs (to update training metrics).
   */
  async gradients(
    batch: Batch,
    rng: Rng,
    onOutput?: (y: tf.Tensor, out: tf.Tensor) => void | Promise<void>,
  ): Promise<{ loss: number | null; grads: Record<string, tf.Tensor> }> {
    const params = this.parameters();
    const total = batch.x.shape[0]!;
    const m = Math.min(this.opts.microBatches, total);
    const sizes = Array.from({ length: m }, (_, i) => Math.floor(total / m) + (i < total % m ? 1 : 0));
    const inputs: tf.Tensor[] = [];
    const rngStates = [];
    const dInputs: (tf.Tensor | null)[] = [];
    let grads: Record<string, tf.Tensor> = {};
    let lossSum = 0;
    const accumulate = (g: Record<string, tf.Tensor>) => {
      const prev = grads;
      grads = Object.fromEntries(params.map((p) => [p.name, prev[p.name] ? tf.add(prev[p.name]!, g[p.name]!) : g[p.name]!]));
      for (const p of params) if (prev[p.name]) tf.dispose([prev[p.name]!, g[p.name]!]);
    };
    try {
      // Forward phase: micro-batches in order.
      for (let i = 0, start = 0; i < m; start += sizes[i]!, i++) {
        const input = this.isFirst ? tf.slice(batch.x, start, sizes[i]) : await this.receive(this.stage - 1, TAG_FORWARD);
        inputs.push(input);
        rngStates.push(rng.getState());
        if (!this.isLast) {
          const out = tf.tidy(() => this.apply(input, rng));
          try {
            await this.transmit(out, this.stage + 1, TAG_FORWARD);
          } finally {
            out.dispose();
          }
        } else {
          const y = tf.slice(batch.y, start, sizes[i]);
          try {
            const w = sizes[i]! / total;
            let kept: tf.Tensor | undefined;
            const r = await this.vjp(input, params, rng, w, (out) => {
              if (onOutput) kept = tf.keep(out);
              return this.loss.compute(y, out);
            });
            if (kept) {
              try {
                await onOutput!(y, kept);
              } finally {
                kept.dispose();
              }
            }
            lossSum += r.value * w;
            accumulate(r.grads);
            dInputs.push(r.dx);
          } finally {
            y.dispose();
          }
        }
      }
      const afterForward = rng.getState();
      // Backward phase: micro-batches in reverse order.
      for (let i = m - 1; i >= 0; i--) {
        let dx: tf.Tensor | null;
        if (this.isLast) {
          dx = dInputs[i]!;
        } else {
          const dy = await this.receive(this.stage + 1, TAG_BACKWARD);
          rng.setState(rngStates[i]!);
          try {
            const r = await this.vjp(inputs[i]!, params, rng, sizes[i]! / total, (out) => tf.sum(tf.mul(out, dy)));
            accumulate(r.grads);
            dx = r.dx;
          } finally {
            dy.dispose();
          }
        }
        if (dx) {
          try {
            await this.transmit(dx, this.stage - 1, TAG_BACKWARD);
          } finally {
            dx.dispose();
            dInputs[i] = null;
          }
        }
      }
      rng.setState(afterForward);
      return { loss: this.isLast ? lossSum : null, grads };
    } catch (e) {
      tf.dispose(Object.values(grads));
      throw e;
    } finally {
      tf.dispose(inputs);
      tf.dispose(dInputs.filter((t): t is tf.Tensor => t !== null));
    }
  }

  /** {@link gradients}, then `optimizer.step` on this stage's parameters. Returns the loss on the last stage. */
  async trainStep(batch: Batch, optimizer: Optimizer, rng: Rng): Promise<number | null> {
    const { loss, grads } = await this.gradients(batch, rng);
    try {
      optimizer.step(this.parameters(), grads);
    } finally {
      tf.dispose(Object.values(grads));
    }
    return loss;
  }

  private apply(x: tf.Tensor, rng: Rng): tf.Tensor {
    const ctx = { training: true, rng };
    return this.layers.reduce((y, l) => l.apply(y, ctx), x);
  }

  /**
   * Gradients of `head(stage(x)) + w · penalties` with respect to this stage's parameters and (except on the first
   * stage) to `x`, and the value of head (before the last stage's weighting by w). With head = ⟨·, dy⟩ this is the
   * vector-Jacobian product with the upstream gradient dy; on the last stage head is the loss, weighted by w.
   */
  private async vjp(
    x: tf.Tensor,
    params: Parameter[],
    rng: Rng,
    w: number,
    head: (out: tf.Tensor) => tf.Scalar,
  ): Promise<{ value: number; grads: Record<string, tf.Tensor>; dx: tf.Tensor | null }> {
    const xVar = this.isFirst ? null : tf.variable(x, true);
    const vars = [...(xVar ? [xVar] : []), ...params.map((p) => p.variable)];
    if (vars.length === 0) return { value: 0, grads: {}, dx: null };
    let headValue: tf.Scalar | undefined;
    try {
      const { value, grads } = tf.variableGrads(() => {
        const out = this.apply(xVar ?? x, rng);
        let h: tf.Scalar = head(out);
        headValue = tf.keep(h);
        const reg = params.filter((p) => p.regularizer).map((p) => p.regularizer!.penalty(p.variable));
        if (this.isLast) h = tf.mul(h, w);
        if (reg.length) h = tf.add(h, tf.mul(tf.addN(reg), w));
        return h;
      }, vars);
      let v: number;
      try {
        v = (await headValue!.data())[0]!; // may be `value` itself: read it first (asynchronously: webgpu has no synchronous read)
      } finally {
        value.dispose();
      }
      return { value: v, grads: Object.fromEntries(params.map((p) => [p.name, grads[p.variable.name]!])), dx: xVar ? grads[xVar.name]! : null };
    } finally {
      xVar?.dispose();
      headValue?.dispose();
    }
  }

  private async transmit(t: tf.Tensor, dest: number, tag: number): Promise<void> {
    if (t.rank > HEADER - 1) throw new ConfigError('pipeline', `activations of rank ${t.rank} cannot cross a stage boundary (at most ${HEADER - 1})`);
    const header = new Float32Array(HEADER);
    header[0] = t.rank;
    t.shape.forEach((d, i) => (header[i + 1] = d));
    await this.comm.send(header, dest, tag);
    const values = await t.data();
    await this.comm.send(t.dtype === 'float32' ? (values as Float32Array) : Float32Array.from(values), dest, tag);
  }

  private async receive(source: number, tag: number): Promise<tf.Tensor> {
    const header = new Float32Array(HEADER);
    await this.comm.recv(header, source, tag);
    const shape = Array.from(header.subarray(1, 1 + header[0]!));
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    await this.comm.recv(data, source, tag);
    return tf.tensor(data, shape, 'float32');
  }
}

/**
 * GPipe as a training strategy: rank r of the world holds stage r and updates only that stage's parameters. Every
 * rank visits the whole data order (each batch goes through all stages); the last stage computes the loss and the
 * training metrics, so it is the rank that logs. The step's loss (with every stage's penalties) is all-reduced, so
 * callbacks decide the same on every rank (and a non-finite loss fails every rank at the same step). Before validation, at the end of every
 * epoch and after training, each stage broadcasts its weights, so every rank holds the whole current model to
 * evaluate and save. With checkpoints on, the last stage (which writes them) is also sent every stage's optimizer
 * state before each one, so a checkpoint is a single process's: on resume every rank reads it and keeps its stage's
 * part, and one process can resume it too. A world of one is a single stage (the whole model, in micro-batches).
 */
export class PipelineStrategy implements Omit<Strategy, 'spec'> {
  readonly rank: number;
  readonly worldSize: number;
  readonly isGlobalZero: boolean;
  private stage: PipelineStage | null = null;
  /** The last stage holds every stage's optimizer state (for a checkpoint) since the last step. */
  private consolidated = false;

  constructor(
    readonly comm: Communicator,
    private readonly opts: PipelineOptions,
    /**
     * Whether `synchronize` gathers the optimizer state on the last stage when checkpoints are on. A hybrid layout
     * turns it off in the pipelines whose last stage does not write checkpoints (replicas other than 0).
     */
    private readonly consolidateForCheckpoints = true,
  ) {
    this.rank = comm.rank;
    this.worldSize = comm.worldSize;
    this.isGlobalZero = comm.rank === comm.worldSize - 1;
  }

  async setup(host: StrategyHost): Promise<void> {
    const o = host.options;
    // The trainer's own micro-batches would be pipelined one after another; the pipeline has its own.
    if (o.accumulateSteps > 1)
      throw new ConfigError(
        'trainer.accumulateSteps',
        `is ${o.accumulateSteps}; the pipeline splits each batch itself (parallelism.microBatches): leave it at 1`,
      );
    if (this.worldSize > 1) {
      const refuse = (field: string, why: string) => new ConfigError(field, `is not supported by a pipeline of ${this.worldSize} stages: ${why}`);
      if (o.onNonFinite === 'skip') throw refuse('trainer.onNonFinite', '"skip" would need every stage to skip the same step; use "stop"');
      if (o.clipNorm !== undefined) throw refuse('trainer.clipNorm', "the global norm would need every stage's gradients (clipValue is per element and works)");
    }
    const layers = (host.model as Partial<LayerList>).layers;
    if (!Array.isArray(layers)) throw new ConfigError('parallelism', 'a pipeline cuts a model that is a list of layers (model.layers) into stages');
    this.stage = new PipelineStage({ layers }, this.comm, host.loss, this.opts);
    // Every stage starts from one model's weights (each rank built it from the same seed; this makes sure).
    if (this.worldSize > 1 && !this.opts.inSync) await broadcastParameters(this.comm, [...host.model.parameters(), ...(host.model.buffers?.() ?? [])], 0);
    // A restored checkpoint holds every stage's optimizer state: this rank keeps its stage's.
    this.keepStageState(host);
    this.consolidated = false;
  }

  /**
   * Drops the optimizer's slots of parameters outside this stage (a restored or consolidated whole state), so that
   * the rank keeps only what it steps. Nothing changes when the state is already this stage's.
   */
  private keepStageState(host: StrategyHost): void {
    if (this.worldSize === 1 || !this.stage) return;
    const state = host.optimizer.getState();
    const own = new Set(this.stage.parameters().map((p) => p.name));
    if (Object.keys(state.slots).every((name) => own.has(name))) return;
    const slots = Object.fromEntries(Object.entries(state.slots).filter(([name]) => own.has(name)));
    host.optimizer.setState({ ...state, slots }, host.model.parameters());
  }

  /**
   * Hands the rank that logs (the last stage, which writes checkpoints) every stage's optimizer state, in the format
   * of a single process (one slot per parameter, of its shape): each other stage sends it its slots, a header of
   * names and shapes and then the values. Collective over the pipeline's ranks; done once between two steps. The
   * last stage drops the other stages' slots again at the next step ({@link gradients}).
   */
  async consolidate(host: StrategyHost): Promise<void> {
    if (this.worldSize === 1 || this.consolidated) return;
    const writer = this.worldSize - 1;
    const state = host.optimizer.getState();
    if (this.rank !== writer) {
      const entries = Object.entries(state.slots).flatMap(([param, byKey]) => Object.entries(byKey).map(([slot, s]) => ({ param, slot, ...s })));
      await sendText(this.comm, JSON.stringify(entries.map(({ param, slot, shape }) => ({ param, slot, shape }))), writer);
      const values = new Float32Array(entries.reduce((n, e) => n + e.values.length, 0));
      let at = 0;
      for (const e of entries) {
        values.set(e.values, at);
        at += e.values.length;
      }
      if (values.length > 0) await this.comm.send(values, writer, TAG_STATE);
    } else {
      const slots: OptimizerState['slots'] = { ...state.slots };
      for (let s = 0; s < writer; s++) {
        const entries = JSON.parse(await receiveText(this.comm, s)) as { param: string; slot: string; shape: number[] }[];
        const sizes = entries.map((e) => e.shape.reduce((a, b) => a * b, 1));
        const values = new Float32Array(sizes.reduce((a, b) => a + b, 0));
        if (values.length > 0) await this.comm.recv(values, s, TAG_STATE);
        let at = 0;
        entries.forEach((e, i) => {
          (slots[e.param] = { ...slots[e.param] })[e.slot] = { shape: e.shape, values: values.slice(at, (at += sizes[i]!)) };
        });
      }
      host.optimizer.setState({ ...state, slots }, host.model.parameters());
    }
    this.consolidated = true;
  }

  /** Every stage sees every example. */
  shardSize(size: number): number {
    return size;
  }

  shard(order: Int32Array): Int32Array {
    return order;
  }

  async gradients(batches: Batch[], host: StrategyHost, state?: Pick<TrainingState, 'step' | 'epoch'>): Promise<StepGradients> {
    if (!this.stage) throw new Error('pipeline: gradients() before setup()');
    const stage = this.stage;
    if (this.consolidated) {
      this.keepStageState(host); // the last stage held every stage's state for a checkpoint: back to its own
      this.consolidated = false;
    }
    const { loss, grads } = await stage.gradients(batches[0]!, host.forwardRng, (y, out) => host.updateMetrics(y, out));
    // The step's loss as the trainer reports it (the data loss plus every penalty, as in a single process): the last
    // stage's loss plus each stage's penalties, summed by one all-reduce, so every rank has it.
    const penalties = stage.parameters().filter((p) => p.regularizer);
    let penalty = 0;
    if (penalties.length) {
      const sum = tf.tidy(() => tf.addN(penalties.map((p) => p.regularizer!.penalty(p.variable))));
      try {
        penalty = (await sum.data())[0]!;
      } catch (e) {
        tf.dispose(Object.values(grads));
        throw e;
      } finally {
        sum.dispose();
      }
    }
    const shared = Float32Array.of((loss ?? 0) + penalty);
    try {
      await this.comm.allReduce(shared);
    } catch (e) {
      tf.dispose(Object.values(grads));
      throw e;
    }
    if (!Number.isFinite(shared[0]!)) {
      tf.dispose(Object.values(grads));
      throw new NonFiniteError(
        `non-finite loss (${shared[0]}) at step ${state?.step ?? '?'} (epoch ${state?.epoch === undefined ? '?' : state.epoch + 1}) in a pipeline of ${this.worldSize} stages`,
      );
    }
    return { loss: shared[0]!, params: stage.parameters(), grads };
  }

  /**
   * Every rank gets the whole current model (each stage broadcasts its weights); with checkpoints on, the last stage
   * (the rank that writes them) also gets every stage's optimizer state ({@link consolidate}), so a checkpoint holds
   * the whole run's state, as a single process's does.
   */
  async synchronize(host: StrategyHost): Promise<void> {
    await this.gatherWeights();
    await this.checkpointState(host);
  }

  /** Every rank gets every stage's current weights (collective; nothing to do for one stage). */
  async gatherWeights(): Promise<void> {
    if (this.worldSize > 1) await this.stage?.gatherWeights();
  }

  /** {@link consolidate} when checkpoints are on and this pipeline's last stage writes them. */
  async checkpointState(host: StrategyHost): Promise<void> {
    if (this.worldSize > 1 && this.consolidateForCheckpoints && host.options.checkpoint?.enabled) await this.consolidate(host);
  }

  async teardown(host: StrategyHost): Promise<void> {
    await this.synchronize(host);
  }
}

export default definePlugin({
  kind: 'parallelism',
  name: 'pipeline',
  description: 'GPipe pipeline stages (Huang et al. 2019), one per MPI rank; a single stage without a launcher',
  schema: z.object({
    /** Micro-batches per batch (GPipe's M). */
    microBatches: z.number().int().positive().default(4),
    /** Index of the first layer of each stage after the first; default: layers split evenly by count. */
    boundaries: z.array(z.number().int().positive()).optional(),
  }),
  properties: [
    "N stages give the unsplit model's gradients; trained through the trainer, the weights of one process (mpi.test.ts)",
    "its checkpoints hold every stage's weights and optimizer state: resumed on N stages, bit-identical; by one process, within float32 rounding",
  ],
  create: (opts) => new PipelineStrategy(worldCommunicator('pipeline'), opts),
});
