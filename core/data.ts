/**
 * In-memory data sets and the order in which the trainer visits them. The order of epoch e is a permutation
 * drawn from a generator seeded by (seed, e), so it depends on nothing but the seed and the epoch: a resumed run
 * visits the same batches as an uninterrupted one.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, DataError } from './errors';
import type { Batch, Dataset } from './interfaces';
import { Rng } from './random';

type Numeric = Float32Array | Int32Array;

/** Examples stored row-major in typed arrays: example i occupies x[i*xSize .. (i+1)*xSize). */
export class TensorDataset implements Dataset {
  readonly size: number;
  private readonly xSize: number;
  private readonly ySize: number;
  readonly lengths?: () => Int32Array;

  constructor(
    readonly name: string,
    private readonly x: Numeric,
    readonly xShape: number[],
    private readonly y: Numeric,
    readonly yShape: number[],
    /** Each example's length (tokens before padding), for batching by length; omit where it means nothing. */
    lengths?: Int32Array,
  ) {
    if (lengths) this.lengths = () => lengths;
    this.xSize = xShape.reduce((a, b) => a * b, 1);
    this.ySize = yShape.reduce((a, b) => a * b, 1);
    this.size = x.length / this.xSize;
    if (!Number.isInteger(this.size) || y.length / this.ySize !== this.size) {
      throw new DataError(`${name}: x holds ${x.length / this.xSize} examples of shape [${xShape}] but y holds ${y.length / this.ySize} of shape [${yShape}]`);
    }
  }

  batch(indices: ArrayLike<number>): Batch {
    const n = indices.length;
    const xb = new (this.x.constructor as { new (n: number): Numeric })(n * this.xSize);
    const yb = new (this.y.constructor as { new (n: number): Numeric })(n * this.ySize);
    for (let i = 0; i < n; i++) {
      const j = indices[i]!;
      if (j < 0 || j >= this.size) throw new RangeError(`${this.name}: index ${j} out of range [0, ${this.size})`);
      xb.set(this.x.subarray(j * this.xSize, (j + 1) * this.xSize), i * this.xSize);
      yb.set(this.y.subarray(j * this.ySize, (j + 1) * this.ySize), i * this.ySize);
    }
    const dtype = (a: Numeric) => (a instanceof Int32Array ? 'int32' : 'float32');
    return { x: tf.tensor(xb, [n, ...this.xShape], dtype(this.x)), y: tf.tensor(yb, [n, ...this.yShape], dtype(this.y)) };
  }

  /** Examples [start, end) as a new data set sharing storage. */
  slice(start: number, end: number, name = `${this.name}[${start}:${end}]`): TensorDataset {
    const e = Math.min(end, this.size);
    const lengths = this.lengths?.().subarray(start, e);
    return new TensorDataset(
      name,
      this.x.subarray(start * this.xSize, e * this.xSize),
      this.xShape,
      this.y.subarray(start * this.ySize, e * this.ySize),
      this.yShape,
      lengths,
    );
  }
}

/** A view of `indices` of another data set. */
export class SubsetDataset implements Dataset {
  constructor(
    readonly name: string,
    private readonly base: Dataset,
    private readonly indices: Int32Array,
  ) {
    const all = base.lengths?.();
    if (all) {
      const lengths = Int32Array.from(indices, (i) => all[i]!);
      this.lengths = () => lengths;
    }
  }
  readonly lengths?: () => Int32Array;
  get size(): number {
    return this.indices.length;
  }
  get xShape(): number[] {
    return this.base.xShape;
  }
  get yShape(): number[] {
    return this.base.yShape;
  }
  batch(indices: ArrayLike<number>): Batch {
    return this.base.batch(Array.from(indices, (i) => this.indices[i]!));
  }
}

/** The first `n` examples. */
export function take(ds: Dataset, n: number): Dataset {
  if (n >= ds.size) return ds;
  return new SubsetDataset(
    `${ds.name}[:${n}]`,
    ds,
    Int32Array.from({ length: n }, (_, i) => i),
  );
}

