/**
 * ZeRO stage 1, optimizer-state partitioning (P_os of Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward
 * Training Trillion Parameter Models", §5.1), over a data-parallel {@link Communicator} of N ranks.
 *
 * The trainable parameters, concatenated in the model's order, form one flat vector of Ψ elements, cut into N equal
 * shards of S = ⌈Ψ / N⌉ (the last one padded). Rank r owns shard r: the optimizer keeps moments (Adam's m and v)
 * for those S elements only, so its state takes K·Ψ/N floats per rank instead of K·Ψ (the paper's 4Ψ + KΨ/N_d of
 * §5.1, in float32). One step:
 *
 * 1. gradients are **reduce-scattered** (MPI_Reduce_scatter_block, sum, then ÷ N): rank r receives the average
 *    gradient of its shard only (§7.2: half of a ring all-reduce's volume);
 * 2. the trainer's optimizer steps "piece" parameters: one 1-D variable per (parameter ∩ shard), carrying the
 *    parameter's name and role, so parameter groups, `noDecay` roles and the checkpoint's slot names apply as for the
 *    whole parameter. This needs an update rule that is element-wise (each element's new value and moments depend
 *    only on that element's gradient and moments): Adam/AdamW, SGD with momentum, RMSprop and Adagrad are;
 * 3. the updated shards are **all-gathered** (MPI_Allgather) into every rank's parameters, lazily: before the next
 *    step's forward pass, or when the trainer asks for the whole model ({@link ZeroShards.gather}).
 *
 * Reduce-scatter plus all-gather move 2(N−1)/N·Ψ floats per rank, as a ring all-reduce does (§7.2.1): the memory
 * saving costs no extra volume. The step's loss travels in the reduce-scatter (one extra element per block).
 *
 * Checkpoints hold the unsharded state: {@link ZeroShards.consolidate} all-gathers every moment shard and hands
 * rank 0's optimizer the whole state, in the format of an unsharded run (slot per parameter, parameter's shape), for
 * the checkpoint that follows; the next step cuts it back to rank 0's shard. So a checkpoint resumes on any number
 * of data-parallel ranks, with or without ZeRO (the state is re-cut by {@link ZeroShards.shardState}).
 */
import * as tf from '@tensorflow/tfjs-core';
import { applyMasks, ConfigError, type Communicator, type Optimizer, type OptimizerState, type Parameter } from '../../core';

/** Optimizers whose update is element-wise, so updating shards of a parameter gives the whole parameter's update. */
export const ELEMENTWISE_OPTIMIZERS: readonly string[] = ['adam', 'adamw', 'sgd', 'rmsprop', 'adagrad'];

/** One parameter's part of this rank's shard: flat elements [from, to) of the parameter, at `at` in the shard. */
interface Piece {
  readonly param: Parameter;
  readonly from: number;
  readonly to: number;
  readonly at: number;
  /** What the optimizer steps: a 1-D variable with the parameter's name and role. */
  readonly shard: Parameter;
}

/** Bytes of the optimizer's per-parameter state (moments): what ZeRO-1 divides by N. */
export function optimizerStateBytes(state: OptimizerState): number {
  let n = 0;
  for (const slots of Object.values(state.slots)) for (const s of Object.values(slots)) n += s.values.byteLength;
  return n;
}

/** ZeRO-1 partitioning of `params` (the same list, in the same order, on every rank of `comm`). */
export class ZeroShards {
  /** Ψ: elements of all the parameters. */
  readonly total: number;
  /** S: elements per shard (the last shard is padded with zeros). */
  readonly shardSize: number;
  readonly pieces: readonly Piece[];
  /** Offset of each parameter in the flat vector. */
  private readonly offsets: number[];
  /** The pieces hold values newer than the parameters (the optimizer stepped them). */
  private stale = false;
  /**
   * Consolidated since the last step: rank 0's optimizer holds the whole, unsharded state (for a checkpoint). The
   * same on every rank, so that every rank skips (or joins) the next consolidation alike.
   */
  private consolidated = false;

