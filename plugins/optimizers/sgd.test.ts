/**
 * SGD's fused step (`FUSED_KERNELS.sgd`, native-cpu) against its composed tfjs ops: the same bits over several steps,
 * with parameter groups, decay-free roles, momentum and Nesterov, so that a run replays bit for bit whichever path
 * it takes (its update rule against the paper's is update-rules.test.ts's).
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { FUSED_KERNELS, hasKernel, type ParamRole, type PluginRegistry, type PluginSpec } from '../../core';
import { nativeAddonInfo } from '../backends/native-kernels';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

/** The parameters after `steps` steps of an SGD built from `spec`, as float32 bit patterns. */
function train(spec: PluginSpec, init: Record<string, { values: number[]; role: ParamRole }>, grads: Record<string, number[]>[]): number[][] {
  const opt = registry.create('optimizer', spec);
  const params = Object.entries(init).map(([name, { values, role }]) => ({ name, variable: tf.variable(tf.tensor(values)), role, trainable: true }));
  for (const g of grads) {
    const gs = Object.fromEntries(Object.entries(g).map(([k, v]) => [k, tf.tensor(v)]));
    opt.step(params, gs);
    tf.dispose(Object.values(gs));
  }
  const out = params.map((p) => Array.from(new Uint32Array(Float32Array.from(p.variable.dataSync()).buffer)));
  params.forEach((p) => p.variable.dispose());
  opt.dispose();
  return out;
}

// The kernel is native-cpu's: without the addon (not built here), or with the tests on another backend
// (LOOM_BACKEND), there is nothing to compare.
const onNative = nativeAddonInfo().loaded && (process.env.LOOM_BACKEND ?? 'native-cpu') === 'native-cpu';
describe.skipIf(!onNative)('sgd: the fused step (native-cpu)', () => {
  it('gives the composed ops’ bits: groups, noDecay roles, momentum and Nesterov, over several steps', () => {
    expect(hasKernel(FUSED_KERNELS.sgd), `the backend (${tf.getBackend()}) has ${FUSED_KERNELS.sgd}`).toBe(true);
    const d = (min: number, max: number) => fc.double({ min, max, noNaN: true });
    fc.assert(
      fc.property(
        fc
          .record({
            lr: fc.constantFrom(0.1, 35, 0.0123),
            momentum: fc.constantFrom(0, 0.9),
            nesterov: fc.boolean(),
            weightDecay: fc.constantFrom(0, 1e-7 / 35, 0.01),
          })
          .map((h) => ({ ...h, nesterov: h.nesterov && h.momentum > 0 })), // Nesterov needs momentum (refused otherwise)
        fc.constantFrom(0, 0.5),
        fc.integer({ min: 1, max: 4 }),
        fc.infiniteStream(d(-2, 2)),
        (h, groupMomentum, steps, values) => {
          const take = (k: number) => Array.from({ length: k }, () => values.next().value as number);
          const init = { 'a/kernel': { values: take(7), role: 'kernel' as const }, 'a/bias': { values: take(3), role: 'bias' as const } };
          const grads = Array.from({ length: steps }, () => ({ 'a/kernel': take(7), 'a/bias': take(3) }));
          // The bias in a group of its own momentum (the rest at the top level's); biases are not decayed by default.
          const spec = { type: 'sgd', ...h, groups: [{ roles: ['bias'], momentum: groupMomentum }] } as PluginSpec;
          const fused = train(spec, init, grads);
          const kernel = tf.getKernel(FUSED_KERNELS.sgd, tf.getBackend())!;
          tf.unregisterKernel(FUSED_KERNELS.sgd, tf.getBackend());
          let composed: number[][];
          try {
            composed = train(spec, init, grads);
          } finally {
            tf.registerKernel(kernel);
          }
          expect(fused).toEqual(composed);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('uses the kernel, and keeps tensors flat across steps', () => {
    const opt = registry.create('optimizer', { type: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 0.01 });
    const p = { name: 'w', variable: tf.variable(tf.ones([5])), role: 'kernel' as const, trainable: true };
    const config = tf.getKernel(FUSED_KERNELS.sgd, tf.getBackend())!;
    const original = config.kernelFunc;
    let calls = 0;
    config.kernelFunc = ((args: never) => {
      calls++;
      return original(args);
    }) as tf.KernelFunc;
    try {
      const g = tf.fill([5], 0.5);
      opt.step([p], { w: g }); // the momentum buffer is made on the first step
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) opt.step([p], { w: g });
      expect(tf.memory().numTensors).toBe(before);
      expect(calls).toBe(6);
      g.dispose();
    } finally {
      config.kernelFunc = original;
      p.variable.dispose();
      opt.dispose();
    }
  });
});
