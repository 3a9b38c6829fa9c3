/**
 * Synchronous data parallelism as a {@link Strategy}, independent of how ranks talk (the {@link Communicator} does
 * that): every rank starts from rank 0's weights, visits its own shard of each epoch's order, and averages its
 * gradients with the other ranks' in one fused all-reduce per step before clipping and the optimizer step
 * (synchronous data-parallel SGD as in Goyal et al. 2017, "Accurate, Large Minibatch SGD"). Because each rank then
 * applies the same averaged gradient to the same weights with the same optimizer state, the ranks' weights stay
 * identical without further communication. Over a world of one it is plain single-process training (the
 * `single-process` strategy): every hook leaves the data and gradients as they are.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  ConfigError,
  type Batch,
  type Communicator,
  type Model,
  type Parameter,
  type StepGradients,
  type Strategy,
  type StrategyHost,
  type TrainerOptions,
  type TrainingState,
} from '../../core';
import { ZeroShards } from './zero';

/** Examples one rank visits per epoch: the same on every rank, so all take the same number of steps. */
export function shardSize(size: number, worldSize: number): number {
  return Math.floor(size / worldSize);
}

/**
 * This rank's share of an epoch's visiting order: positions i ≡ rank (mod worldSize), cut to
 * {@link shardSize} so every rank gets as many (the last `size mod worldSize` positions of the order are left out
 * this epoch; PyTorch's DistributedSampler with drop_last does the same). Every rank computes the same order from
 * (seed, epoch), so the shards are disjoint and together cover the order; batch b of all ranks together is batch b
 * of a single process with a batch worldSize times larger.
 */
export function shardOrder(order: Int32Array, world: Pick<Communicator, 'rank' | 'worldSize'>): Int32Array {
  const { rank, worldSize } = world;
  if (worldSize === 1) return order;
  const n = shardSize(order.length, worldSize);
  const out = new Int32Array(n);
  for (let j = 0; j < n; j++) out[j] = order[j * worldSize + rank]!;
  return out;
}

/**
 * Starts data-parallel training: checks that the trainer options allow it and overwrites every rank's weights
 * (parameters and buffers) with rank 0's, in one broadcast (none when `inSync`: the caller has broadcast them).
 */
export async function beginDataParallel(comm: Communicator, model: Model, options: Pick<TrainerOptions, 'onNonFinite'>, inSync = false): Promise<void> {
  if (comm.worldSize === 1) return;
  if (options.onNonFinite === 'skip') {
    // A rank that skips its step would leave the others waiting in an all-reduce it never joins.
    throw new ConfigError(
      'trainer.onNonFinite',
      `"skip" is not supported with ${comm.worldSize} ranks (a skipping rank would miss the gradient all-reduce); use "stop"`,
    );
  }
  if (!inSync) await broadcastParameters(comm, [...model.parameters(), ...(model.buffers?.() ?? [])], 0);
}

/** Overwrites every rank's values of `weights` (the same list on every rank) with rank `root`'s, in one broadcast. */
export async function broadcastParameters(comm: Communicator, weights: Parameter[], root: number): Promise<void> {
  const flat = new Float32Array(weights.reduce((n, p) => n + p.variable.size, 0));
  let offset = 0;
  for (const p of weights) {
    flat.set((await p.variable.data()) as Float32Array, offset); // asynchronously: webgpu has no synchronous read
    offset += p.variable.size;
  }
  await comm.broadcast(flat, root);
  offset = 0;
  for (const p of weights) {
    const values = flat.slice(offset, offset + p.variable.size);
    tf.tidy(() => p.variable.assign(tf.tensor(values, p.variable.shape, 'float32')));
    offset += p.variable.size;
  }
}

/**
 * Averages gradients (and the step's loss) over all ranks with ONE all-reduce: every gradient is copied into a
 * single Float32Array with the loss as its last element, summed across ranks, divided by the world size and cut
 * back into tensors. Disposes `grads` once the new tensors exist (not when it throws: the caller still owns them).
 */
export async function averageAcrossRanks(
  comm: Communicator,
  grads: Record<string, tf.Tensor>,
  loss: number,
): Promise<{ grads: Record<string, tf.Tensor>; loss: number }> {
  const entries = Object.entries(grads);
  const total = entries.reduce((n, [, g]) => n + g.size, 0);
  const flat = new Float32Array(total + 1);
  let offset = 0;
  for (const [, g] of entries) {
    flat.set((await g.data()) as Float32Array, offset);
    offset += g.size;
  }
  flat[total] = loss;
  await comm.allReduce(flat);
  const scale = 1 / comm.worldSize;
  for (let i = 0; i < flat.length; i++) flat[i] = flat[i]! * scale;
  offset = 0;
  const out: Record<string, tf.Tensor> = {};
  for (const [name, g] of entries) {
    out[name] = tf.tensor(flat.slice(offset, offset + g.size), g.shape, 'float32');
    offset += g.size;
  }
  tf.dispose(entries.map(([, g]) => g));
  return { grads: out, loss: flat[total]! };
}

