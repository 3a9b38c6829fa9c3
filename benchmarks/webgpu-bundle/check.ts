/**
 * The webgpu check for a machine with a GPU (README.md here): which adapter Dawn gives, a conformance subset (outputs
 * and gradients on webgpu against tfjs's reference `cpu` backend, as plugins/backends/webgpu.test.ts checks on
 * llvmpipe), and training step times of the MNIST CNN and the GPT of papers/gpt's `gpu` preset on webgpu with and
 * without loom's WGSL kernels (with the dispatches of a step, and the tensor count and GPU bytes across the timed
 * steps) next to a few steps on `cpu`. Synthetic batches: no data set is read. Bundled into one file by prepare.sh;
 * writes `webgpu-check.json` into $OUT (or the current folder).
 *
 * Usage: `node check.mjs [--steps N] [--quick]` (the bundle's run.sh runs it under a time limit).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  buildModel,
  createRegistry,
  describeBackend,
  Rng,
  selectBackend,
  Trainer,
  trainerOptionsSchema,
  type Layer,
  type ModelConfig,
  type PluginSpec,
} from '../../core';
import gptGpu from '../../papers/gpt/presets/gpu.json';
import mnistFull from '../../papers/mnist-cnn/presets/full.json';
import { registerBuiltins } from '../../plugins';
import { registerWebGpuKernels, WEBGPU_KERNELS } from '../../plugins/backends/webgpu-kernels';
import { layerCase, randomNormal } from '../../testing';

const args = process.argv.slice(2);
const steps = Number(args[args.indexOf('--steps') + 1]) || 20;
const quick = args.includes('--quick');
const registry = registerBuiltins(createRegistry());
const report: Record<string, unknown> = { node: process.version, started: new Date().toISOString() };
const out = process.env.OUT ?? '.';
const save = () => fs.writeFileSync(path.join(out, 'webgpu-check.json'), `${JSON.stringify(report, null, 2)}\n`);

// 1. The adapter.
const selected = await selectBackend(registry, 'webgpu');
console.log(describeBackend(selected.tags));
report.tags = selected.tags;
save();

// 2. Conformance subset: max |webgpu − cpu| / max |cpu| of outputs and gradients (1e-4 passes, as in the test).
const RTOL = 1e-4;
const ATOL = 1e-6;
async function compare(label: string, compute: () => tf.Tensor[]): Promise<{ label: string; worst: number; ok: boolean }> {
  await selectBackend(registry, 'cpu');
  const read = async (ts: tf.Tensor[]) => {
    const v = await Promise.all(ts.map(async (t) => Float32Array.from(await t.data())));
    tf.dispose(ts);
    return v;
  };
  const want = await read(compute());
  await selectBackend(registry, 'webgpu');
  const got = await read(compute());
  let worst = 0;
  let ok = true;
  want.forEach((w, i) => {
    let scale = 0;
    let diff = 0;
    for (let j = 0; j < w.length; j++) {
      scale = Math.max(scale, Math.abs(w[j]!));
      diff = Math.max(diff, Math.abs(got[i]![j]! - w[j]!));
    }
    worst = Math.max(worst, diff / Math.max(scale, 1e-12));
    ok &&= diff <= RTOL * scale + ATOL;
  });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${label}: worst relative difference ${worst.toExponential(2)}`);
  return { label, worst, ok };
}

function valueAndGrads(f: () => tf.Tensor, wrt: tf.Variable[], r: tf.Tensor): tf.Tensor[] {
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(f(), r)) as tf.Scalar, wrt);
  value.dispose();
  return [tf.tidy(() => f().clone()), ...wrt.map((v) => grads[v.name]!)];
}

const conformance = [];
const layers = quick
  ? ['dense', 'conv2d']
  : ['dense', 'conv2d', 'max-pool2d', 'avg-pool2d', 'batch-norm', 'layer-norm', 'embedding', 'lstm', 'gru', 'multi-head-attention', 'transformer-encoder'];
for (const name of layers) {
  for (const ex of registry.get('layer', name).examples ?? []) {
    await selectBackend(registry, 'cpu');
    const rng = new Rng(1);
    const { layer, x, wrt } = layerCase(registry, name, ex, 3, rng);
    const apply = () => (layer as Layer).apply(x, { training: true, rng: new Rng(2) });
    const r = randomNormal(tf.tidy(() => apply()).shape, rng);
    conformance.push(await compare(`layer ${name} ${JSON.stringify(ex.options ?? {})}`, () => valueAndGrads(apply, wrt, r)));
    tf.dispose([x, r]);
    layer.dispose();
  }
}
for (const name of quick ? [] : registry.names('model')) {
  for (const ex of registry.get('model', name).examples ?? []) {
    await selectBackend(registry, 'cpu');
    const rng = new Rng(1);
    const model = buildModel({ type: name, ...ex.options } as ModelConfig, registry);
    model.build(model.inputShape, rng);
    const shape = ex.inputShape!;
    const n = shape.reduce((a, b) => a * b, 1);
    const x = ex.inputInts
      ? tf.tensor(
          Int32Array.from({ length: n }, () => rng.int(ex.inputInts!)),
          shape,
          'int32',
        )
      : randomNormal(shape, rng);
    const apply = () => model.apply(x, { training: true, rng: new Rng(2) });
    const r = randomNormal(tf.tidy(() => apply()).shape, rng);
    conformance.push(
      await compare(`model ${name}`, () =>
        valueAndGrads(
          apply,
          model.parameters().map((p) => p.variable),
          r,
        ),
      ),
    );
    tf.dispose([x, r]);
    model.dispose();
  }
}
{
  await selectBackend(registry, 'cpu');
  const xs = Array.from({ length: 40 }, (_, i) => randomNormal([3, 5], new Rng(i)));
  conformance.push(await compare('addN of 40 tensors', () => [tf.addN(xs)]));
  tf.dispose(xs);
}
report.conformance = { rtol: RTOL, atol: ATOL, failed: conformance.filter((c) => !c.ok).length, cases: conformance };
save();

// 3. Step times: the mean of `n` steps after 3 warm-up steps (each step ends by reading its loss, so it is complete).
interface Workload {
  name: string;
  model: ModelConfig;
  optimizer: PluginSpec;
  batch: () => { x: tf.Tensor; y: tf.Tensor };
  clipNorm?: number;
}
// --quick (a smoke test of the script on llvmpipe): papers/gpt's smoke-sized model instead of the gpu preset's.
const gptModel = (quick ? { ...gptGpu.model, context: 64, dModel: 32, numHeads: 2, layers: 1 } : gptGpu.model) as unknown as ModelConfig & {
  context: number;
  vocabSize: number;
  dModel: number;
  layers: number;
};
const gptBatch = quick ? 4 : gptGpu.trainer.batchSize;
const workloads: Workload[] = [
  {
    name: 'mnist-cnn b128',
    model: mnistFull.model as ModelConfig,
    optimizer: mnistFull.optimizer as PluginSpec,
    batch: () => ({
      x: tf.randomUniform([128, 28, 28, 1], 0, 1, 'float32', 3),
      y: tf.tensor1d(
        Array.from({ length: 128 }, (_, i) => i % 10),
        'int32',
      ),
    }),
  },
  {
    name: `gpt (${quick ? 'smoke-sized' : 'papers/gpt gpu preset'}: ${gptModel.layers} layers, d ${gptModel.dModel}, context ${gptModel.context}) b${gptBatch}`,
    model: gptModel,
    optimizer: gptGpu.optimizer as PluginSpec,
    clipNorm: gptGpu.trainer.clipNorm, // the global norm sums ~40 terms: tfjs's AddN over the binding limit, chunked
    batch: () => {
      const ids = () =>
        tf.tensor2d(
          Int32Array.from({ length: gptBatch * gptModel.context }, (_, i) => (i * 7919) % gptModel.vocabSize),
          [gptBatch, gptModel.context],
          'int32',
        );
      return { x: ids(), y: ids() };
    },
  },
];
const timings = [];
/**
 * The programs one training step dispatches on webgpu (every one goes through the backend's recordAndSubmit, loom's
 * WGSL kernels included).
 */
