/**
 * Hybrid parallelism: data × pipeline × tensor groups over one MPI world (as in Megatron-LM, Narayanan et al. 2021,
 * "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM", §2-3). The world's D·P·T ranks
 * are laid out as Megatron's rank generator lays them out (order tp-dp-pp): tensor fastest, then data, pipeline
 * slowest,
 *
 *     world rank = t + T·(d + D·p),    t = rank mod T,  d = ⌊rank / T⌋ mod D,  p = ⌊rank / (T·D)⌋,
 *
 * so the ranks of a tensor group are neighbours (one node, where the fast links are), and pipeline stages are
 * farthest apart (their point-to-point traffic is the smallest). Three MPI_Comm_split calls give each rank its groups:
 *
 * - `tensor`: the T ranks with this (d, p), ranked by t; the tensor-parallel layers (tensor-parallel.ts) are cut
 *   across it;
 * - `pipeline`: the P ranks with this (d, t), ranked by p: stage p of a GPipe pipeline (pipeline.ts) over it;
 * - `data`: the D ranks with this (p, t), ranked by d: the replicas of this rank's part of the model, each on its own
 *   shard of every epoch (replica d reads shard d); after a step their gradients are averaged in one all-reduce
 *   (data-parallel.ts), or reduce-scattered with `zero: 1` (ZeRO stage 1, zero.ts).
 *
 * The strategy is composed of the existing ones rather than re-implementing them: with P > 1 the pipeline's
 * {@link PipelineStrategy} runs over `pipeline` and its gradients (and loss) are then averaged over `data`; with
 * P = 1 it is the {@link DataParallelStrategy} over `data`. T > 1 shards the model over `tensor` in setup (and
 * makes it whole again in `synchronize`), as the `tensor-parallel` strategy does.
 *
 * The rank that logs is replica 0's last stage, tensor rank 0 (the last stage computes the loss and the metrics). It
 * also writes checkpoints, of the whole model as a single process would: before each, the tensor slices of the
 * weights and of the optimizer's slots are joined, ZeRO's moment shards gathered, and replica 0's other stages send it
 * their slots; on resume every rank reads the checkpoint and keeps its stage's part, cut as its tensor rank's slices.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError, definePlugin, type Batch, type Communicator, type StepGradients, type Strategy, type StrategyHost, type TrainingState } from '../../core';
import { averageAcrossRanks, broadcastParameters, DataParallelStrategy, shardOrder, shardSize } from './data-parallel';
import { MpiCommunicator, worldCommunicator } from './mpi-data-parallel';
import { type LayerList, PipelineStrategy } from './pipeline';
import {
  gatherWhole,
  isTensorParallel,
  refuseWithSlices,
  shardModel,
  setSplitSlots,
  shardOf,
  tensorParallelGroup,
  unshardModel,
  type TensorParallelGroup,
} from './tensor-parallel';
import { ZeroShards } from './zero';

export interface HybridOptions {
  /** D: data-parallel replicas. */
  data: number;
  /** P: pipeline stages. */
  pipeline: number;
  /** T: ranks each tensor-parallel layer is cut across. */
  tensor: number;
  /** GPipe's micro-batches per batch (used when pipeline > 1). */
  microBatches: number;
  /** First layer of each pipeline stage after the first (pipeline − 1 increasing indices); default: even split. */
  boundaries?: number[];
  /** ZeRO stage over the data groups: 1 shards the optimizer state of each stage's parameters over its D replicas. */
  zero?: 0 | 1;
}

/** A rank's place in the layout: data replica d, pipeline stage p, tensor rank t. */
export interface HybridCoordinates {
  d: number;
  p: number;
  t: number;
}

/** Checks that D·P·T is the world's size; names the fields and says how to launch otherwise. */
export function checkLayout(worldSize: number, o: Pick<HybridOptions, 'data' | 'pipeline' | 'tensor'>): void {
  const n = o.data * o.pipeline * o.tensor;
  if (n !== worldSize)
    throw new ConfigError(
      'parallelism',
      `data × pipeline × tensor = ${o.data} × ${o.pipeline} × ${o.tensor} = ${n} ranks, but this job has ${worldSize}` +
        (worldSize === 1 ? ' (it was not started by an MPI launcher)' : '') +
        `: launch ${n} ranks (mpirun -np ${n}, srun -n ${n}) or change parallelism.data, parallelism.pipeline or parallelism.tensor`,
    );
}