export interface DataParallelOptions {
  /**
   * ZeRO stage: 0 (default) keeps the whole optimizer state on every rank and all-reduces gradients; 1 shards the
   * optimizer state over the ranks (zero.ts: gradients reduce-scattered, parameters all-gathered).
   */
  zero?: 0 | 1;
  /**
   * Every rank of the communicator already holds rank 0's weights: setup checks the options but broadcasts nothing
   * (the hybrid strategy broadcasts them once over its whole world, which covers this group).
   */
  inSync?: boolean;
}

/**
 * Data parallelism over `comm`; rank 0 logs and checkpoints. A world of one is single-process training. With
 * `zero: 1` each rank keeps the optimizer's moments of its shard of the parameters only (ZeRO stage 1, zero.ts).
 */
export class DataParallelStrategy implements Omit<Strategy, 'spec'> {
  readonly rank: number;
  readonly worldSize: number;
  readonly isGlobalZero: boolean;
  /** ZeRO-1's shards of the parameters and optimizer state (from setup on, when `zero` is 1). */
  zero: ZeroShards | null = null;

  constructor(
    readonly comm: Communicator,
    readonly opts: DataParallelOptions = {},
  ) {
    this.rank = comm.rank;
    this.worldSize = comm.worldSize;
    this.isGlobalZero = comm.rank === 0;
  }

  async setup(host: StrategyHost): Promise<void> {
    await beginDataParallel(this.comm, host.model, host.options, this.opts.inSync);
    if (this.opts.zero === 1) {
      this.zero?.dispose();
      this.zero = new ZeroShards(
        this.comm,
        host.model.parameters().filter((p) => p.trainable),
        host.optimizer,
      );
      this.zero.shardState(); // a restored (unsharded) state is cut to this rank's shard
    }
  }

  shardSize(size: number): number {
    return shardSize(size, this.worldSize);
  }

  shard(order: Int32Array): Int32Array {
    return shardOrder(order, this.comm);
  }

  async gradients(batches: Batch[], host: StrategyHost, state?: Pick<TrainingState, 'step' | 'epoch'>): Promise<StepGradients> {
    if (this.zero) return this.zeroGradients(this.zero, batches, host, state);
    const local = await host.localGradients(batches, state);
    if (this.worldSize === 1) return local;
    try {
      const { grads, loss } = await averageAcrossRanks(this.comm, local.grads, local.loss);
      return { loss, grads, params: local.params };
    } catch (e) {
      tf.dispose(Object.values(local.grads));
      throw e;
    }
  }

  /**
   * ZeRO-1's step: the previous step's shards all-gathered, local gradients, reduce-scattered; the trainer then
   * steps this rank's pieces. Clipping by global norm needs every shard: the trainer clips (once), with the squared
   * norms of the shards summed in one all-reduce ({@link StepGradients.globalSquaredNorm}).
   */
  private async zeroGradients(zero: ZeroShards, batches: Batch[], host: StrategyHost, state?: Pick<TrainingState, 'step' | 'epoch'>): Promise<StepGradients> {
    await zero.gather();
    const local = await host.localGradients(batches, state);
    const { loss, grads } = await zero.reduceGradients(local.grads, local.loss);
    const globalSquaredNorm = async (part: number) => {
      const sq = Float32Array.of(part);
      await this.comm.allReduce(sq);
      return sq[0]!;
    };
    return { loss, grads, params: zero.shardParameters(), globalSquaredNorm };
  }

  /**
   * Every rank holds the whole model, kept identical by the averaged steps: nothing to gather. Under ZeRO-1 the
   * last step's shards are all-gathered, and before a checkpoint rank 0's optimizer gets the whole state.
   */
  async synchronize(host: StrategyHost): Promise<void> {
    if (!this.zero) return;
    await this.zero.gather();
    if (host.options.checkpoint?.enabled) await this.zero.consolidate();
  }

  /** The model whole again; ZeRO's pieces are released (the optimizer keeps its state, by parameter name). */
  async teardown(host: StrategyHost): Promise<void> {
    await this.synchronize(host);
    this.zero?.dispose();
    this.zero = null;
  }
}
