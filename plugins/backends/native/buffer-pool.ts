import * as os from 'node:os';
import type * as tf from '@tensorflow/tfjs-core';
import { setHostFloats } from '../../../core/backend';
import { ConfigError } from '../../../core/errors';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

/**
 * Output buffers of the native kernels, reused once tfjs releases them. A training step allocates gigabytes of
 * short-lived Float32Arrays; fresh ones cost page faults and zeroing, and every 64 MB of them makes V8 start a
 * full garbage collection (a third of a Transformer step's time here). A buffer goes back to the pool when the
 * cpu backend disposes its data, unless it ever left the backend (dataSync/data hand out the live array, so those
 * are never reused) or is a view. At most `limitBytes` are held; past that the buffers released longest ago are
 * dropped first, so that a new workload (another model in the same process) is not starved by sizes it never asks for.
 *
 * Requests are served by size class ({@link sizeClass}: at most 1/8 more than asked): a buffer released at one
 * length is handed out again for any length of its class, as an exact-length view from offset 0 of its memory,
 * and, when its class has nothing free, from the nearest of the 4 classes above it that has. Batches bucketed by
 * length change every activation's size from one step to the next (a G2P Transformer at batch 256); reused only at
 * equal lengths, most of its buffers were new ones: over 120 steps (1 thread, Zen 5, profiled) allocating took
 * 29.5 s of samples, 17.4 s with size classes. Counted as bytes of new typed arrays, 20 steps and a validation
 * allocated 12.9 GB served from their own class only and 3.4 GB with the 4 classes above (most of it the first
 * step's); V8 starts a full collection for every 64 MB of new array memory, so this was most of that run's
 * garbage collection. Inside the backend an array's `buffer` may therefore be longer than the array (as for the
 * views tfjs's own slices return); one read out of it (dataSync, data) is first replaced by an exact copy.
 */
export class BufferPool {
  /** Released arrays by the length of their memory (a size class), each handed out again as a view of any length in it. */
  private readonly free = new Map<number, Float32Array[]>();
  /** The pooled arrays in the order they were released (a Map keeps insertion order): the oldest are dropped first. */
  private readonly byAge = new Map<Float32Array, true>();
  private readonly ours = new WeakSet<Float32Array>();
  private readonly escaped = new WeakSet<object>();
  private held = 0;
  /** How many allocations were served from the pool (for tests and benchmarks). */
  reused = 0;
  constructor(
    private readonly limitBytes = 512 * 2 ** 20,
    private readonly minLength = 1024,
  ) {}

  /** A buffer of n floats whose contents are arbitrary: for kernels that write every element. */
  fresh(n: number): Float32Array {
    return this.take(n) ?? this.allocate(n);
  }

  /** A buffer of n zeros: for kernels that accumulate into their output. */
  zeroed(n: number): Float32Array {
    return this.take(n)?.fill(0) ?? this.allocate(n);
  }

  /** Whether `values` is one of the pool's arrays and shorter than its memory (a request served from a larger class). */
  isView(values: unknown): boolean {
    return values instanceof Float32Array && this.ours.has(values) && values.byteLength !== values.buffer.byteLength;
  }

  /** Marks an array handed out of the backend (dataSync, data): it is never reused. */
  escape(values: unknown): void {
    if (values && typeof values === 'object') this.escaped.add(values);
  }

  /**
   * Sees every array the backend stores: one that is a view into a pooled array's memory (tfjs's slice kernels
   * return `subarray`s) pins that array, which is then never reused.
   */
  stored(values: unknown): void {
    if (!ArrayBuffer.isView(values) || this.ours.has(values as Float32Array)) return;
    const parent = this.byBuffer.get(values.buffer);
    if (parent) this.escaped.add(parent);
  }
  private readonly byBuffer = new WeakMap<ArrayBufferLike, Float32Array>();

  /** Takes back the array of a tensor the backend disposed. */
  release(values: unknown): void {
    if (!(values instanceof Float32Array) || !this.ours.has(values) || this.escaped.has(values) || this.byAge.has(values)) return;
    const bytes = values.buffer.byteLength;
    if (bytes > this.limitBytes) return;
    for (const old of this.byAge.keys()) {
      if (this.held + bytes <= this.limitBytes) break;
      this.remove(old);
    }
    let list = this.free.get(bytes / 4);
    if (!list) this.free.set(bytes / 4, (list = []));
    list.push(values);
    this.byAge.set(values, true);
    this.held += bytes;
  }

  /** Bytes held for reuse now. */
  get heldBytes(): number {
    return this.held;
  }

  private remove(a: Float32Array): void {
    const key = a.buffer.byteLength / 4;
    const list = this.free.get(key)!;
    list.splice(list.indexOf(a), 1);
    if (!list.length) this.free.delete(key);
    this.byAge.delete(a);
    this.held -= a.buffer.byteLength;
  }

