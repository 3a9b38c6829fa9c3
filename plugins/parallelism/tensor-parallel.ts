/**
 * Tensor (intra-layer) model parallelism after Megatron-LM (Shoeybi et al. 2019, §3, Fig. 3-4): the weight matrices
 * of a layer are cut across the ranks of a tensor-parallel group, each rank computes its part, and two conjugate
 * operators join the parts:
 *
 * - f, {@link copyToTensorParallel}: identity forward, all-reduce of the gradient backward (where a replicated input
 *   enters a parallel region);
 * - g, {@link reduceFromTensorParallel}: all-reduce forward, identity backward (where a parallel region's partial
 *   sums leave it).
 *
 * PUBLIC API (kept small; the hybrid strategy builds its tensor dimension on it):
 *
 * - {@link TensorParallelGroup} `{ rank, worldSize, allReduceNow(buffer), allGatherNow?(send, recv), traffic? }`: the
 *   ranks a layer is cut across, with BLOCKING collectives (they run inside tfjs ops, which are synchronous).
 *   {@link tensorParallelGroup}`(comm)` makes one from a `Communicator`: an `MpiCommunicator` (MPI_COMM_WORLD or any
 *   `split` of it; its group counts calls and bytes per collective in `traffic`) or a world of one
 *   ({@link SINGLE_GROUP}).
 * - Which group a layer uses, and how it is set: every layer here is BUILT WHOLE (the unsplit layer's shapes, drawn from
 *   the `Rng` exactly as the unsplit layer draws them) and starts in the world of one, where it computes exactly what
 *   the unsplit layer computes. `shard(group)` ({@link TensorParallelLayer}) then keeps only rank `group.rank`'s
 *   slice of each split weight, in the same `Parameter` object (Megatron's `_initialize_affine_weight_cpu` likewise
 *   draws the master weight and slices it, so the model does not depend on the number of ranks), and uses `group`
 *   from then on; `unshard()` makes it whole again; `wholeWeights()` gathers whole copies (collective: every rank of
 *   the group calls it). For a whole model: {@link shardModel}`(model, group)` (a strategy's `setup`, after a
 *   checkpoint of whole weights is restored), {@link unshardModel}`(model)` (its `synchronize`, before evaluating
 *   alone or saving), {@link wholeModelWeights}`(model)`, {@link gatherToWhole}`(model, tensors, group)` (per-parameter
 *   tensors such as gradients or optimizer moments, whole) and {@link gradientSquaredNorm} (the whole gradient's
 *   squared norm, for a global-norm clip). The loss {@link VocabParallelCrossEntropy} takes its group the same way
 *   (`loss.shard(group)`, `loss.unshard()`).
 * - The strategy `tensor-parallel` ({@link TensorParallelStrategy}) does all of this over MPI_COMM_WORLD for the trainer,
 *   optimizer state and pruning masks included.
 * - Ops: f and g above, {@link gatherFromTensorParallel} (all-gather of the last axis; backward: this rank's slice)
 *   and {@link scatterToTensorParallel} (this rank's slice of the last axis; backward: all-gather). In a world of one
 *   each returns its input.
 * - Pure sharding helpers on whole tensors (no communication): {@link shardColumns}, {@link shardRows},
 *   {@link joinColumns}, {@link joinRows}.
 * - Layer plugins (kind `layer`): `column-parallel-dense`, `row-parallel-dense`, `parallel-attention` (heads split),
 *   `parallel-transformer-block` (attention + MLP as column-then-row, layer norms and residuals replicated),
 *   `vocab-parallel-embedding`; loss plugin `vocab-parallel-cross-entropy`. Weights are named as the unsplit layers'
 *   (`dense`, `multi-head-attention`, `transformer-encoder`, `embedding`), so whole weights load into either.
 *
 * Replicated computation (layer norms, residuals, biases added after g, dropout outside the parallel regions) runs
 * identically on every rank of the group: the same inputs, the same random streams, and an all-reduce whose result
 * is the same on every rank. So the gradients of replicated weights are equal on every rank and need no reduction
 * inside the group; the gradients of split weights are the slices of the unsplit gradients.
 *
 * Communication: MPI_Allreduce and MPI_Allgather of the values, read to the host (fine on the CPU backends; a GPU
 * backend would need a device collective); the gathers are exact.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  ConfigError,
  createPart,
  definePlugin,
  FUSED_KERNELS,
  hasKernel,
  LayerBase,
  layerOptions,
  linear,
  pluginSpecSchema,
  selfAttention,
  setMask,
  ShapeError,
  softmax,
  uniformFloats,
  type Activation,
  type Communicator,
  type ForwardContext,
  type Initializer,
  type JsonObject,
  type Layer,
  type Loss,
  type Model,
  type Parameter,
  type PluginContext,
  type Rng,
  type Shape,
  type Batch,
  type OptimizerState,
  type StepGradients,
  type Strategy,
  type StrategyHost,
  type TrainingState,
} from '../../core';
import { transformerLayerOptions } from '../layers/transformer-encoder';
import { causalMask } from '../layers/multi-head-attention';
import { broadcastParameters } from './data-parallel';
import { mpiWorld } from './mpi';
import { MpiCommunicator, worldCommunicator } from './mpi-data-parallel';
import { ELEMENTWISE_OPTIMIZERS } from './zero';

// ---------------------------------------------------------------- groups

/** The ranks a tensor-parallel layer is cut across, with an all-reduce that has completed when it returns. */
export interface TensorParallelGroup {
  readonly rank: number;
  readonly worldSize: number;
  /** Element-wise sum across the group's ranks, in place; blocks until done (it runs inside tfjs ops). */
  allReduceNow(buffer: Float32Array): void;
  /**
   * All-gather: `recv` holds worldSize blocks of `send.length` elements, block r being rank r's `send`; blocks until
   * done. Optional: without it an all-reduce of a zero buffer holding this rank's block gives the same, exactly
   * (x + 0 = x), moving worldSize times the bytes.
   */
  allGatherNow?(send: Float32Array, recv: Float32Array): void;
  /** Calls and payload bytes of each collective made through this group (groups made by {@link tensorParallelGroup}). */
  readonly traffic?: Record<'allReduce' | 'allGather', { calls: number; bytes: number }>;
}

/** The world of one: every layer computes exactly what its unsplit counterpart computes. */
export const SINGLE_GROUP: TensorParallelGroup = Object.freeze({ rank: 0, worldSize: 1, allReduceNow: () => undefined });

/**
 * The tensor-parallel group over `comm`: a world of one, or an `MpiCommunicator` (MPI_COMM_WORLD, or a
 * sub-communicator from `split`), whose collectives the binding runs synchronously (MPI_Allreduce, MPI_Allgather).
 */
export function tensorParallelGroup(comm: Communicator | TensorParallelGroup): TensorParallelGroup {
  if ('allReduceNow' in comm) return comm;
  if (comm.worldSize === 1) return SINGLE_GROUP;
  if (comm instanceof MpiCommunicator) {
    const world = mpiWorld();
    if (!world) throw new Error('tensor parallelism: an MpiCommunicator of several ranks, but MPI is not initialised in this process');
    const traffic = { allReduce: { calls: 0, bytes: 0 }, allGather: { calls: 0, bytes: 0 } };
    return {
      rank: comm.rank,
      worldSize: comm.worldSize,
      traffic,
      allReduceNow: (b) => {
        traffic.allReduce.calls++;
        traffic.allReduce.bytes += b.byteLength;
        world.addon.allReduce(comm.handle(), b);
      },
      allGatherNow: (send, recv) => {
        traffic.allGather.calls++;
        traffic.allGather.bytes += recv.byteLength;
        world.addon.allGather(comm.handle(), send, recv);
      },
    };
  }
  throw new Error(
    `tensor parallelism needs a communicator whose all-reduce completes when called (an MpiCommunicator or a world of one); got one of ${comm.worldSize} ranks of another kind`,
  );
}

// ---------------------------------------------------------------- the conjugate operators

