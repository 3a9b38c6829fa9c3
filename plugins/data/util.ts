/**
 * Small pieces shared by the text data sets: a lazily computed per-process value (parsed corpora are read once),
 * a stable string hash for deterministic splits, and a data set of next-token windows over a token stream.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Batch, Dataset } from '../../core';

/** Computes `fn()` on first call and returns the same (read-only) value afterwards. */
export function once<T>(fn: () => T): () => T {
  let value: T | undefined;
  let done = false;
  return () => {
    if (!done) {
      value = fn();
      done = true;
    }
    return value as T;
  };
}

/**
 * 32-bit FNV-1a over the UTF-16 code units of `s`. Used to assign items to splits: the assignment depends only on
 * the item's key, not on its position or on the other items, so it is stable when the source grows.
 */
export function stableHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Windows over a token stream for next-token prediction: example i is x = tokens[s .. s+len), y = tokens[s+1 ..
 * s+len+1) with s = start(i). Both are int32 [len]. The caller guarantees start(i) + len + 1 <= tokens.length.
 */
export class TokenWindows implements Dataset {
  readonly xShape: number[];
  readonly yShape: number[];

  constructor(
    readonly name: string,
    readonly tokens: Int32Array,
    readonly len: number,
    readonly size: number,
    private readonly start: (i: number) => number,
  ) {
    this.xShape = [len];
    this.yShape = [len];
  }

  batch(indices: ArrayLike<number>): Batch {
    const n = indices.length;
    const x = new Int32Array(n * this.len);
    const y = new Int32Array(n * this.len);
    for (let r = 0; r < n; r++) {
      const i = indices[r]!;
      if (!(i >= 0 && i < this.size)) throw new RangeError(`${this.name}: index ${i} out of range [0, ${this.size})`);
      const s = this.start(i);
      x.set(this.tokens.subarray(s, s + this.len), r * this.len);
      y.set(this.tokens.subarray(s + 1, s + this.len + 1), r * this.len);
    }
    return { x: tf.tensor2d(x, [n, this.len], 'int32'), y: tf.tensor2d(y, [n, this.len], 'int32') };
  }
}
