/**
 * Importing loom changes no tfjs registry: the gradients of core/ops's kernels and the native kernels (with the
 * gradients they swap) are installed by explicit steps, `installOpGradients` (run by `selectBackend`) and the
 * native-cpu backend's activation, and selecting the plain cpu backend puts tfjs's own back.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { createRegistry, FUSED_KERNELS, installOpGradients, linear, OP_GRADIENTS, selectBackend } from '../core';
import { registerBuiltins } from '../plugins';
import { nativeAddonInfo, originalKernels } from '../plugins/backends/native-kernels';
import { reduceFamily } from '../plugins/backends/native/reduce';

const opKernels = OP_GRADIENTS.map((g) => g.kernelName);
const [sumGradient, meanGradient] = reduceFamily.gradients!;

describe('installing gradients and kernels', () => {
  it("importing core and every plugin registers no gradient and no kernel; selecting a backend installs the ops' gradients", async () => {
    // This file's imports (core, plugins, the native kernels' registration list) ran; nothing was selected yet.
    for (const name of opKernels) expect(tf.getGradient(name), name).toBeUndefined();
    expect(tf.getGradient('Sum')).not.toBe(sumGradient);
    expect(tf.getGradient('Mean')).not.toBe(meanGradient);
    expect(originalKernels.size).toBe(0);
    for (const name of Object.values(FUSED_KERNELS)) expect(tf.getKernel(name, 'cpu'), name).toBeUndefined();

    await selectBackend(registerBuiltins(createRegistry()), 'cpu');
    expect(opKernels.map((name) => tf.getGradient(name))).toEqual(OP_GRADIENTS);
    expect(installOpGradients()).toEqual([]); // idempotent
    // linear's gradient is the installed one: tfjs registers none for _FusedMatMul.
    const x = tf.tensor2d([
        [1, -2],
        [3, 4],
      ]),
      w = tf.tensor2d([
        [0.5, -1],
        [2, 0.25],
      ]);
    const dw = tf.grad((v: tf.Tensor) => tf.sum(linear(x, v as tf.Tensor2D)))(w);
    expect(Array.from(dw.dataSync())).toEqual([4, 4, 2, 2]); // xᵀ·1: column sums of x, repeated over the outputs
    tf.dispose([x, w, dw]);
  });

  it.skipIf(!nativeAddonInfo().loaded)('activating native-cpu installs the native kernels and their gradient swaps; selecting cpu removes them', async () => {
    const registry = registerBuiltins(createRegistry());
    await selectBackend(registry, 'native-cpu');
    expect(tf.getGradient('Sum')).toBe(sumGradient);
    expect(tf.getGradient('Mean')).toBe(meanGradient);
    expect(originalKernels.size).toBeGreaterThan(0);
    // Every fused kernel but the many-tensor Adam step, which pays where a dispatch is dear (webgpu): on native-cpu
    // each LoomAdam call is already one pass, and the optimizer's per-tensor path keeps AdamW's roundings as recorded.
    for (const name of Object.values(FUSED_KERNELS))
      if (name === FUSED_KERNELS.adamMulti) expect(tf.getKernel(name, 'cpu'), name).toBeUndefined();
      else expect(tf.getKernel(name, 'cpu'), name).toBeDefined();
    await selectBackend(registry, 'cpu');
    expect(tf.getGradient('Sum')).not.toBe(sumGradient);
    expect(originalKernels.size).toBe(0);
    for (const name of Object.values(FUSED_KERNELS)) expect(tf.getKernel(name, 'cpu'), name).toBeUndefined();
    // The ops' gradients stay: every backend needs them.
    expect(opKernels.map((name) => tf.getGradient(name))).toEqual(OP_GRADIENTS);
  });
});