/** A copy of `x`'s values summed over the group (read to the host, reduced, back into a tensor). */
function allReduceTensor(x: tf.Tensor, group: TensorParallelGroup): tf.Tensor {
  const buffer = Float32Array.from(x.dataSync() as Float32Array); // a copy: dataSync may hand out the tensor's own storage
  group.allReduceNow(buffer);
  return tf.tensor(buffer, x.shape, 'float32');
}

/** Every rank's `local`, in rank order (all-gather; an all-reduce of zeros around this rank's block for a group without one). */
function allGatherBlocks(local: Float32Array, group: TensorParallelGroup): Float32Array {
  const recv = new Float32Array(local.length * group.worldSize);
  if (group.allGatherNow) group.allGatherNow(local, recv);
  else {
    recv.set(local, group.rank * local.length);
    group.allReduceNow(recv);
  }
  return recv;
}

/**
 * Rank-ordered blocks of [rows, c] each, as [rows, c·worldSize] with the last axis cut in `parts` equal parts that
 * interleave the ranks (part b of rank r at columns (b·worldSize + r)·c/parts ..): the layout {@link shardColumns} cuts.
 */
function interleaveColumns(blocks: Float32Array, rows: number, c: number, n: number, parts = 1): Float32Array {
  const full = new Float32Array(blocks.length);
  const per = c / parts;
  for (let r = 0; r < n; r++)
    for (let i = 0; i < rows; i++)
      for (let b = 0; b < parts; b++) {
        const from = r * rows * c + i * c + b * per;
        full.set(blocks.subarray(from, from + per), i * c * n + (b * n + r) * per);
      }
  return full;
}

/** The last axis of this rank's `local` [..., c] placed among every rank's: [..., c·worldSize] (exact). */
function allGatherLastAxis(local: tf.Tensor, group: TensorParallelGroup): tf.Tensor {
  const c = local.shape.at(-1)!;
  const values = local.dataSync() as Float32Array;
  const full = interleaveColumns(allGatherBlocks(values, group), values.length / c, c, group.worldSize);
  return tf.tensor(full, [...local.shape.slice(0, -1), c * group.worldSize], 'float32');
}

/** This rank's slice of the last axis of a replicated x [..., c·worldSize]. */
function ownSliceLastAxis(x: tf.Tensor, group: TensorParallelGroup): tf.Tensor {
  const c = x.shape.at(-1)! / group.worldSize;
  const begin = x.shape.map((_, i) => (i === x.rank - 1 ? group.rank * c : 0));
  const size = x.shape.map((d, i) => (i === x.rank - 1 ? c : d));
  return tf.slice(x, begin, size);
}

/** A one-input op with its own forward and backward (tf.customGrad). */
function customOp(x: tf.Tensor, forward: (x: tf.Tensor) => tf.Tensor, backward: (dy: tf.Tensor) => tf.Tensor): tf.Tensor {
  return tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({ value: forward(args[0] as tf.Tensor), gradFunc: (dy: tf.Tensor) => backward(dy) }))(x);
}

/** Megatron's f: identity forward; backward, the gradient summed over the group (a replicated input feeds every rank's part). */
export function copyToTensorParallel(x: tf.Tensor, group: TensorParallelGroup): tf.Tensor {
  if (group.worldSize === 1) return x;
  return customOp(x, tf.clone, (dy) => allReduceTensor(dy, group));
}

/** Megatron's g: forward, the partial results summed over the group; backward, identity (the sum's gradient is replicated). */
export function reduceFromTensorParallel(x: tf.Tensor, group: TensorParallelGroup): tf.Tensor {
  if (group.worldSize === 1) return x;
  return customOp(x, (v) => allReduceTensor(v, group), tf.clone);
}

/** Every rank's [..., c] concatenated on the last axis, [..., c·worldSize]; backward, this rank's slice of the gradient. */
export function gatherFromTensorParallel(x: tf.Tensor, group: TensorParallelGroup): tf.Tensor {
  if (group.worldSize === 1) return x;
  return customOp(
    x,
    (v) => allGatherLastAxis(v, group),
    (dy) => ownSliceLastAxis(dy, group),
  );
}

/** This rank's slice of a replicated [..., c·worldSize] on the last axis; backward, the slices' gradients gathered. */
export function scatterToTensorParallel(x: tf.Tensor, group: TensorParallelGroup): tf.Tensor {
  if (group.worldSize === 1) return x;
  return customOp(
    x,
    (v) => ownSliceLastAxis(v, group),
    (dy) => allGatherLastAxis(dy, group),
  );
}

// ---------------------------------------------------------------- sharding whole tensors (no communication)

/**
 * How a weight is cut: `columns` splits the last axis (in `blocks` equal blocks, each cut separately: a packed
 * [d, 3d] Q|K|V projection gives rank r [q_r | k_r | v_r]), `rows` the first axis, `none` keeps it whole (replicated).
 */
export type Split = { axis: 'none' } | { axis: 'columns'; blocks?: number } | { axis: 'rows' };

/** Rank `rank` of `size`'s slice of the last axis of `w` (each of `blocks` equal blocks cut separately). */
export function shardColumns(w: tf.Tensor, rank: number, size: number, blocks = 1): tf.Tensor {
  return tf.tidy(() => {
    const last = w.shape.at(-1)!;
    if (last % (blocks * size) !== 0) throw new ShapeError('shardColumns', `a last axis divisible by ${blocks}·${size}`, w.shape);
    const per = last / blocks / size;
    const parts = Array.from({ length: blocks }, (_, b) =>
      tf.slice(
        w,
        w.shape.map((_, i) => (i === w.rank - 1 ? (b * size + rank) * per : 0)),
        w.shape.map((d, i) => (i === w.rank - 1 ? per : d)),
      ),
    );
    return blocks === 1 ? parts[0]! : tf.concat(parts, w.rank - 1);
  });
}

/** Rank `rank` of `size`'s slice of the first axis of `w`. */
export function shardRows(w: tf.Tensor, rank: number, size: number): tf.Tensor {
  const rows = w.shape[0]!;
  if (rows % size !== 0) throw new ShapeError('shardRows', `a first axis divisible by ${size}`, w.shape);
  return tf.slice(
    w,
    w.shape.map((_, i) => (i === 0 ? (rank * rows) / size : 0)),
    w.shape.map((d, i) => (i === 0 ? rows / size : d)),
  );
}

/** The inverse of {@link shardColumns}: every rank's slice, in rank order, joined into the whole tensor. */
export function joinColumns(shards: readonly tf.Tensor[], blocks = 1): tf.Tensor {
  return tf.tidy(() => {
    const axis = shards[0]!.rank - 1;
    if (blocks === 1) return tf.concat([...shards], axis);
    const split = shards.map((s) => tf.split(s, blocks, axis));
    return tf.concat(Array.from({ length: blocks }, (_, b) => split.map((parts) => parts[b]!)).flat(), axis);
  });
}

/** The inverse of {@link shardRows}. */
export function joinRows(shards: readonly tf.Tensor[]): tf.Tensor {
  return tf.concat([...shards], 0);
}

/** This rank's slice of a whole tensor (a weight or an optimizer slot of one), cut as `split` says (local: no communication). */
export function shardOf(w: tf.Tensor, split: Split, group: TensorParallelGroup): tf.Tensor {
  if (split.axis === 'columns') return shardColumns(w, group.rank, group.worldSize, split.blocks ?? 1);
  if (split.axis === 'rows') return shardRows(w, group.rank, group.worldSize);
  return tf.clone(w);
}

/** The whole weight from this rank's slice and the other ranks' (collective over the group; exact). */
export function gatherWhole(local: tf.Tensor, split: Split, group: TensorParallelGroup): tf.Tensor {
  if (split.axis === 'none' || group.worldSize === 1) return tf.clone(local);
  const n = group.worldSize;
  const values = local.dataSync() as Float32Array;
  const blocks = allGatherBlocks(values, group);
  // Cut by rows, the ranks' blocks in order are the whole; cut by columns, they interleave.
  if (split.axis === 'rows') return tf.tensor(blocks, [local.shape[0]! * n, ...local.shape.slice(1)], 'float32');
  const c = local.shape.at(-1)!;
  return tf.tensor(interleaveColumns(blocks, values.length / c, c, n, split.blocks ?? 1), [...local.shape.slice(0, -1), c * n], 'float32');
}