  constructor(
    readonly comm: Communicator,
    readonly params: readonly Parameter[],
    private readonly optimizer: Optimizer,
  ) {
    const type = optimizer.spec?.type;
    if (type !== undefined && !ELEMENTWISE_OPTIMIZERS.includes(type))
      throw new ConfigError(
        'parallelism.zero',
        `ZeRO-1 shards the optimizer's state element by element, which needs an element-wise update rule (${ELEMENTWISE_OPTIMIZERS.join(', ')}); optimizer "${type}" is not known to be one`,
      );
    this.offsets = [];
    let total = 0;
    for (const p of params) {
      this.offsets.push(total);
      total += p.variable.size;
    }
    this.total = total;
    const n = comm.worldSize;
    this.shardSize = Math.ceil(total / n);
    const lo = comm.rank * this.shardSize;
    const hi = Math.min(lo + this.shardSize, total);
    const pieces: Piece[] = [];
    params.forEach((p, i) => {
      const o = this.offsets[i]!;
      const a = Math.max(lo, o);
      const b = Math.min(hi, o + p.variable.size);
      if (a >= b) return;
      // In tidy: tf.variable keeps its initial value as a tensor of its own.
      const variable = tf.tidy(() => tf.variable(tf.slice(tf.reshape(p.variable, [-1]), a - o, b - a), true));
      pieces.push({ param: p, from: a - o, to: b - o, at: a - lo, shard: { name: p.name, role: p.role, trainable: true, variable } });
    });
    this.pieces = pieces;
  }

  /** The parameters the optimizer steps on this rank: its pieces. */
  shardParameters(): Parameter[] {
    return this.pieces.map((q) => q.shard);
  }

  /**
   * Cuts the optimizer's state to this rank's shard: slots of a whole parameter (restored from a checkpoint, or
   * consolidated) become the slots of its piece here, slots of parameters outside the shard are dropped. State
   * already cut (slot shape = piece shape) stays as it is.
   */
  shardState(): void {
    const state = this.optimizer.getState();
    const byName = new Map(this.pieces.map((q) => [q.param.name, q]));
    const slots: OptimizerState['slots'] = {};
    for (const [name, slot] of Object.entries(state.slots)) {
      const q = byName.get(name);
      if (!q) continue;
      slots[name] = Object.fromEntries(
        Object.entries(slot).map(([k, s]) => {
          const whole = s.values.length === q.param.variable.size && s.shape.join() === q.param.variable.shape.join();
          if (!whole && s.values.length !== q.to - q.from)
            throw new ConfigError(
              'optimizer state',
              `slot "${name}.${k}" has ${s.values.length} values: neither the parameter's ${q.param.variable.size} nor this shard's ${q.to - q.from}`,
            );
          return [k, { shape: [q.to - q.from], values: whole ? s.values.slice(q.from, q.to) : s.values }];
        }),
      );
    }
    this.optimizer.setState({ ...state, slots }, this.shardParameters());
    this.consolidated = false;
  }

  /**
   * Reduce-scatters `grads` (every parameter's gradient, by name; disposed here) and the step's `loss`: returns
   * the average over the ranks of this rank's pieces of the gradient, and of the loss. The pieces are then set to
   * the parameters' values, for the optimizer to step (the parameters must be current: {@link gather} first).
   */
  async reduceGradients(grads: Record<string, tf.Tensor>, loss: number): Promise<{ loss: number; grads: Record<string, tf.Tensor> }> {
    const n = this.comm.worldSize;
    const s = this.shardSize;
    const block = s + 1; // the shard's gradient, then the loss
    const send = new Float32Array(n * block);
    try {
      for (const [i, p] of this.params.entries()) {
        const g = grads[p.name];
        if (!g) throw new Error(`zero: no gradient for parameter "${p.name}"`);
        const values = (await g.data()) as Float32Array; // asynchronously: webgpu has no synchronous read
        // Copy the gradient into the blocks it spans, one contiguous run per block.
        for (let k = 0; k < values.length; ) {
          const flat = this.offsets[i]! + k;
          const b = Math.floor(flat / s);
          const len = Math.min(values.length - k, (b + 1) * s - flat);
          send.set(values.subarray(k, k + len), b * block + (flat - b * s));
          k += len;
        }
      }
      for (let b = 0; b < n; b++) send[b * block + s] = loss;
    } finally {
      tf.dispose(Object.values(grads));
    }
    const recv = new Float32Array(block);
    await this.comm.reduceScatter(send, recv);
    const scale = 1 / n;
    const out: Record<string, tf.Tensor> = {};
    for (const q of this.pieces) {
      const g = recv.slice(q.at, q.at + q.to - q.from);
      for (let j = 0; j < g.length; j++) g[j] = g[j]! * scale;
      out[q.shard.name] = tf.tensor1d(g, 'float32');
    }
    // The pieces start the step from the parameters' values (a callback or a restore may have changed them).
    for (const q of this.pieces) tf.tidy(() => q.shard.variable.assign(tf.slice(tf.reshape(q.param.variable, [-1]), q.from, q.to - q.from)));
    if (this.consolidated) {
      if (this.comm.rank === 0) this.shardState();
      this.consolidated = false;
    }
    this.stale = true; // the trainer steps the pieces next
    return { loss: recv[s]! * scale, grads: out };
  }

