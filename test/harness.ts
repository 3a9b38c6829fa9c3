/**
 * Test helpers shared by the conformance suite and plugin tests. The properties themselves (gradient against central
 * finite differences, spec round trip, tensor leaks, per backend) live in testing/ (`loom/testing`, the kit plugin
 * packages use) and are re-exported here; what is left is vitest's side: one `it` per plugin, property and backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { Rng, selectBackend, type Dataset, type PluginKind, type PluginRegistry, type Trainer } from '../core';
import { cpuBackends, testRegistry as kitTestRegistry } from '../testing';

export {
  buildLayer,
  checkNoLeak as expectNoLeak,
  checkSpecRoundTrip as expectSpecRoundTrip,
  cpuBackends,
  exampleTargets,
  type GradCheckOptions,
  gradCheck,
  layerCase,
  randomNormal,
} from '../testing';

/** tf.memory() on a GPU backend (webgpu): the bytes in live tensors, and those allocated (they plus the pool of free buffers). */
export type GpuMemory = tf.MemoryInfo & { numBytesInGPU: number; numBytesAllocatedInGPU: number };

/**
 * Takes `steps` training steps of `trainer`, each on `batchSize` examples of `data` drawn at random (with replacement,
 * from `Rng(seed)`), and checks that memory stayed flat after the first `warmup` steps (which make the optimizer's
 * slots and warm the buffer pool): as many live tensors, as many bytes in them, no more bytes allocated. Returns the
 * memory after the warm-up, for a test's own checks. The webgpu tests of a long training's memory share it.
 */
export async function expectFlatMemoryAcrossSteps(
  trainer: Pick<Trainer, 'trainStep'>,
  data: Dataset,
  o: { steps: number; warmup: number; batchSize: number; seed?: number },
): Promise<GpuMemory> {
  const rng = new Rng(o.seed ?? 7);
  const step = async (s: number) => {
    const b = data.batch(Array.from({ length: o.batchSize }, () => rng.int(data.size)));
    await trainer.trainStep(b, { step: s, epoch: 0 });
    tf.dispose([b.x, b.y]);
  };
  for (let s = 0; s < o.warmup; s++) await step(s);
  const warm = tf.memory() as GpuMemory;
  for (let s = o.warmup; s < o.steps; s++) await step(s);
  const after = tf.memory() as GpuMemory;
  expect(after.numTensors, 'live tensors').toBe(warm.numTensors);
  expect(after.numBytesInGPU, 'GPU bytes in live tensors').toBe(warm.numBytesInGPU);
  expect(after.numBytesAllocatedInGPU, 'GPU bytes allocated (tensors and the pool of free buffers)').toBeLessThanOrEqual(warm.numBytesAllocatedInGPU);
  return warm;
}

/** A fresh registry with every built-in plugin, after activating `backend` (default: the best available one). */
export function testRegistry(backend = process.env.LOOM_BACKEND): Promise<PluginRegistry> {
  return kitTestRegistry([], backend);
}

/**
 * The registry the conformance suites generate their tests from (built-ins, on the preferred backend until a test
 * activates its own with {@link onEachBackend}) and the CPU backends available here.
 */
export async function conformanceRegistry(): Promise<{ registry: PluginRegistry; backends: string[] }> {
  return { registry: await testRegistry(), backends: await cpuBackends() };
}

/**
 * Declares the conformance tests of every registered plugin of `kind`, as PyTorch's OpInfo does: `properties(name)`
 * runs inside `describe(kind) > describe(name)` and declares one `it` per property, so the full name of a test is
 * `<kind> > <plugin> > <property>` (and `> <backend>` with {@link onEachBackend}) and `-t <plugin>` selects it.
 */
export function eachPlugin(registry: PluginRegistry, kind: PluginKind, properties: (name: string) => void): void {
  describe(kind, () => {
    for (const name of registry.names(kind)) describe(name, () => properties(name));
  });
}

/** One test of `property` per backend, each activating its backend first (named `<property> > <backend>`). */
export function onEachBackend(registry: PluginRegistry, backends: string[], property: string, check: (backend: string) => void | Promise<void>): void {
  describe(property, () => {
    for (const backend of backends) {
      it(backend, async () => {
        await selectBackend(registry, backend);
        await check(backend);
      });
    }
  });
}

/**
 * Multi-head self-attention composed from plain tfjs ops, the reference for the fused kernel and core's
 * selfAttention: qkv [b, t, 3·d] with head h in columns h·dk.. of each block, keep [b, t] (1 = a real key),
 * scores of masked keys replaced by −1e9, context [b, t, d].
 */
export function referenceSelfAttention(qkv: tf.Tensor, heads: number, keep: tf.Tensor, causal: boolean): tf.Tensor {
  const [b, t, d3] = qkv.shape as [number, number, number];
  const d = d3 / 3,
    dk = d / heads;
  const [q, k, v] = tf.unstack(tf.transpose(tf.reshape(qkv, [b, t, 3, heads, dk]), [2, 0, 3, 1, 4]));
  let allowed = tf.reshape(keep, [b, 1, 1, t]);
  if (causal) allowed = tf.mul(allowed, tf.linalg.bandPart(tf.ones([t, t]), -1, 0));
  const scores = tf.add(tf.mul(tf.matMul(q!, k!, false, true), tf.mul(allowed, 1 / Math.sqrt(dk))), tf.mul(tf.sub(allowed, 1), 1e9));
  return tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v!), [0, 2, 1, 3]), [b, t, d]);
}