// ---------------------------------------------------------------- layers

/** A layer (or loss) cut across a tensor-parallel group; see the top of this file. */
export interface TensorParallelLayer {
  /** The group in use (the world of one until `shard`). */
  readonly group: TensorParallelGroup;
  /** Keeps rank `group.rank`'s slice of each split weight and computes over `group` from now on. Once, on the whole layer. */
  shard(group: TensorParallelGroup): void;
  /** The inverse of `shard` (collective over the group): every weight whole again, computing alone as the unsplit layer. */
  unshard(): void;
  /** Every weight of the layer whole, by parameter name (collective over the group; the caller disposes the tensors). */
  wholeWeights(): Map<string, tf.Tensor>;
  /** How the parameter `name` of this layer is cut (undefined: not one of its parameters). */
  splitOf(name: string): Split | undefined;
}

export function isTensorParallel(x: unknown): x is TensorParallelLayer {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as TensorParallelLayer).shard === 'function' &&
    typeof (x as TensorParallelLayer).wholeWeights === 'function'
  );
}

/** The tensor-parallel layers of a model, found through `layers` (Sequential, LayerStack) and `parts()` (modules, composites). */
export function tensorParallelParts(root: unknown, out: TensorParallelLayer[] = []): TensorParallelLayer[] {
  if (isTensorParallel(root)) out.push(root);
  else if (root && typeof root === 'object') {
    const { layers, parts } = root as { layers?: unknown; parts?: () => unknown };
    const children = Array.isArray(layers) ? layers : typeof parts === 'function' ? (parts.call(root) as unknown) : [];
    for (const c of children as unknown[]) tensorParallelParts(c, out);
  }
  return out;
}

/** Shards every tensor-parallel layer of `model` over `group` (see the top of the file); returns how many. */
export function shardModel(model: Model | Layer, group: TensorParallelGroup): number {
  const parts = tensorParallelParts(model);
  for (const p of parts) p.shard(group);
  return parts.length;
}

/**
 * Makes every tensor-parallel layer of `model` whole again (collective over its group; exact): a strategy's
 * `synchronize` before the model is evaluated alone or saved. The `Parameter` objects stay the same (their variables are
 * replaced), so optimizer state keyed by name fits again after the next {@link shardModel}. Returns how many layers.
 */
export function unshardModel(model: Model | Layer): number {
  const parts = tensorParallelParts(model);
  for (const p of parts) p.unshard();
  return parts.length;
}

/**
 * The squared L2 norm of the whole model's gradient from this rank's `grads` (by parameter name): the split
 * parameters' squares summed over the group (one all-reduce of one float), the replicated ones' counted once. What a
 * global-norm clip (Pascanu et al. 2013) needs under tensor parallelism.
 */
export function gradientSquaredNorm(model: Model | Layer, grads: ReadonlyMap<string, tf.Tensor>, group: TensorParallelGroup): number {
  const parts = tensorParallelParts(model);
  let replicated = 0;
  let split = 0;
  for (const [name, g] of grads) {
    const s = tf.tidy(() => tf.sum(tf.square(g)).dataSync()[0]!);
    const how = parts.map((p) => p.splitOf(name)).find((x) => x !== undefined);
    if (how && how.axis !== 'none') split += s;
    else replicated += s;
  }
  const sum = Float32Array.of(split);
  group.allReduceNow(sum);
  return replicated + sum[0]!;
}

/**
 * Tensors shaped like this rank's parameters (gradients, optimizer moments), by parameter name, gathered into the
 * whole parameters' shapes (collective over `group`, every rank passing the same names; exact). Names of replicated
 * parameters are cloned. The caller disposes the results.
 */
export function gatherToWhole(model: Model | Layer, values: ReadonlyMap<string, tf.Tensor>, group: TensorParallelGroup): Map<string, tf.Tensor> {
  const parts = tensorParallelParts(model);
  const out = new Map<string, tf.Tensor>();
  for (const [name, t] of values) {
    const split = parts.map((p) => p.splitOf(name)).find((s) => s !== undefined) ?? { axis: 'none' };
    out.set(name, gatherWhole(t, split, group));
  }
  return out;
}

/** Every weight of `model` whole, by name (collective over the tensor-parallel group; the caller disposes them). */
export function wholeModelWeights(model: Model | Layer): Map<string, tf.Tensor> {
  const whole = new Map<string, tf.Tensor>();
  for (const p of tensorParallelParts(model)) for (const [k, v] of p.wholeWeights()) whole.set(k, v);
  const all = 'weights' in model && typeof model.weights === 'function' ? model.weights() : model.parameters();
  for (const p of all) if (!whole.has(p.name)) whole.set(p.name, tf.clone(p.variable));
  return whole;
}

/**
 * Puts back the optimizer's `state` with each tensor-split parameter's slots (Adam's moments, ...) mapped by `f`
 * (cut with {@link shardOf} or joined with {@link gatherWhole}: collective over the group, every rank mapping the same
 * slots in the same order), for the model's current parameters. Slots of replicated parameters are kept as they are.
 */
export function setSplitSlots(host: StrategyHost, state: OptimizerState, f: (slot: tf.Tensor, split: Split, name: string) => tf.Tensor): void {
  const parts = tensorParallelParts(host.model);
  const slots: OptimizerState['slots'] = {};
  for (const [name, byKey] of Object.entries(state.slots)) {
    const split = parts.map((p) => p.splitOf(name)).find((x) => x !== undefined);
    slots[name] = Object.fromEntries(
      Object.entries(byKey).map(([k, slot]) => {
        if (!split || split.axis === 'none') return [k, slot];
        const t = tf.tensor(slot.values, slot.shape, 'float32');
        const m = f(t, split, name);
        const out = { shape: m.shape, values: m.dataSync() as Float32Array };
        tf.dispose([t, m]);
        return [k, out];
      }),
    );
  }
  host.optimizer.setState({ ...state, slots }, host.model.parameters());
}

/**
 * A layer whose weights are declared with how they are cut ({@link Split}): built whole, `shard` replaces each split
 * weight by this rank's slice (same parameter name, object and role; a new variable), `wholeWeights` gathers them.
 */
export abstract class ShardedLayer extends LayerBase implements TensorParallelLayer {
  group: TensorParallelGroup = SINGLE_GROUP;
  private readonly splits = new Map<string, Split>();

  constructor(
    name: string,
    /** The config path of the layer, for errors that name a field. */
    protected readonly path: string,
  ) {
    super(name);
  }

  /** A weight of the whole layer and how it is cut. */
  protected addSplitWeight(weight: string, shape: number[], init: Initializer, rng: Rng, role: Parameter['role'], split: Split): void {
    this.addWeight(weight, shape, init, rng, role);
    this.splits.set(`${this.name}/${weight}`, split);
  }

  /** The current variable of `weight` (whole, or this rank's slice after `shard`). */
  protected w<T extends tf.Tensor = tf.Tensor>(weight: string): T {
    const p = this.params.find((q) => q.name === `${this.name}/${weight}`);
    if (!p) throw new Error(`${this.name}: no weight ${weight} (not built?)`);
    return p.variable as unknown as T;
  }

  /** Throws a ConfigError naming the option that a group of `n` ranks cannot divide. */
  protected abstract checkShardable(n: number): void;

