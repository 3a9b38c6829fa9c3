/**
 * What every kernel family shares: the shape of a family (the tfjs kernels it overrides, the fused kernels it adds,
 * the gradients it swaps), the arguments tfjs passes a kernel, and helpers to read a cpu tensor's storage.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { Addon } from './addon';
import type { BufferPool } from './buffer-pool';

export type KernelArgs = { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: tf.KernelBackend };
export type Info = tf.TensorInfo;

/** What a family's kernels compute with: the addon, and the pool their outputs come from. */
export interface KernelContext {
  native: Addon;
  buffers: BufferPool;
}

/** A replacement of a tfjs cpu kernel; null hands the call to the original kernel. */
export type NativeKernel = (args: KernelArgs) => Info | null;
/** A kernel of core/kernels.ts's FUSED_KERNELS (a name tfjs does not have). */
export type FusedKernel = (args: KernelArgs) => Info | Info[];

/**
 * One family of kernels (as tfjs keeps a file per kernel): native-kernels.ts's registration list installs each
 * family's parts and puts tfjs's own back when uninstalled.
 */
export interface KernelFamily {
  /** tfjs cpu kernels this family replaces. */
  overrides?(ctx: KernelContext): Record<string, NativeKernel>;
  /** Fused kernels beyond tfjs's set. */
  fused?(ctx: KernelContext): Record<string, FusedKernel>;
  /** tfjs gradients replaced while the kernels are installed. */
  gradients?: tf.GradConfig[];
}

export const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Whether a bias of this shape broadcasts as one row of `n` values over the last axis ([n], [1, n], ...). */
export const isRow = (shape: readonly number[], n: number) => shape.every((d, i) => d === (i === shape.length - 1 ? n : 1)) && shape.length > 0;

/** A tensor as [rows, cols] over its last axis. */
export const rowsOf = (t: Info) => {
  const cols = t.shape.at(-1) ?? 1;
  return [cols === 0 ? 0 : size(t.shape) / cols, cols] as const;
};

export function values(backend: MathBackendCPU, t: Info): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

/** A tensor's values as a Float32Array, converted when the backend stores them otherwise (a float32 cast of a bool). */
export function floatValues(backend: MathBackendCPU, t: Info): Float32Array {
  const v = backend.data.get(t.dataId).values;
  return v instanceof Float32Array ? v : Float32Array.from(v as ArrayLike<number>);
}

/** float32 tensors whose storage is a Float32Array (tfjs's cast from bool keeps a Uint8Array under dtype float32). */
export const f32 = (...ts: (Info | undefined)[]) =>
  ts.every((t) => !t || (t.dtype === 'float32' && (tf.backend() as MathBackendCPU).data.get(t.dataId)?.values instanceof Float32Array));

/** Flattens tfjs's Conv2DInfo into the 15 integers the addon takes (see native/src/conv.h). */
export function shapeArgs(c: tf.backend_util.Conv2DInfo): number[] {
  return [
    c.batchSize,
    c.inHeight,
    c.inWidth,
    c.inChannels,
    c.filterHeight,
    c.filterWidth,
    c.outChannels,
    c.outHeight,
    c.outWidth,
    c.strideHeight,
    c.strideWidth,
    c.padInfo.top,
    c.padInfo.left,
    c.dilationHeight,
    c.dilationWidth,
  ];
}