  /** All-gathers the stepped shards into every rank's parameters (collective; nothing to do if none stepped). */
  async gather(): Promise<void> {
    if (!this.stale) return;
    const s = this.shardSize;
    const mine = new Float32Array(s);
    for (const q of this.pieces) mine.set((await q.shard.variable.data()) as Float32Array, q.at);
    const all = new Float32Array(s * this.comm.worldSize);
    await this.comm.allGather(mine, all);
    this.params.forEach((p, i) => {
      const o = this.offsets[i]!;
      tf.tidy(() => p.variable.assign(tf.tensor(all.slice(o, o + p.variable.size), p.variable.shape, 'float32')));
    });
    applyMasks(this.params); // pruned weights stay 0, as after the trainer's own step
    this.stale = false;
  }

  /**
   * Gathers every rank's moment shards and gives rank 0's optimizer the whole state (one slot per parameter, of its
   * shape: the unsharded format), for a checkpoint. Collective. Other ranks keep their shard; rank 0 cuts its state
   * back at the next step.
   */
  async consolidate(): Promise<void> {
    if (this.consolidated) return;
    const state = this.optimizer.getState();
    // Slots in one order on every rank (sorted names); a rank whose shard is empty has none, so the count is rank 0's.
    const names = [...new Set(Object.values(state.slots).flatMap((sl) => Object.keys(sl)))].sort();
    const count = Float32Array.of(names.length);
    await this.comm.broadcast(count, 0);
    const k = count[0]!;
    if (k === 0) return; // no step taken yet: no moments
    if (names.length !== 0 && names.length !== k) throw new Error(`zero: rank ${this.comm.rank} has ${names.length} optimizer slots, rank 0 has ${k}`);
    const s = this.shardSize;
    const mine = new Float32Array(k * s);
    names.forEach((name, j) => {
      for (const q of this.pieces) {
        const v = state.slots[q.param.name]?.[name]?.values;
        if (v) mine.set(v, j * s + q.at);
      }
    });
    const all = new Float32Array(k * s * this.comm.worldSize);
    await this.comm.allGather(mine, all);
    this.consolidated = true;
    if (this.comm.rank !== 0) return;
    const flat = names.map((_, j) => {
      const v = new Float32Array(s * this.comm.worldSize);
      for (let b = 0; b < this.comm.worldSize; b++) v.set(all.subarray(b * k * s + j * s, b * k * s + (j + 1) * s), b * s);
      return v;
    });
    const slots: OptimizerState['slots'] = {};
    this.params.forEach((p, i) => {
      const o = this.offsets[i]!;
      slots[p.name] = Object.fromEntries(names.map((name, j) => [name, { shape: [...p.variable.shape], values: flat[j]!.slice(o, o + p.variable.size) }]));
    });
    this.optimizer.setState({ ...state, slots }, this.params);
  }

  dispose(): void {
    tf.dispose(this.pieces.map((q) => q.shard.variable));
  }
}