  shard(group: TensorParallelGroup): void {
    if (this.group.worldSize !== 1) throw new Error(`${this.name}: already sharded over ${this.group.worldSize} ranks`);
    if (this.params.length === 0) throw new Error(`${this.name}: build the layer before sharding it`);
    if (group.worldSize > 1) {
      this.checkShardable(group.worldSize);
      for (const p of this.params) {
        const split = this.splits.get(p.name) ?? { axis: 'none' };
        if (split.axis === 'none') continue;
        this.replaceVariable(
          p,
          tf.tidy(() => shardOf(p.variable, split, group)),
        );
        if (p.mask)
          this.replaceMask(
            p,
            tf.tidy(() => shardOf(p.mask!, split, group)),
          );
      }
    }
    this.group = group;
  }

  unshard(): void {
    if (this.group.worldSize === 1) return;
    for (const p of this.params) {
      const split = this.splits.get(p.name) ?? { axis: 'none' };
      if (split.axis === 'none') continue;
      this.replaceVariable(p, gatherWhole(p.variable, split, this.group));
      if (p.mask) this.replaceMask(p, gatherWhole(p.mask, split, this.group));
    }
    this.group = SINGLE_GROUP;
  }

  /**
   * A pruning mask (core/masks.ts) cut or gathered as its parameter is, through setMask, which disposes the old one:
   * the parameter holds the new one, where readToHost(model) finds it.
   */
  private replaceMask(p: Parameter, mask: tf.Tensor): void {
    setMask(p, mask);
  }

  /** Gives `p` (the same object, so holders of it see the change) a new variable holding `value` (taken over). */
  private replaceVariable(p: Parameter, value: tf.Tensor): void {
    const old = p.variable;
    (p as { variable: tf.Variable }).variable = tf.variable(value, p.trainable);
    value.dispose();
    old.dispose();
  }

  wholeWeights(): Map<string, tf.Tensor> {
    return new Map(this.params.map((p) => [p.name, gatherWhole(p.variable, this.splits.get(p.name) ?? { axis: 'none' }, this.group)]));
  }

  splitOf(name: string): Split | undefined {
    return this.splits.get(name) ?? (this.params.some((p) => p.name === name) ? { axis: 'none' } : undefined);
  }

  /** A ConfigError at `<path>.<field>` (at the layer's path when the value is no option of its own) unless n divides value. */
  protected divisible(value: number, n: number, field: string | null, what = ''): void {
    if (value % n !== 0)
      throw new ConfigError(field ? `${this.path}.${field}` : this.path, `${what}${value} is not divisible by the tensor-parallel size ${n}`);
  }
}

const denseSchema = layerOptions.extend({
  units: z.number().int().positive(),
  activation: pluginSpecSchema.default('linear'),
  useBias: z.boolean().default(true),
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
  biasInitializer: pluginSpecSchema.default('zeros'),
});

/** y = f(x W + b) exactly as the `dense` layer computes it (relu and linear fused into the product). */
function denseForward(x2: tf.Tensor, kernel: tf.Tensor2D, bias: tf.Tensor1D | null, activation: Activation): tf.Tensor {
  const act = activation.spec.type;
  if (act === 'relu' || act === 'linear') return linear(x2, kernel, bias, act);
  return activation.apply(bias ? tf.add(tf.matMul(x2, kernel), bias) : tf.matMul(x2, kernel));
}

/** Activations that mix the features of a row (so cannot be applied to a slice of them). */
const ROW_ACTIVATIONS = new Set(['softmax', 'log-softmax']);

/**
 * Column-parallel dense (Megatron-LM §3, eq. 3, Y = [XA₁, XA₂] = GeLU([XA₁, XA₂])): W [in, units] cut by output
 * columns, rank r holding W[:, r·units/N .. (r+1)·units/N] and that slice of the bias. The replicated input passes
 * through f; each rank computes its slice of the output, with the activation applied to it (an element-wise one;
 * softmax needs `gatherOutput`). With `gatherOutput` the slices are all-gathered into the whole output (and the
 * activation is applied after the gather). Weights as `dense`'s, so in a world of one it is exactly `dense`.
 */
export class ColumnParallelDense extends ShardedLayer {
  private readonly activation: Activation;
  private readonly kernelInit: Initializer;
  private readonly biasInit: Initializer;

  constructor(
    private readonly opts: z.output<typeof denseSchema> & { gatherOutput: boolean },
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'column-parallel-dense', ctx.path);
    this.activation = ctx.create('activation', opts.activation, 'activation');
    this.kernelInit = ctx.create('initializer', opts.kernelInitializer, 'kernelInitializer');
    this.biasInit = ctx.create('initializer', opts.biasInitializer, 'biasInitializer');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    if (inputShape.length < 2 || inputShape.at(-1) === null) this.expectRank(inputShape, 2, '[batch, ..., features]');
    this.addSplitWeight('kernel', [inputShape.at(-1)!, this.opts.units], this.kernelInit, rng, 'kernel', { axis: 'columns' });
    if (this.opts.useBias) this.addSplitWeight('bias', [this.opts.units], this.biasInit, rng, 'bias', { axis: 'columns' });
    return [...inputShape.slice(0, -1), this.opts.units];
  }

  protected checkShardable(n: number): void {
    this.divisible(this.opts.units, n, 'units');
    if (!this.opts.gatherOutput && ROW_ACTIVATIONS.has(this.activation.spec.type))
      throw new ConfigError(
        `${this.path}.activation`,
        `${this.activation.spec.type} mixes the whole row: with a tensor-parallel size > 1 it needs gatherOutput: true`,
      );
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const lead = x.shape.slice(0, -1);
    const bias = this.opts.useBias ? this.w<tf.Tensor1D>('bias') : null;
    const kernel = this.w<tf.Tensor2D>('kernel');
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, x.shape.at(-1)!]);
    const local = kernel.shape[1];
    let y: tf.Tensor;
    if (this.group.worldSize === 1) y = denseForward(x2, kernel, bias, this.activation);
    else {
      const xi = copyToTensorParallel(x2, this.group);
      if (this.opts.gatherOutput) {
        const pre = gatherFromTensorParallel(bias ? linear(xi, kernel, bias) : tf.matMul(xi, kernel), this.group);
        y = this.activation.apply(pre);
      } else y = denseForward(xi, kernel, bias, this.activation);
    }
    const units = this.group.worldSize === 1 || this.opts.gatherOutput ? this.opts.units : local;
    return x.rank === 2 ? y : tf.reshape(y, [...lead, units]);
  }
}

/**
 * Row-parallel dense (Megatron-LM §3, eq. 4 and Fig. 3a, Z = Dropout(Y B) with B = [B₁; B₂]): W [in, units] cut by
 * input rows, rank r holding W[r·in/N .. (r+1)·in/N, :]. Its input is already cut by features (the output of a
 * column-parallel layer; with `inputIsParallel: false` a replicated input is sliced first), each rank computes the
 * partial product X_r W_r, g sums them over the group, then the whole bias is added once and the activation
 * applied. Weights as `dense`'s, so in a world of one it is exactly `dense`.
 */
export class RowParallelDense extends ShardedLayer {
  private readonly activation: Activation;
  private readonly kernelInit: Initializer;
  private readonly biasInit: Initializer;

  constructor(
    private readonly opts: z.output<typeof denseSchema> & { inputIsParallel: boolean },
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'row-parallel-dense', ctx.path);
    this.activation = ctx.create('activation', opts.activation, 'activation');
    this.kernelInit = ctx.create('initializer', opts.kernelInitializer, 'kernelInitializer');
    this.biasInit = ctx.create('initializer', opts.biasInitializer, 'biasInitializer');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    if (inputShape.length < 2 || inputShape.at(-1) === null) this.expectRank(inputShape, 2, '[batch, ..., features]');
    this.addSplitWeight('kernel', [inputShape.at(-1)!, this.opts.units], this.kernelInit, rng, 'kernel', { axis: 'rows' });
    if (this.opts.useBias) this.addSplitWeight('bias', [this.opts.units], this.biasInit, rng, 'bias', { axis: 'none' });
    return [...inputShape.slice(0, -1), this.opts.units];
  }

  protected checkShardable(n: number): void {
    this.divisible(this.w('kernel').shape[0]!, n, null, 'its number of input features, ');
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const lead = x.shape.slice(0, -1);
    const bias = this.opts.useBias ? this.w<tf.Tensor1D>('bias') : null;
    const kernel = this.w<tf.Tensor2D>('kernel');
    const x2 = x.rank === 2 ? x : tf.reshape(x, [-1, x.shape.at(-1)!]);
    let y: tf.Tensor;
    if (this.group.worldSize === 1) y = denseForward(x2, kernel, bias, this.activation);
    else {
      const xi = this.opts.inputIsParallel ? x2 : scatterToTensorParallel(x2, this.group);
      const summed = reduceFromTensorParallel(linear(xi, kernel), this.group);
      y = this.activation.apply(bias ? tf.add(summed, bias) : summed);
    }
    return x.rank === 2 ? y : tf.reshape(y, [...lead, this.opts.units]);
  }
}

