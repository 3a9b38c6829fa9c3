import * as os from 'node:os';
import type * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../../../core/errors';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';

/**
 * Output buffers of the native kernels, reused once tfjs releases them. A training step allocates gigabytes of
 * short-lived Float32Arrays; fresh ones cost page faults and zeroing, and every 64 MB of them makes V8 start a
 * full garbage collection (a third of a Transformer step's time here). A buffer goes back to the pool when the
 * cpu backend disposes its data, unless it ever left the backend (dataSync/data hand out the live array, so those
 * are never reused) or is a view. At most `limitBytes` are held; past that the buffers released longest ago are
 * dropped first, so that a new workload (another model in the same process) is not starved by sizes it never asks for.
 */
export class BufferPool {
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
    if (values.byteLength > this.limitBytes) return;
    for (const old of this.byAge.keys()) {
      if (this.held + values.byteLength <= this.limitBytes) break;
      this.remove(old);
    }
    let list = this.free.get(values.length);
    if (!list) this.free.set(values.length, (list = []));
    list.push(values);
    this.byAge.set(values, true);
    this.held += values.byteLength;
  }

  /** Bytes held for reuse now. */
  get heldBytes(): number {
    return this.held;
  }

  private remove(a: Float32Array): void {
    const list = this.free.get(a.length)!;
    list.splice(list.indexOf(a), 1);
    if (!list.length) this.free.delete(a.length);
    this.byAge.delete(a);
    this.held -= a.byteLength;
  }

  private take(n: number): Float32Array | undefined {
    const list = this.free.get(n);
    const a = list?.[list.length - 1];
    if (!a) return undefined;
    this.remove(a);
    this.reused++;
    return a;
  }

  private allocate(n: number): Float32Array {
    const a = new Float32Array(n);
    if (n >= this.minLength) {
      this.ours.add(a);
      this.byBuffer.set(a.buffer, a);
    }
    return a;
  }
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
 * (release), readSync (escape) and makeTensorInfo (stored views).
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
      pool.escape(this.data.get(dataId)?.values);
      return readSync.call(this, dataId);
    };
    backend.makeTensorInfo = function (shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues | string[]) {
      pool.stored(values);
      return makeTensorInfo.call(this, shape, dtype, values);
    };
    entry = {
      pool,
      restore() {
        backend.disposeData = disposeData;
        backend.readSync = readSync;
        backend.makeTensorInfo = makeTensorInfo;
        pools.delete(backend);
      },
    };
    pools.set(backend, entry);
  }
  return entry;
}