async function dispatchesOf(f: () => Promise<unknown>): Promise<number> {
  const gpu = tf.findBackend('webgpu') as unknown as { recordAndSubmit: (...a: unknown[]) => void };
  const original = gpu.recordAndSubmit;
  let n = 0;
  gpu.recordAndSubmit = function (this: unknown, ...a: unknown[]) {
    n++;
    return original.apply(this, a);
  };
  try {
    await f();
  } finally {
    gpu.recordAndSubmit = original;
  }
  return n;
}
// webgpu with loom's WGSL kernels (plugins/backends/webgpu-kernels.ts), then without them (every fused op composed
// from tfjs kernels: whether the kernels pay on this GPU), then tfjs's JavaScript cpu backend (the bundle has no
// native addon) for the CNN only: a GPT step there takes minutes.
const variants = [
  { backend: 'webgpu', label: 'webgpu', kernels: true },
  { backend: 'webgpu', label: 'webgpu-composed', kernels: false },
  { backend: 'cpu', label: 'cpu', kernels: true },
];
for (const { backend, label, kernels } of variants) {
  for (const w of backend === 'cpu' ? workloads.slice(0, 1) : workloads) {
    await selectBackend(registry, backend);
    if (!kernels) for (const name of Object.keys(WEBGPU_KERNELS)) tf.unregisterKernel(name, 'webgpu');
    const model = buildModel(w.model, registry);
    model.build(model.inputShape, new Rng(0));
    const trainer = new Trainer({
      model,
      loss: registry.create('loss', 'sparse-categorical-crossentropy'),
      optimizer: registry.create('optimizer', w.optimizer),
      tracker: registry.create('tracker', 'console'),
      strategy: registry.create('parallelism', 'single-process'),
      rng: new Rng(0),
      options: trainerOptionsSchema.parse({ epochs: 1, batchSize: 1, logEvery: 1000, clipNorm: w.clipNorm }),
    });
    const b = w.batch();
    let step = 0;
    const n = backend === 'webgpu' ? steps : 2;
    for (let i = 0; i < (backend === 'webgpu' ? 3 : 1); i++) await trainer.trainStep(b, { step: step++, epoch: 0 });
    const dispatches = backend === 'webgpu' ? await dispatchesOf(() => trainer.trainStep(b, { step: step++, epoch: 0 })) : null;
    const mem0 = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number };
    const t0 = performance.now();
    let loss = 0;
    for (let i = 0; i < n; i++) loss = await trainer.trainStep(b, { step: step++, epoch: 0 });
    const ms = (performance.now() - t0) / n;
    const mem1 = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number };
    const row = {
      backend: label,
      workload: w.name,
      msPerStep: Math.round(ms * 10) / 10,
      dispatchesPerStep: dispatches,
      steps: n,
      loss,
      tensorsFlat: mem1.numTensors === mem0.numTensors,
      gpuBytesFlat: mem1.numBytesInGPU === mem0.numBytesInGPU,
    };
    console.log(
      `${label.padEnd(15)} ${w.name}: ${row.msPerStep} ms/step over ${n} steps${dispatches === null ? '' : `, ${dispatches} dispatches a step`} (loss ${loss.toFixed(4)}; tensors flat ${row.tensorsFlat}, GPU bytes flat ${row.gpuBytesFlat})`,
    );
    if (!kernels) registerWebGpuKernels();
    timings.push(row);
    tf.dispose([b.x, b.y]);
    model.dispose();
    report.timings = timings;
    save();
  }
}
report.finished = new Date().toISOString();
save();
process.exit((report.conformance as { failed: number }).failed > 0 ? 1 : 0);