const attentionSchema = layerOptions.extend({
  numHeads: z.number().int().positive(),
  causal: z.boolean().default(false),
  dropout: z.number().min(0).lt(1).default(0),
  kernelInitializer: pluginSpecSchema.default('glorot-uniform'),
  outputInitializer: pluginSpecSchema.optional(),
});

/**
 * Multi-head self-attention split by heads (Megatron-LM §3, Fig. 3b): rank r holds heads r·h/N .. (r+1)·h/N, i.e.
 * the Q, K and V projections as column-parallel (its columns of each third of the packed [d, 3d] kernel) and the
 * output projection W^O as row-parallel (its rows), so one f at the input and one g at the output: one all-reduce
 * forward and one backward. The attention itself (Vaswani et al. 2017, eq. 1) is computed for the local heads only.
 * Attention dropout draws the unsplit layer's [batch, heads, t, t] mask from the same seed and keeps this rank's
 * heads, so the result does not depend on the number of ranks. Weights as `multi-head-attention`'s: in a world of
 * one it computes exactly what that layer computes.
 */
export class ParallelAttention extends ShardedLayer {
  private readonly init: Initializer;
  private readonly outInit: Initializer;
  private readonly zeros: Initializer;

  constructor(
    private readonly opts: z.output<typeof attentionSchema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'parallel-attention', ctx.path);
    this.init = ctx.create('initializer', opts.kernelInitializer, 'kernelInitializer');
    this.outInit = opts.outputInitializer ? ctx.create('initializer', opts.outputInitializer, 'outputInitializer') : this.init;
    this.zeros = ctx.create('initializer', 'zeros');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, d_model]', [1]);
    const d = inputShape[2]!;
    if (d % this.opts.numHeads !== 0) throw this.shapeError(`d_model divisible by numHeads = ${this.opts.numHeads}`, inputShape);
    this.addSplitWeight('qkv_kernel', [d, 3 * d], this.init, rng, 'kernel', { axis: 'columns', blocks: 3 });
    this.addSplitWeight('qkv_bias', [3 * d], this.zeros, rng, 'bias', { axis: 'columns', blocks: 3 });
    this.addSplitWeight('out_kernel', [d, d], this.outInit, rng, 'kernel', { axis: 'rows' });
    this.addSplitWeight('out_bias', [d], this.zeros, rng, 'bias', { axis: 'none' });
    return inputShape;
  }

  protected checkShardable(n: number): void {
    this.divisible(this.opts.numHeads, n, 'numHeads');
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const [b, t, d] = x.shape as [number, number, number];
    const n = this.group.worldSize;
    const heads = this.opts.numHeads / n;
    const local = d / n;
    const keyMask = ctx.mask;
    const xi = copyToTensorParallel(tf.reshape(x, [b * t, d]), this.group);
    const proj = linear(xi, this.w<tf.Tensor2D>('qkv_kernel'), this.w<tf.Tensor1D>('qkv_bias'));
    let context: tf.Tensor;
    if (!(ctx.training && this.opts.dropout > 0) && hasKernel(FUSED_KERNELS.attention) && x.dtype === 'float32') {
      context = tf.reshape(selfAttention(tf.reshape(proj, [b, t, 3 * local]), heads, keyMask, this.opts.causal), [b * t, local]);
    } else {
      const dk = d / this.opts.numHeads;
      const [q, k, v] = tf.unstack(tf.transpose(tf.reshape(proj, [b, t, 3, heads, dk]), [2, 0, 3, 1, 4]), 0) as [tf.Tensor, tf.Tensor, tf.Tensor];
      const raw = tf.matMul(q, k, false, true);
      const scale = 1 / Math.sqrt(dk);
      // The mask as multi-head-attention applies it: masked scores replaced by −1e9 (see there why).
      let allowed: tf.Tensor | null = this.opts.causal ? causalMask(t, t) : null;
      if (keyMask) {
        const keys = tf.reshape(tf.notEqual(keyMask, 0), [b, 1, 1, t]);
        allowed = allowed ? tf.logicalAnd(allowed, keys) : keys;
      }
      let scores: tf.Tensor;
      if (allowed) {
        const m = tf.cast(allowed, 'float32');
        scores = tf.add(tf.mul(raw, tf.mul(m, scale)), tf.mul(tf.sub(m, 1), 1e9));
      } else scores = tf.mul(raw, scale);
      let probs = softmax(scores);
      if (ctx.training && this.opts.dropout > 0) probs = tf.mul(probs, this.dropoutMask(ctx.rng.nextSeed(), [b, this.opts.numHeads, t, t]));
      context = tf.reshape(tf.transpose(tf.matMul(probs, v), [0, 2, 1, 3]), [b * t, local]);
    }
    const outBias = this.w<tf.Tensor1D>('out_bias');
    const y =
      n === 1
        ? linear(context, this.w<tf.Tensor2D>('out_kernel'), outBias)
        : tf.add(reduceFromTensorParallel(linear(context, this.w<tf.Tensor2D>('out_kernel')), this.group), outBias);
    return tf.reshape(y, [b, t, d]);
  }

  /** The unsplit layer's inverted-dropout mask ([batch, heads, t, t], `dropout`'s draw from `seed`), this rank's heads. */
  private dropoutMask(seed: number, shape: [number, number, number, number]): tf.Tensor {
    const rate = this.opts.dropout;
    const u = uniformFloats(
      seed,
      shape.reduce((a, c) => a * c, 1),
    );
    const keep = 1 / (1 - rate);
    for (let i = 0; i < u.length; i++) u[i] = u[i]! >= rate ? keep : 0;
    const mask = tf.tensor(u, shape, 'float32');
    if (this.group.worldSize === 1) return mask;
    const heads = shape[1] / this.group.worldSize;
    return tf.slice(mask, [0, this.group.rank * heads, 0, 0], [shape[0], heads, shape[2], shape[3]]);
  }
}

/** `transformer-encoder`'s options that the split block implements (others, e.g. int8 quantization, are refused as unknown). */
const blockSchema = transformerLayerOptions
  .pick({
    name: true,
    numHeads: true,
    ff: true,
    dropout: true,
    preNorm: true,
    activation: true,
    attentionDropout: true,
    kernelInitializer: true,
    residualInitializer: true,
    normEpsilon: true,
  })
  .extend({ causal: z.boolean().default(false) });

/**
 * A Transformer layer with tensor-parallel sub-layers (Megatron-LM §3, Fig. 3): self-attention split by heads
 * (`parallel-attention`) and the MLP as a column-parallel dense (W₁, with the activation) then a row-parallel dense
 * (W₂), so each sub-layer costs one all-reduce of [batch·time, d] forward (g) and one backward (f): 2 + 2 per layer.
 * Layer norms, residual connections and residual dropout are replicated on every rank (same stream, same masks).
 * Parts, options and build order as `transformer-encoder`'s (post- or pre-norm), so built from the same seed it has
 * the same whole weights, and in a world of one computes exactly what that layer computes.
 */
export class ParallelTransformerBlock extends LayerBase implements TensorParallelLayer {
  group: TensorParallelGroup = SINGLE_GROUP;
  private readonly attention: ParallelAttention;
  private readonly norm1: Layer;
  private readonly norm2: Layer;
  private readonly ff1: ColumnParallelDense;
  private ff2!: RowParallelDense;
  private readonly drop: Layer;