/** Where world rank `rank` sits: tensor fastest, then data, pipeline slowest (Megatron's tp-dp-pp order). */
export function coordinatesOf(rank: number, o: Pick<HybridOptions, 'data' | 'tensor'>): HybridCoordinates {
  return { t: rank % o.tensor, d: Math.floor(rank / o.tensor) % o.data, p: Math.floor(rank / (o.tensor * o.data)) };
}

/** The world rank at (d, p, t): the inverse of {@link coordinatesOf}. */
export function rankOf(c: HybridCoordinates, o: Pick<HybridOptions, 'data' | 'tensor'>): number {
  return c.t + o.tensor * (c.d + o.data * c.p);
}

/** The three groups of a rank. */
export interface HybridGroups {
  data: Communicator;
  pipeline: Communicator;
  tensor: Communicator;
}

/**
 * Splits `world` into this rank's data, pipeline and tensor groups (three MPI_Comm_split calls, collective over
 * the world). A group of one rank is a world of one (no communicator of its own is needed).
 */
export function splitGroups(world: Communicator, o: Pick<HybridOptions, 'data' | 'pipeline' | 'tensor'>): HybridGroups {
  checkLayout(world.worldSize, o);
  if (world.worldSize === 1) return { data: world, pipeline: world, tensor: world };
  if (!(world instanceof MpiCommunicator)) throw new Error('hybrid parallelism needs an MPI world (MPI_Comm_split) to form its groups');
  const { d, p, t } = coordinatesOf(world.rank, o);
  // Every rank takes part in every split (MPI_Comm_split is collective over the world), in the same order.
  const tensor = world.split(p * o.data + d, t);
  const data = world.split(p * o.tensor + t, d);
  const pipeline = world.split(d * o.tensor + t, p);
  return { data, pipeline, tensor };
}

/** Data × pipeline × tensor parallelism; see the top of this file. */
export class HybridStrategy implements Omit<Strategy, 'spec'> {
  readonly rank: number;
  readonly worldSize: number;
  readonly isGlobalZero: boolean;
  readonly coordinates: HybridCoordinates;
  readonly groups: HybridGroups;
  /** The pipeline (P > 1) or data-parallel (P = 1) strategy this one drives. */
  readonly inner: PipelineStrategy | DataParallelStrategy;
  private readonly tensorGroup: TensorParallelGroup;
  private sharded = false;
  /** The optimizer's slots of tensor-split parameters were made whole (for a checkpoint) and are cut at the next step. */
  private slotsWhole = false;
  /** ZeRO-1 over the data group for a pipeline stage's parameters (P > 1 with `zero: 1`). */
  private zero: ZeroShards | null = null;

  constructor(
    readonly world: Communicator,
    readonly opts: HybridOptions,
  ) {
    this.groups = splitGroups(world, opts);
    this.rank = world.rank;
    this.worldSize = world.worldSize;
    this.coordinates = coordinatesOf(world.rank, opts);
    const { d, p, t } = this.coordinates;
    this.isGlobalZero = d === 0 && t === 0 && p === opts.pipeline - 1;
    this.tensorGroup = tensorParallelGroup(this.groups.tensor);
    this.inner =
      opts.pipeline > 1
        ? // Only replica 0's tensor rank 0 pipeline ends in the rank that writes checkpoints: it alone gathers optimizer state.
          // inSync: setup broadcasts the weights over the whole world first, so the group's own broadcast is not needed.
          new PipelineStrategy(this.groups.pipeline, { microBatches: opts.microBatches, boundaries: opts.boundaries, inSync: true }, d === 0 && t === 0)
        : new DataParallelStrategy(this.groups.data, { zero: opts.zero, inSync: true });
  }