/** Splits off the last `fraction` of `ds` for validation (Keras's validation_split: no shuffling before the split). */
export function splitTail(ds: Dataset, fraction: number): { train: Dataset; validation: Dataset | null } {
  if (fraction < 0 || fraction >= 1) throw new ConfigError('trainer.validationSplit', `expected a fraction in [0, 1), got ${fraction}`);
  const nVal = Math.floor(ds.size * fraction);
  if (nVal === 0) return { train: ds, validation: null };
  const nTrain = ds.size - nVal;
  const range = (a: number, b: number) => Int32Array.from({ length: b - a }, (_, i) => a + i);
  return {
    train: new SubsetDataset(`${ds.name}:train`, ds, range(0, nTrain)),
    validation: new SubsetDataset(`${ds.name}:validation`, ds, range(nTrain, ds.size)),
  };
}

/**
 * Fold `index` of k-fold cross-validation (Stone 1974): the examples are shuffled once from `seed` and cut into k
 * folds whose sizes differ by at most one; fold `index` is the validation set and the other k − 1 are training.
 * Over index = 0..k−1 every example is validated exactly once.
 */
export function kFoldSplit(ds: Dataset, k: number, index: number, seed: number): { train: Dataset; validation: Dataset } {
  if (!Number.isInteger(k) || k < 2 || k > ds.size)
    throw new ConfigError('folds', `expected an integer k with 2 ≤ k ≤ ${ds.size} (the data set size), got ${k}`);
  if (!Number.isInteger(index) || index < 0 || index >= k) throw new ConfigError('fold', `expected a fold index in [0, ${k}), got ${index}`);
  const order = epochOrder(ds.size, mixSeed(seed, 0x6b66), 0, true);
  const start = (i: number) => Math.floor((i * ds.size) / k);
  const [a, b] = [start(index), start(index + 1)];
  return {
    train: new SubsetDataset(`${ds.name}:fold${index + 1}of${k}:train`, ds, Int32Array.from([...order.subarray(0, a), ...order.subarray(b)])),
    validation: new SubsetDataset(`${ds.name}:fold${index + 1}of${k}:validation`, ds, order.slice(a, b)),
  };
}

/** The visiting order for one epoch: shuffled from (seed, epoch) or in order. */
export function epochOrder(size: number, seed: number, epoch: number, shuffle: boolean): Int32Array {
  const order = Int32Array.from({ length: size }, (_, i) => i);
  if (shuffle) new Rng(mixSeed(seed, epoch)).shuffle(order);
  return order;
}

/**
 * Batches of similar length from an epoch's order (a bucket iterator): the order is cut into pools of
 * `poolBatches · batchSize` examples, each pool is sorted by length (stably, so ties keep the shuffled order) and
 * cut into batches, and the list of all batches is shuffled from `seed`. Every example appears once; the result
 * depends only on (order, lengths, seed), so a resumed run sees the same batches.
 */
export function bucketedBatches(order: Int32Array, lengths: Int32Array, batchSize: number, poolBatches: number, seed: number): Int32Array[] {
  const out: Int32Array[] = [];
  const pool = batchSize * poolBatches;
  for (let s = 0; s < order.length; s += pool) {
    const chunk = Array.from(order.subarray(s, s + pool));
    chunk.sort((a, b) => lengths[a]! - lengths[b]!);
    for (let b = 0; b < chunk.length; b += batchSize) out.push(Int32Array.from(chunk.slice(b, b + batchSize)));
  }
  const perm = Int32Array.from(out.keys());
  new Rng(seed).shuffle(perm);
  return Array.from(perm, (i) => out[i]!);
}

/** Splits an order into batches of `batchSize` (the last one may be smaller). */
export function* batchesOf(order: Int32Array, batchSize: number, startBatch = 0): Generator<Int32Array> {
  for (let s = startBatch * batchSize; s < order.length; s += batchSize) yield order.subarray(s, s + batchSize);
}

/** Derives an independent 31-bit seed from a seed and a counter (splitmix-style hashing). */
export function mixSeed(seed: number, k: number): number {
  let h = (seed ^ Math.imul(k + 0x9e3779b9, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return (h ^ (h >>> 16)) >>> 1;
}