  constructor(
    private readonly opts: z.output<typeof blockSchema>,
    private readonly ctx: PluginContext,
  ) {
    super(opts.name ?? 'parallel-transformer-block');
    const part = <T extends Layer>(p: string, spec: { type: string } & Record<string, unknown>, type: abstract new (...a: never[]) => T) =>
      createPart(ctx, this.name, p, spec as never, type);
    this.ff1 = part(
      'ff1',
      { type: 'column-parallel-dense', units: opts.ff, activation: opts.activation, kernelInitializer: opts.kernelInitializer },
      ColumnParallelDense,
    );
    this.drop = createPart(ctx, this.name, 'dropout', { type: 'dropout', rate: opts.dropout });
    this.attention = part(
      'attention',
      {
        type: 'parallel-attention',
        numHeads: opts.numHeads,
        dropout: opts.attentionDropout,
        kernelInitializer: opts.kernelInitializer,
        causal: opts.causal,
        ...(opts.residualInitializer ? { outputInitializer: opts.residualInitializer } : {}),
      },
      ParallelAttention,
    );
    this.norm1 = createPart(ctx, this.name, 'norm1', { type: 'layer-norm', epsilon: opts.normEpsilon });
    this.norm2 = createPart(ctx, this.name, 'norm2', { type: 'layer-norm', epsilon: opts.normEpsilon });
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, d_model]', [1]);
    this.ff2 = createPart(
      this.ctx,
      this.name,
      'ff2',
      { type: 'row-parallel-dense', units: inputShape[2]!, kernelInitializer: this.opts.residualInitializer ?? this.opts.kernelInitializer },
      RowParallelDense,
    );
    for (const l of [this.attention, this.norm1, this.norm2, this.drop]) l.build(inputShape, rng);
    this.ff2.build(this.ff1.build(inputShape, rng), rng);
    return inputShape;
  }

  private residual(input: tf.Tensor, f: (y: tf.Tensor) => tf.Tensor, norm: Layer, ctx: ForwardContext): tf.Tensor {
    return this.opts.preNorm ? tf.add(input, this.drop.apply(f(norm.apply(input, ctx)), ctx)) : norm.apply(tf.add(input, this.drop.apply(f(input), ctx)), ctx);
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const y = this.residual(x, (v) => this.attention.apply(v, ctx), this.norm1, ctx);
    return this.residual(y, (v) => this.ff2.apply(this.ff1.apply(v, ctx), ctx), this.norm2, ctx);
  }

  /** In `transformer-encoder`'s order: attention, norm1, ff1, ff2, norm2. */
  private parts(): Layer[] {
    return [this.attention, this.norm1, this.ff1, ...(this.ff2 ? [this.ff2] : []), this.norm2];
  }

  override parameters(): Parameter[] {
    return this.parts().flatMap((l) => l.parameters());
  }

  shard(group: TensorParallelGroup): void {
    if (!this.ff2) throw new Error(`${this.name}: build the layer before sharding it`);
    for (const l of [this.attention, this.ff1, this.ff2]) l.shard(group);
    this.group = group;
  }

  unshard(): void {
    for (const l of [this.attention, this.ff1, this.ff2]) l.unshard();
    this.group = SINGLE_GROUP;
  }

  wholeWeights(): Map<string, tf.Tensor> {
    const whole = new Map<string, tf.Tensor>();
    for (const l of this.parts())
      if (isTensorParallel(l)) for (const [k, v] of l.wholeWeights()) whole.set(k, v);
      else for (const p of l.parameters()) whole.set(p.name, tf.clone(p.variable));
    return whole;
  }

  splitOf(name: string): Split | undefined {
    for (const l of this.parts()) {
      const s = isTensorParallel(l) ? l.splitOf(name) : l.parameters().some((p) => p.name === name) ? ({ axis: 'none' } as const) : undefined;
      if (s) return s;
    }
    return undefined;
  }

  override dispose(): void {
    for (const l of [...this.parts(), this.drop]) l.dispose();
  }
}

const embeddingSchema = layerOptions.extend({
  vocabSize: z.number().int().positive(),
  dim: z.number().int().positive(),
  initializer: pluginSpecSchema.default({ type: 'random-uniform', min: -0.05, max: 0.05 }),
  maskZero: z.boolean().default(false),
});

/**
 * Vocabulary-parallel embedding (Megatron-LM §3, "input embedding weight matrix E_{H×v} is parallelized along the
 * vocabulary dimension"): rank r holds rows r·V/N .. (r+1)·V/N of the [V, d] table; an id outside its rows looks up
 * zero, and g sums the ranks' lookups, so every id gets its one row. The gradient reaches only the rows of this
 * rank's ids. Weights as `embedding`'s: in a world of one it is exactly `embedding`.
 */
export class VocabParallelEmbedding extends ShardedLayer {
  private readonly init: Initializer;

  constructor(
    private readonly opts: z.output<typeof embeddingSchema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'vocab-parallel-embedding', ctx.path);
    this.init = ctx.create('initializer', opts.initializer, 'initializer');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    if (inputShape.length < 2) throw this.shapeError('[batch, ...ids]', inputShape);
    this.addSplitWeight('embeddings', [this.opts.vocabSize, this.opts.dim], this.init, rng, 'embedding', { axis: 'rows' });
    return [...inputShape, this.opts.dim];
  }

  protected checkShardable(n: number): void {
    this.divisible(this.opts.vocabSize, n, 'vocabSize');
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const ids = tf.cast(x, 'int32');
    if (this.opts.maskZero) ctx.mask = tf.cast(tf.notEqual(ids, 0), 'float32');
    const table = this.w('embeddings');
    if (this.group.worldSize === 1) return tf.gather(table, ids);
    const rows = table.shape[0]!;
    const start = tf.scalar(this.group.rank * rows, 'int32');
    const inRange = tf.logicalAnd(tf.greaterEqual(ids, start), tf.less(ids, tf.scalar((this.group.rank + 1) * rows, 'int32')));
    const local = tf.where(inRange, tf.sub(ids, start), tf.zerosLike(ids));
    const looked = tf.mul(tf.gather(table, local), tf.expandDims(tf.cast(inRange, 'float32'), -1));
    return reduceFromTensorParallel(looked, this.group);
  }
}

const crossEntropySchema = z.object({
  ignoreIndex: z.number().int().optional(),
  /** Label smoothing ε (Szegedy et al. 2016, §7), as `sparse-categorical-crossentropy`'s. */
  labelSmoothing: z.number().min(0).lt(1).default(0),
});

/**
 * Vocabulary-parallel softmax cross-entropy (Megatron-LM's `vocab_parallel_cross_entropy`): the logits z [n, V] are
 * cut by vocabulary over the group (the output of a column-parallel head without gather), rank r holding columns
 * r·V/N .. (r+1)·V/N. Three reductions replace gathering the logits: the row maxima M (Megatron all-reduces a max;
 * here all ranks' maxima are all-gathered and the maximum taken), then one all-reduce of S = Σ_k exp(z_k − M)
 * and of the target logit z_y (zero on the ranks that do not hold y). L = mean_n w_n (log S_n + M_n − z_{n,y_n}) with
 * w_n = 0 for `ignoreIndex` rows; ∂L/∂z_k = w (exp(z_k − M)/S − [k = y]) / Σw on this rank's columns, with no
 * communication backward. With label smoothing ε the target is (1 − ε)·onehot + ε/V, which adds Σ_k z_k to the
 * all-reduce. Equal to `sparse-categorical-crossentropy` (same options) on the gathered logits.
 */
export class VocabParallelCrossEntropy implements Loss, TensorParallelLayer {
  declare readonly spec: { type: string } & JsonObject;
  group: TensorParallelGroup = SINGLE_GROUP;

