/**
 * loom's native kernels (native/, a C++ N-API addon built by node-gyp at install) installed into tfjs's `cpu`
 * backend: they replace the hot kernels (matrix products, convolutions and their gradients, pooling, softmax)
 * and read and write the backend's Float32Arrays in place, without copies. Cases a native kernel does not cover
 * (other dtypes, NCHW, unusual broadcasting or activations) go to the original JavaScript kernel.
 *
 * The kernels live in `native/`, one file per family (as tfjs keeps one per kernel); this file is their
 * registration list and the install step the native-cpu backend runs when it is activated. Importing it changes
 * nothing in tfjs's kernel or gradient registries.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../core/kernels';
import { addonLoadError, loadAddon } from './native/addon';
import { adamFamily } from './native/adam';
import { attentionFamily } from './native/attention';
import { BufferPool, hookedPool, type HookedPool } from './native/buffer-pool';
import { compareFamily } from './native/compare';
import { convFamily } from './native/conv';
import { crossEntropyFamily } from './native/cross-entropy';
import { decoderFamily } from './native/decoder';
import { elementwiseFamily } from './native/elementwise';
import { gatherFamily } from './native/gather';
import { int8Family } from './native/int8';
import type { KernelArgs, KernelContext, KernelFamily } from './native/kernel';
import { layerNormFamily } from './native/layer-norm';
import { layoutFamily } from './native/layout';
import { lstmFamily } from './native/lstm';
import { matMulFamily } from './native/matmul';
import { poolFamily } from './native/pool';
import { reduceFamily } from './native/reduce';
import { sgdFamily } from './native/sgd';
import { softmaxFamily } from './native/softmax';

export { nativeAddonInfo } from './native/addon';
export { BufferPool, poolLimitBytes, sizeClass } from './native/buffer-pool';

/** Every kernel family, in the order their kernels are installed (and listed in the `backend.kernels` tag). */
export const KERNEL_FAMILIES: readonly KernelFamily[] = [
  layoutFamily,
  elementwiseFamily,
  reduceFamily,
  matMulFamily,
  convFamily,
  poolFamily,
  gatherFamily,
  compareFamily,
  softmaxFamily,
  adamFamily,
  sgdFamily,
  layerNormFamily,
  attentionFamily,
  decoderFamily,
  crossEntropyFamily,
  int8Family,
  lstmFamily,
];

/** The original cpu kernels, kept to delegate to and for the property tests' reference. */
export const originalKernels = new Map<string, tf.KernelConfig>();

/** tfjs's gradients that are replaced while the native kernels are installed, kept to restore and for the tests. */
export const originalGradients = new Map<string, tf.GradConfig>();

/** The pool hooked into the cpu backend while the kernels are installed. */
let activePool: HookedPool | null = null;

/**
 * Replaces the hot kernels of the `cpu` backend with native ones, registers the fused kernels and swaps the
 * families' gradients. Idempotent; never throws: when the addon is missing it returns `installed: []` and the reason.
 */
export function installNativeKernels(): { installed: string[]; reason?: string } {
  const native = loadAddon();
  if (!native) return { installed: [], reason: addonLoadError() };
  const installed: string[] = [];
  const backend = tf.findBackend('cpu') as MathBackendCPU | null;
  // No backend to hook: a pool that never holds anything.
  if (backend) activePool = hookedPool(backend);
  const ctx: KernelContext = { native, buffers: backend ? activePool!.pool : new BufferPool(0) };
  for (const family of KERNEL_FAMILIES) {
    for (const [name, impl] of Object.entries(family.overrides?.(ctx) ?? {})) {
      if (!originalKernels.has(name)) {
        const original = tf.getKernel(name, 'cpu');
        if (!original) continue;
        originalKernels.set(name, original);
        tf.unregisterKernel(name, 'cpu');
        tf.registerKernel({
          ...original,
          kernelFunc: ((args: KernelArgs) => impl(args) ?? original.kernelFunc(args as never)) as tf.KernelFunc,
        });
      }
      installed.push(name);
    }
  }
  for (const family of KERNEL_FAMILIES) {
    for (const [name, impl] of Object.entries(family.fused?.(ctx) ?? {})) {
      if (!tf.getKernel(name, 'cpu')) tf.registerKernel({ kernelName: name, backendName: 'cpu', kernelFunc: impl as tf.KernelFunc });
      installed.push(name);
    }
  }
  for (const gradient of KERNEL_FAMILIES.flatMap((f) => f.gradients ?? [])) {
    const original = tf.getGradient(gradient.kernelName);
    if (original && !originalGradients.has(gradient.kernelName)) {
      originalGradients.set(gradient.kernelName, original);
      tf.registerGradient(gradient);
    }
  }
  return { installed };
}

/** The pool the installed kernels allocate from (null when they are not installed). */
export function nativeBufferPool(): BufferPool | null {
  return activePool?.pool ?? null;
}

/** Puts tfjs's own JavaScript kernels and gradients back (selecting the plain `cpu` backend does this). */
export function uninstallNativeKernels(): void {
  for (const [name, original] of originalKernels) {
    tf.unregisterKernel(name, 'cpu');
    tf.registerKernel(original);
  }
  originalKernels.clear();
  for (const name of Object.values(FUSED_KERNELS)) if (tf.getKernel(name, 'cpu')) tf.unregisterKernel(name, 'cpu');
  for (const original of originalGradients.values()) tf.registerGradient(original);
  originalGradients.clear();
  activePool?.restore();
  activePool = null;
}