  async setup(host: StrategyHost): Promise<void> {
    const o = this.opts;
    const layers = (host.model as Partial<LayerList>).layers;
    if (o.pipeline > 1) {
      if (!Array.isArray(layers))
        throw new ConfigError('parallelism.pipeline', `is ${o.pipeline}: a pipeline cuts a model that is a list of layers (model.layers)`);
      if (o.pipeline > layers.length) throw new ConfigError('parallelism.pipeline', `is ${o.pipeline} stages, but the model has only ${layers.length} layers`);
      const b = o.boundaries;
      if (b && (b.length !== o.pipeline - 1 || b.some((x, i) => x <= (i === 0 ? 0 : b[i - 1]!) || x >= layers.length)))
        throw new ConfigError(
          'parallelism.boundaries',
          `expected ${o.pipeline - 1} increasing layer indices in 1..${layers.length - 1} (the first layer of each stage after the first), got [${b.join(', ')}]`,
        );
    } else if (o.boundaries) throw new ConfigError('parallelism.boundaries', 'cuts pipeline stages: it needs parallelism.pipeline > 1');
    if (o.tensor > 1) {
      refuseWithSlices(host, `parallelism.tensor = ${o.tensor}`);
      if (o.zero === 1)
        throw new ConfigError('parallelism.zero', `is not supported with parallelism.tensor = ${o.tensor}: ZeRO-1 with tensor-parallel slices is not built`);
    }
    if (this.worldSize > 1) {
      // One model's weights everywhere (each rank built it from the same seed, or restored the same checkpoint): the
      // only broadcast of setup, as it covers every group (the inner strategy is told its group is in sync).
      await broadcastParameters(this.world, [...host.model.parameters(), ...(host.model.buffers?.() ?? [])], 0);
    }
    await this.inner.setup(host);
    if (o.tensor > 1) {
      // A restored checkpoint's slots are whole: they are cut as the weights are (slots already cut stay as they are).
      const whole = new Map(host.model.parameters().map((p) => [p.name, p.variable.shape.join()]));
      const state = host.optimizer.getState();
      if (shardModel(host.model, this.tensorGroup) === 0)
        throw new ConfigError(
          'parallelism.tensor',
          `is ${o.tensor}: the model has no tensor-parallel layers to cut (column-parallel-dense, row-parallel-dense, parallel-transformer-block, ...)`,
        );
      if (isTensorParallel(host.loss)) host.loss.shard(this.tensorGroup);
      setSplitSlots(host, state, (slot, split, name) =>
        slot.shape.join() === whole.get(name) ? tf.tidy(() => shardOf(slot, split, this.tensorGroup)) : tf.clone(slot),
      );
      this.slotsWhole = false;
      this.sharded = true;
    }
    this.zero?.dispose();
    this.zero = null; // with P > 1 and zero: 1, made at the first step, from the stage's parameters
  }

  /** Every stage and tensor rank of replica d visits shard d of the epoch. */
  shardSize(size: number): number {
    return shardSize(size, this.opts.data);
  }

  shard(order: Int32Array): Int32Array {
    return shardOrder(order, this.groups.data);
  }

  async gradients(batches: Batch[], host: StrategyHost, state?: Pick<TrainingState, 'step' | 'epoch'>): Promise<StepGradients> {
    if (this.opts.tensor > 1 && !this.sharded) {
      shardModel(host.model, this.tensorGroup);
      if (isTensorParallel(host.loss)) host.loss.shard(this.tensorGroup);
      // Slots made whole for a checkpoint are cut again (every stage's, on the rank that was sent them all).
      if (this.slotsWhole) setSplitSlots(host, host.optimizer.getState(), (slot, split) => tf.tidy(() => shardOf(slot, split, this.tensorGroup)));
      this.slotsWhole = false;
      this.sharded = true;
    }
    if (this.opts.pipeline === 1) return this.inner.gradients(batches, host, state);
    await this.zero?.gather();
    const r = await this.inner.gradients(batches, host, state);
    if (this.opts.data === 1) return r;
    if (this.opts.zero === 1) {
      if (!this.zero) {
        this.zero = new ZeroShards(this.groups.data, r.params, host.optimizer);
        this.zero.shardState();
      }
      const { loss, grads } = await this.zero.reduceGradients(r.grads, r.loss);
      return { loss, grads, params: this.zero.shardParameters() };
    }
    try {
      const { grads, loss } = await averageAcrossRanks(this.groups.data, r.grads, r.loss);
      return { loss, grads, params: r.params };
    } catch (e) {
      tf.dispose(Object.values(r.grads));
      throw e;
    }
  }