  constructor(
    private readonly ignoreIndex: number | undefined,
    /** ε of label smoothing (Szegedy et al. 2016, §7): targets (1 − ε)·onehot + ε/V over the whole vocabulary V. */
    private readonly labelSmoothing = 0,
  ) {}

  shard(group: TensorParallelGroup): void {
    if (this.group.worldSize !== 1) throw new Error(`vocab-parallel-cross-entropy: already over ${this.group.worldSize} ranks`);
    this.group = group;
  }

  /** Back to whole logits (no communication). */
  unshard(): void {
    this.group = SINGLE_GROUP;
  }

  wholeWeights(): Map<string, tf.Tensor> {
    return new Map();
  }

  splitOf(): undefined {
    return undefined;
  }

  /** `outputShape` is the model's: its layers are built whole, so its last axis is the whole vocabulary. */
  checkTargets(labels: Float32Array | Int32Array, outputShape: readonly (number | null)[]) {
    const classes = outputShape.at(-1)!;
    for (let i = 0; i < labels.length; i++) {
      const v = labels[i]!;
      if (v !== this.ignoreIndex && !(Number.isInteger(v) && v >= 0 && v < classes))
        return { index: i, reason: `label ${v} is outside the vocabulary 0..${classes - 1}` };
    }
    return null;
  }

  compute(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
    const cols = yPred.shape.at(-1)!;
    const n = yPred.size / cols;
    if (yTrue.size !== n || yPred.rank < 2)
      throw new ShapeError('loss "vocab-parallel-cross-entropy"', `labels with one entry per row of predictions [${yPred.shape}]`, yTrue.shape);
    const group = this.group;
    const ignore = this.ignoreIndex;
    const eps = this.labelSmoothing;
    const vocab = cols * group.worldSize;
    return tf.tidy(() => {
      const logits = tf.reshape(yPred, [n, cols]);
      const labels = tf.cast(tf.reshape(yTrue, [n]), 'int32');
      const weight = ignore === undefined ? tf.ones([n]) : tf.cast(tf.notEqual(labels, ignore), 'float32');
      const start = tf.scalar(group.rank * cols, 'int32');
      const inRange = tf.logicalAnd(tf.greaterEqual(labels, start), tf.less(labels, tf.scalar((group.rank + 1) * cols, 'int32')));
      const local = tf.where(inRange, tf.sub(labels, start), tf.zerosLike(labels));
      // [k = y] on this rank's columns (tf.oneHot needs a depth ≥ 2; a rank may hold one column).
      const onehot = tf.cast(tf.logicalAnd(tf.equal(tf.expandDims(local, 1), tf.range(0, cols, 1, 'int32')), tf.expandDims(inRange, 1)), 'float32');
      const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
        const [z, save] = args as [tf.Tensor, tf.GradSaveFunc];
        // M: the maximum over every rank's row maxima (all-gathered; exact).
        const localMax = tf.max(z, 1);
        const max = group.worldSize === 1 ? localMax : tf.max(tf.reshape(allGatherLastAxis(tf.reshape(localMax, [1, n]), group), [group.worldSize, n]), 0);
        const shifted = tf.exp(tf.sub(z, tf.expandDims(max, 1)));
        // S and z_y (and, with label smoothing, Σ_k z_k) in one all-reduce of 2n (3n) floats.
        const rows = [tf.sum(shifted, 1), tf.sum(tf.mul(z, onehot), 1), ...(eps > 0 ? [tf.sum(z, 1)] : [])];
        const local = tf.stack(rows);
        // In a world of one nothing is read to the host (so it runs on any backend, webgpu included).
        const sums = group.worldSize === 1 ? local : allReduceTensor(local, group);
        const [s, zy, zsum] = tf.unstack(sums) as [tf.Tensor, tf.Tensor, tf.Tensor | undefined];
        // Σ_k q_k z_k with q = (1 − ε)·onehot + ε/V.
        const target = eps > 0 ? tf.add(tf.mul(zy, 1 - eps), tf.mul(zsum!, eps / vocab)) : zy;
        const total = tf.maximum(tf.sum(weight), 1);
        // weight and onehot too: this tidy disposes them before the backward pass.
        save([tf.div(shifted, tf.expandDims(s, 1)), total, weight, onehot]);
        return {
          value: tf.div(tf.sum(tf.mul(tf.sub(tf.add(tf.log(s), max), target), weight)), total) as tf.Scalar,
          gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
            const [p, tot, w, hot] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
            const q = eps > 0 ? tf.add(tf.mul(hot, 1 - eps), eps / vocab) : hot;
            return tf.mul(tf.sub(p, q), tf.expandDims(tf.div(tf.mul(w, dy), tot), 1));
          },
        };
      });
      return f(logits) as tf.Scalar;
    });
  }
}

// ---------------------------------------------------------------- strategy

/**
 * What a run cannot do while ranks hold slices of parameters (the tensor-parallel strategy, and the hybrid one with
 * tensor > 1), refused naming the field: `onNonFinite: "skip"` (ranks could decide differently on their slices),
 * `clipNorm` (the trainer's norm would be of this rank's slices only) and an optimizer whose update is not
 * element-wise (each rank steps its slices on their own). `where` says which layout, for the message.
 */
export function refuseWithSlices(host: Pick<StrategyHost, 'options' | 'optimizer'>, where: string): void {
  const o = host.options;
  const refuse = (field: string, why: string) => new ConfigError(field, `is not supported with ${where}: ${why}`);
  if (o.onNonFinite === 'skip') throw refuse('trainer.onNonFinite', '"skip" could be decided differently by ranks holding different slices; use "stop"');
  if (o.clipNorm !== undefined) throw refuse('trainer.clipNorm', "the trainer's norm would be of this rank's slices only (clipValue is per element and works)");
  const type = host.optimizer.spec?.type;
  if (type !== undefined && !ELEMENTWISE_OPTIMIZERS.includes(type))
    throw new ConfigError(
      'optimizer.type',
      `tensor parallelism steps each rank's slices on their own, which needs an element-wise update rule (${ELEMENTWISE_OPTIMIZERS.join(', ')}); optimizer "${type}" is not known to be one`,
    );
}

/**
 * Tensor parallelism alone, as a training strategy: every rank of the communicator holds rank r's slices of the
 * model's tensor-parallel layers and of the loss (when it is `vocab-parallel-cross-entropy`) and sees every example
 * (the ranks split each layer, not the data). `setup` starts every rank from rank 0's whole weights and shards them;
 * a step is the trainer's own (`localGradients`: each rank's gradients are its slices' and the replicated weights',
 * and the optimizer steps them where they are); `synchronize` makes the model and the loss whole again (validation,
 * saving), and the next step shards them again; the optimizer's state of the split parameters (Adam's moments, ...)
 * and pruning masks are cut and gathered with them, so a checkpoint holds the unsplit run's state and resumes on any
 * number of ranks. Rank 0 logs. With more than one rank it refuses `trainer.clipNorm` (the trainer's norm would be
 * of this rank's slices; `gradientSquaredNorm` gives the whole one), `onNonFinite: "skip"` (ranks could decide
 * differently on their slices) and an optimizer whose update is not element-wise. Training metrics see this rank's
 * output: a slice of the logits under a vocabulary-parallel head.
 */
export class TensorParallelStrategy implements Omit<Strategy, 'spec'> {
  readonly rank: number;
  readonly worldSize: number;
  readonly isGlobalZero: boolean;
  readonly group: TensorParallelGroup;
  private sharded = false;

  constructor(
    readonly comm: Communicator,
    /** The layers' group over `comm` (by default {@link tensorParallelGroup}`(comm)`). */
    group?: TensorParallelGroup,
  ) {
    this.rank = comm.rank;
    this.worldSize = comm.worldSize;
    this.isGlobalZero = comm.rank === 0;
    this.group = group ?? tensorParallelGroup(comm);
  }