  private take(n: number): Float32Array | undefined {
    if (n < this.minLength) return undefined;
    // Its own class first, then up to LARGER_CLASSES larger ones (at most ~1.5 times the memory asked for).
    let a: Float32Array | undefined;
    for (let c = sizeClass(n), i = 0; !a && i <= LARGER_CLASSES; i++, c = sizeClass(c + 1)) {
      const list = this.free.get(c);
      a = list?.[list.length - 1];
    }
    if (!a) return undefined;
    this.remove(a);
    this.reused++;
    return a.length === n ? a : this.adopt(new Float32Array(a.buffer, 0, n));
  }

  private allocate(n: number): Float32Array {
    if (n < this.minLength) return new Float32Array(n);
    return this.adopt(new Float32Array(new ArrayBuffer(sizeClass(n) * 4), 0, n));
  }

  /** Marks `a` as the pool's and as the owner of its memory (for {@link stored}'s pins). */
  private adopt(a: Float32Array): Float32Array {
    this.ours.add(a);
    this.byBuffer.set(a.buffer, a);
    return a;
  }
}

/**
 * How many classes above its own a request may be served from when its own has nothing free. Four classes are at
 * most 1.5 times the length (8 classes per doubling). A G2P batch's activations change length with every bucket;
 * served from their own class only, 20 steps at batch 256 allocated 12.9 GB afresh.
 */
const LARGER_CLASSES = 4;

/**
 * The length of the buffer a request for n floats is served from: n rounded up to a multiple of 2^(e−3), where
 * 2^e ≤ n < 2^(e+1), so at most 1/8 more than asked, and 8 classes per doubling (n itself up to 16).
 */
export function sizeClass(n: number): number {
  if (n <= 16) return n;
  const step = 2 ** (Math.floor(Math.log2(n)) - 3);
  return Math.ceil(n / step) * step;
}

/**
 * The bytes a backend's pool holds at most: `LOOM_BUFFER_POOL_MB` if set, else an eighth of the machine's memory,
 * between 512 MiB and 2 GiB. 512 MiB held too little for a G2P Transformer step at batch 256 (batches bucketed by
 * length change their shapes every batch, and only equal lengths are reused): 30 steps allocated 37.7 GB afresh with
 * 512 MiB and 19.4 GB with 2 GiB, and the runs took 190 and 149 s, setup and a one-word test included (1 thread,
 * 2-core AMD Zen 5 shared with two trainings).
 */
export function poolLimitBytes(env: NodeJS.ProcessEnv = process.env, totalMemory = os.totalmem()): number {
  const text = env.LOOM_BUFFER_POOL_MB;
  if (text !== undefined && text !== '') {
    const mb = Number(text);
    if (!(Number.isFinite(mb) && mb >= 0)) throw new ConfigError('LOOM_BUFFER_POOL_MB', `must be a number of MiB, 0 or more, got "${text}"`);
    return Math.floor(mb * 2 ** 20);
  }
  return Math.min(2 * 2 ** 30, Math.max(512 * 2 ** 20, Math.floor(totalMemory / 8)));
}

/** A pool hooked into a cpu backend instance, and how to unhook it. */
export interface HookedPool {
  pool: BufferPool;
  restore(): void;
}

const pools = new WeakMap<object, HookedPool>();

/**
 * The buffer pool of a cpu backend instance (one per instance, made on first use), hooked into its disposeData
 * (release), readSync (escape) and makeTensorInfo (stored views), and the backend's host arrays (core's hostFloats).
 */
export function hookedPool(backend: MathBackendCPU): HookedPool {
  let entry = pools.get(backend);
  if (!entry) {
    const pool = new BufferPool(poolLimitBytes());
    const { disposeData, readSync, makeTensorInfo } = backend;
    backend.disposeData = function (dataId: object, force?: boolean) {
      const values = this.data.get(dataId)?.values;
      const released = disposeData.call(this, dataId, force);
      if (released && values && !this.data.has(dataId)) pool.release(values);
      return released;
    };
    backend.readSync = function (dataId: object) {
      const data = this.data.get(dataId);
      if (data && pool.isView(data.values)) {
        // A view of a larger pooled buffer: the tensor keeps, and the reader gets, an exact copy (code that reads an
        // array's `buffer` sees this tensor's values only), and the memory goes back to the pool.
        const view = data.values as Float32Array;
        data.values = view.slice();
        pool.release(view);
      }
      pool.escape(data?.values);
      return readSync.call(this, dataId);
    };
    backend.makeTensorInfo = function (shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues | string[]) {
      pool.stored(values);
      return makeTensorInfo.call(this, shape, dtype, values);
    };
    // Arrays filled on the host for new tensors (dropout masks) come from the pool too, and go back to it.
    setHostFloats(backend, (n) => pool.fresh(n));
    entry = {
      pool,
      restore() {
        backend.disposeData = disposeData;
        backend.readSync = readSync;
        backend.makeTensorInfo = makeTensorInfo;
        setHostFloats(backend, null);
        pools.delete(backend);
      },
    };
    pools.set(backend, entry);
  }
  return entry;
}
