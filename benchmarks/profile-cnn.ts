/**
 * Per-kernel time of one MNIST CNN training step (the benchmark's loop, benchmarks/mnist-cnn.ts) on the selected
 * backend: every kernel registered for `cpu` is wrapped with a timer after the backend is activated, and the rest of
 * the step's wall time is JavaScript outside kernels (tape, allocation, disposal). For finding where a step's time
 * goes; relative numbers within one process are meaningful even on a loaded host.
 *
 *   npx tsx benchmarks/profile-cnn.ts [batch ...]
 */
import 'reflect-metadata';
import * as tf from '@tensorflow/tfjs-core';
import { createRegistry, selectBackend } from '../core';
import { registerBuiltins } from '../plugins';
import { mnistTrainStep } from './mnist-cnn';

const registry = registerBuiltins(createRegistry());
await selectBackend(registry, process.env.LOOM_BACKEND);
const backendName = tf.getBackend();
const spent = new Map<string, { ms: number; calls: number }>();
for (const k of tf.getKernelsForBackend(backendName)) {
  const inner = k.kernelFunc;
  tf.unregisterKernel(k.kernelName, backendName);
  tf.registerKernel({
    ...k,
    kernelFunc: ((args: never) => {
      const t0 = performance.now();
      const out = inner(args);
      const e = spent.get(k.kernelName) ?? { ms: 0, calls: 0 };
      e.ms += performance.now() - t0;
      e.calls++;
      spent.set(k.kernelName, e);
      return out;
    }) as tf.KernelFunc,
  });
}
const batches = process.argv.slice(2).map(Number);
for (const batch of batches.length ? batches : [32, 128]) {
  const { step, dispose } = await mnistTrainStep(registry, batch);
  for (let i = 0; i < 20; i++) await step();
  spent.clear();
  const steps = batch === 32 ? 400 : 100;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const wall = (performance.now() - t0) / steps;
  dispose();
  const rows = [...spent].map(([name, e]) => ({ name, ms: e.ms / steps, calls: e.calls / steps })).sort((a, b) => b.ms - a.ms);
  const inKernels = rows.reduce((s, r) => s + r.ms, 0);
  console.log(
    `batch ${batch}: ${wall.toFixed(3)} ms/step (${((batch * 1000) / wall).toFixed(0)} samples/s), kernels ${inKernels.toFixed(3)} ms, outside kernels ${(wall - inKernels).toFixed(3)} ms`,
  );
  for (const r of rows) console.log(`  ${r.name.padEnd(28)} ${r.ms.toFixed(4)} ms  ${((100 * r.ms) / wall).toFixed(1).padStart(5)} %  x${r.calls}`);
}