  async setup(host: StrategyHost): Promise<void> {
    if (this.worldSize === 1) return;
    refuseWithSlices(host, `tensor parallelism over ${this.worldSize} ranks`);
    if (tensorParallelParts(host.model).length === 0)
      throw new ConfigError(
        'parallelism',
        `tensor parallelism over ${this.worldSize} ranks needs tensor-parallel layers in the model (column-parallel-dense, parallel-transformer-block, ...)`,
      );
    // Every rank starts from one model's whole weights (each built it from the same seed; this makes sure).
    await broadcastParameters(this.comm, [...host.model.parameters(), ...host.model.buffers()], 0);
    this.shardAll(host);
  }

  /** Cuts the model, the loss and the optimizer's state of the split parameters (restored whole, or gathered by `synchronize`). */
  private shardAll(host: StrategyHost): void {
    if (this.sharded || this.worldSize === 1) return;
    const state = host.optimizer.getState();
    shardModel(host.model, this.group);
    if (isTensorParallel(host.loss)) host.loss.shard(this.group);
    setSplitSlots(host, state, (slot, split) => tf.tidy(() => shardOf(slot, split, this.group)));
    this.sharded = true;
  }

  /** Every rank sees every example. */
  shardSize(size: number): number {
    return size;
  }

  shard(order: Int32Array): Int32Array {
    return order;
  }

  async gradients(batches: Batch[], host: StrategyHost, state?: Pick<TrainingState, 'step' | 'epoch'>): Promise<StepGradients> {
    this.shardAll(host);
    return host.localGradients(batches, state);
  }

  /** Makes the model, the loss and the optimizer's state whole (so validation, checkpoints and the saved model are the unsplit ones). */
  async synchronize(host: StrategyHost): Promise<void> {
    if (!this.sharded) return;
    const state = host.optimizer.getState();
    unshardModel(host.model);
    if (isTensorParallel(host.loss)) host.loss.unshard();
    setSplitSlots(host, state, (slot, split) => gatherWhole(slot, split, this.group));
    this.sharded = false;
  }

  async teardown(host: StrategyHost): Promise<void> {
    await this.synchronize(host);
  }
}

export const tensorParallel = definePlugin({
  kind: 'parallelism',
  name: 'tensor-parallel',
  description: "tensor (intra-layer) model parallelism over Open MPI's world: each rank holds slices of the tensor-parallel layers (Megatron-LM)",
  schema: z.object({}),
  properties: [
    'trained by the trainer on N ranks, the weights and validation loss of one process with the unsplit layers (tensor-parallel.test.ts)',
    'its checkpoints hold whole weights and optimizer state: resumed on N ranks, bit-identical; on one process, within float32 rounding',
  ],
  create: () => new TensorParallelStrategy(worldCommunicator('tensor-parallel')),
});

// ---------------------------------------------------------------- plugins

export const columnParallelDense = definePlugin({
  kind: 'layer',
  name: 'column-parallel-dense',
  description: 'dense layer with W cut by output columns over a tensor-parallel group (Megatron-LM, Shoeybi et al. 2019, §3 eq. 3)',
  schema: denseSchema.extend({
    /** All-gather the output slices into the whole output (otherwise each rank keeps its slice, for a row-parallel layer next). */
    gatherOutput: z.boolean().default(false),
  }),
  examples: [
    { options: { units: 4 }, inputShape: [2, 3] },
    { options: { units: 2, activation: 'relu', gatherOutput: true }, inputShape: [2, 3, 5] },
  ],
  properties: [
    'world of one: exactly dense built from the same seed (outputs and gradients)',
    'mpirun -np 2 and 4: output (gathered) and gradients of input and weights equal dense within float32 rounding',
  ],
  create: (opts, ctx) => new ColumnParallelDense(opts, ctx),
});

export const rowParallelDense = definePlugin({
  kind: 'layer',
  name: 'row-parallel-dense',
  description: 'dense layer with W cut by input rows, partial products all-reduced, bias added once (Megatron-LM §3 eq. 4)',
  schema: denseSchema.extend({
    /** The input is already cut by features (a column-parallel layer's output); false: slice a replicated input first. */
    inputIsParallel: z.boolean().default(true),
  }),
  examples: [
    { options: { units: 3 }, inputShape: [2, 4] },
    { options: { units: 2, activation: 'tanh', inputIsParallel: false }, inputShape: [2, 3, 4] },
  ],
  properties: ['world of one: exactly dense built from the same seed', 'mpirun -np 2 and 4: output and gradients equal dense within float32 rounding'],
  create: (opts, ctx) => new RowParallelDense(opts, ctx),
});

export const parallelAttention = definePlugin({
  kind: 'layer',
  name: 'parallel-attention',
  description: 'multi-head self-attention split by heads over a tensor-parallel group: QKV column-, output row-parallel (Megatron-LM §3 Fig. 3b)',
  schema: attentionSchema,
  examples: [
    { options: { numHeads: 2 }, inputShape: [2, 3, 4] },
    { options: { numHeads: 2, causal: true, dropout: 0.3 }, inputShape: [1, 4, 4] },
  ],
  properties: [
    'world of one: exactly multi-head-attention built from the same seed (with padding and causal masks, dropout)',
    'mpirun -np 2 and 4: outputs and gradients equal multi-head-attention within float32 rounding',
  ],
  create: (opts, ctx) => new ParallelAttention(opts, ctx),
});

export const parallelTransformerBlock = definePlugin({
  kind: 'layer',
  name: 'parallel-transformer-block',
  description: 'Transformer layer with head-split attention and a column-then-row MLP: 2 all-reduces forward, 2 backward (Megatron-LM §3)',
  schema: blockSchema,
  examples: [
    { options: { numHeads: 2, ff: 6, dropout: 0 }, inputShape: [2, 3, 4] },
    { options: { numHeads: 2, ff: 4, dropout: 0.2, preNorm: true, causal: true, activation: 'gelu' }, inputShape: [1, 3, 4] },
  ],
  properties: [
    'world of one: exactly transformer-encoder built from the same seed',
    'mpirun -np 2 and 4: outputs and gradients of every weight equal transformer-encoder within float32 rounding',
  ],
  create: (opts, ctx) => new ParallelTransformerBlock(opts, ctx),
});

export const vocabParallelEmbedding = definePlugin({
  kind: 'layer',
  name: 'vocab-parallel-embedding',
  description: 'embedding table cut by vocabulary rows over a tensor-parallel group, lookups all-reduced (Megatron-LM §3)',
  schema: embeddingSchema,
  examples: [{ options: { vocabSize: 8, dim: 3 }, inputShape: [2, 4], inputInts: 8 }],
  properties: ['world of one: exactly embedding built from the same seed', 'mpirun -np 2 and 4: outputs and table gradient equal embedding'],
  create: (opts, ctx) => new VocabParallelEmbedding(opts, ctx),
});

export const vocabParallelCrossEntropy = definePlugin({
  kind: 'loss',
  name: 'vocab-parallel-cross-entropy',
  description: 'softmax cross-entropy of vocabulary-parallel logits: max over ranks, all-reduced sum of exp and target logit (Megatron-LM)',
  schema: crossEntropySchema,
  examples: [
    { inputShape: [4, 6], target: 'classes' },
    { options: { ignoreIndex: 0 }, inputShape: [2, 3, 4], target: 'classes' },
    { options: { labelSmoothing: 0.1 }, inputShape: [3, 5], target: 'classes' },
  ],
  properties: [
    'world of one: loss and gradient equal sparse-categorical-crossentropy (ignoreIndex, labelSmoothing) within float32 rounding',
    'mpirun -np 2 and 4: loss and gradient of the cut logits equal the unsplit loss on the whole logits',
  ],
  create: ({ ignoreIndex, labelSmoothing }) => new VocabParallelCrossEntropy(ignoreIndex, labelSmoothing),
});

/** Every plugin of this file, for `plugins/index.ts`. */
export const tensorParallelPlugins = [
  columnParallelDense,
  rowParallelDense,
  parallelAttention,
  parallelTransformerBlock,
  vocabParallelEmbedding,
  vocabParallelCrossEntropy,
];