  /**
   * The whole model on every rank: ZeRO's shards gathered, the stages' weights broadcast, the tensor slices joined.
   * With checkpoints on, the rank that writes them also gets the whole optimizer state: ZeRO's moment shards are
   * gathered on each data group's rank 0, the slots of tensor-split parameters joined on every tensor rank, and replica
   * 0's other stages send theirs to its last stage.
   */
  async synchronize(host: StrategyHost): Promise<void> {
    const checkpoints = host.options.checkpoint?.enabled === true;
    await this.zero?.gather();
    if (checkpoints) await this.zero?.consolidate();
    const pipeline = this.inner instanceof PipelineStrategy ? this.inner : null;
    if (pipeline) await pipeline.gatherWeights();
    else await this.inner.synchronize(host);
    if (this.sharded) {
      // With checkpoints on, the optimizer's slots are made whole with the weights (each tensor rank gathers its stage's).
      const state = checkpoints ? host.optimizer.getState() : null;
      unshardModel(host.model);
      if (isTensorParallel(host.loss)) host.loss.unshard();
      if (state) {
        setSplitSlots(host, state, (slot, split) => gatherWhole(slot, split, this.tensorGroup));
        this.slotsWhole = true;
      }
      this.sharded = false;
    }
    // Then replica 0's stages send their (whole) state to the rank that writes checkpoints.
    if (pipeline) await pipeline.checkpointState(host);
  }

  async teardown(host: StrategyHost): Promise<void> {
    await this.synchronize(host);
    await this.inner.teardown(host);
    this.zero?.dispose();
    this.zero = null;
  }

  /**
   * Frees the groups' communicators that {@link splitGroups} made (MPI_Comm_free, collective: every rank disposes its
   * strategy, as every rank made it). The strategy is not used after it; a later fit needs a new one.
   */
  dispose(): void {
    this.zero?.dispose();
    this.zero = null;
    freeGroups(this.groups, this.world);
  }
}

/** Frees the communicators of `groups` that `splitGroups` split from `world` (in the order they were made). */
export function freeGroups(groups: HybridGroups, world: Communicator): void {
  for (const g of [groups.tensor, groups.data, groups.pipeline]) if (g !== world && g instanceof MpiCommunicator) g.free();
}

const positive = z.number().int().positive();

/**
 * `"parallelism": {"type": "hybrid", "data": 2, "pipeline": 2, "tensor": 1, "microBatches": 4}`: data × pipeline ×
 * tensor groups over the MPI world (D·P·T ranks), laid out tensor fastest, pipeline slowest (docs/parallelism.md
 * has the table of which rank is which).
 */
export default definePlugin({
  kind: 'parallelism',
  name: 'hybrid',
  description: 'data x pipeline x tensor parallelism over one MPI world (Megatron-LM layout: tensor fastest, pipeline slowest)',
  schema: z
    .object({
      /** Data-parallel replicas (D). */
      data: positive.default(1),
      /** Pipeline stages (P). */
      pipeline: positive.default(1),
      /** Ranks each tensor-parallel layer is cut across (T). */
      tensor: positive.default(1),
      /** GPipe's micro-batches per batch, with pipeline > 1. */
      microBatches: positive.default(4),
      /** First layer of each stage after the first; default: layers split evenly by count. */
      boundaries: z.array(positive).optional(),
      /** 1: ZeRO stage 1 over the data groups (optimizer state sharded over the D replicas). */
      zero: z.union([z.literal(0), z.literal(1)]).optional(),
    })
    .strict(),
  properties: [
    "a step on D replicas × P stages × T slices gives one process's gradients and weights on the combined batch (mpi.test.ts)",
    "its checkpoints hold the whole model's weights and optimizer state (every stage's, tensor slices joined): resumed on the same layout, bit-identical; by one process, within float32 rounding",
  ],
  create: (opts) => new HybridStrategy(worldCommunicator('hybrid'), opts),
});
