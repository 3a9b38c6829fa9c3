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
  Sequential,
  type SequentialConfig,
  Trainer,
  trainerOptionsSchema,
  type Layer,
  type ModelConfig,
  type PluginSpec,
} from '../../core';
import gptGpu from '../../papers/gpt/presets/gpu.json';
import mnistFull from '../../papers/mnist-cnn/presets/full.json';
import g2pBase from '../../papers/transformer/presets/base.json';
import g2pCpuPreset from '../../papers/transformer/presets/cpu.json';
import { registerBuiltins } from '../../plugins';
import { registerWebGpuKernels, WEBGPU_KERNELS } from '../../plugins/backends/webgpu-kernels';
import { layerCase, modelCase, randomNormal } from '../../testing';

const args = process.argv.slice(2);
const steps = Number(args[args.indexOf('--steps') + 1]) || 20;
const quick = args.includes('--quick');
/** Seconds after the start by which the check stops beginning new work (the bundle's run.sh gives it a time limit). */
const deadline = Number(args[args.indexOf('--deadline') + 1]) || 420;
const t00 = performance.now();
const diagnose = args.includes('--diagnose');
const onlyModels = args.includes('--models') ? args[args.indexOf('--models') + 1]!.split(',') : null;
/** --conformance-only: the adapter and the conformance subset, no step times. */
const conformanceOnly = args.includes('--conformance-only');
const late = () => (performance.now() - t00) / 1000 > deadline;
const registry = registerBuiltins(createRegistry());
const report: Record<string, unknown> = { node: process.version, started: new Date().toISOString() };
const out = process.env.OUT ?? '.';
const save = () => fs.writeFileSync(path.join(out, 'webgpu-check.json'), `${JSON.stringify(report, null, 2)}\n`);

// 1. The adapter.
const selected = await selectBackend(registry, 'webgpu');
console.log(describeBackend(selected.tags));
report.tags = selected.tags;
save();

// 1b. The cost of one dispatch: `n` adds of a 16-element tensor, then one read (each add is one dispatch), so a
// step's dispatches times this is the part of its time that is overhead rather than arithmetic.
{
  const n = 500;
  const a = tf.ones([16]);
  const once = async () => {
    let x = a.clone();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const y = tf.add(x, a);
      x.dispose();
      x = y;
    }
    await x.data();
    x.dispose();
    return (performance.now() - t0) / n;
  };
  await once();
  const ms = Math.min(await once(), await once());
  report.msPerDispatch = Math.round(ms * 1e4) / 1e4;
  console.log(`one small dispatch (a 16-element add): ${report.msPerDispatch} ms (best of 2 runs of ${n})`);
  a.dispose();
  save();
}

// 2. Step times: the mean of `n` steps after 3 warm-up steps (each step ends by reading its loss, so it is complete).
interface Workload {
  name: string;
  model: ModelConfig;
  optimizer: PluginSpec;
  batch: () => { x: tf.Tensor; y: tf.Tensor };
  clipNorm?: number;
  loss?: PluginSpec;
}
// --quick (a smoke test of the script on llvmpipe): papers/gpt's smoke-sized model instead of the gpu preset's.
const gptModel = (quick ? { ...gptGpu.model, context: 64, dModel: 32, numHeads: 2, layers: 1 } : gptGpu.model) as unknown as ModelConfig & {
  context: number;
  vocabSize: number;
  dModel: number;
  layers: number;
};
const gptBatch = quick ? 4 : gptGpu.trainer.batchSize;
const g2pCpu = { ...g2pBase, ...g2pCpuPreset, model: g2pCpuPreset.model };
const g2pModel = (quick ? { ...g2pCpu.model, dModel: 32, numHeads: 2, ff: 64, layers: 1 } : g2pCpu.model) as unknown as ModelConfig & {
  srcLen: number;
  tgtLen: number;
  srcVocab: number;
  tgtVocab: number;
  dModel: number;
  layers: number;
};
const g2pBatch = quick ? 4 : g2pBase.trainer.batchSize;
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
    // papers/transformer's cpu preset model on full-length synthetic words (the run buckets words by length, so its
    // batches are shorter than these): ids 1.. of each vocabulary, 0 (padding) nowhere.
    name: `g2p transformer (papers/transformer cpu preset${quick ? ', smoke-sized' : ''}: ${g2pModel.layers}+${g2pModel.layers} layers, d ${g2pModel.dModel}) b${g2pBatch}`,
    model: g2pModel,
    optimizer: { ...g2pCpu.optimizer, lr: 1e-3 } as PluginSpec, // the run's lr 1 is scaled by its Noam schedule
    loss: g2pCpu.loss as PluginSpec,
    batch: () => {
      const { srcLen, tgtLen, srcVocab, tgtVocab } = g2pModel;
      const src = Int32Array.from({ length: g2pBatch * srcLen }, (_, i) => 1 + ((i * 7) % (srcVocab - 1)));
      const tgt = Int32Array.from({ length: g2pBatch * tgtLen }, (_, i) => 1 + ((i * 11) % (tgtVocab - 1)));
      const x = Int32Array.from({ length: g2pBatch * (srcLen + tgtLen) }, (_, i) => {
        const row = Math.floor(i / (srcLen + tgtLen));
        const j = i % (srcLen + tgtLen);
        return j < srcLen ? src[row * srcLen + j]! : tgt[row * tgtLen + j - srcLen]!;
      });
      const y = Int32Array.from({ length: g2pBatch * tgtLen }, (_, i) => 1 + ((i * 13) % (tgtVocab - 1)));
      return { x: tf.tensor2d(x, [g2pBatch, srcLen + tgtLen], 'int32'), y: tf.tensor2d(y, [g2pBatch, tgtLen], 'int32') };
    },
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
for (const { backend, label, kernels } of conformanceOnly ? [] : variants) {
  for (const w of backend === 'cpu' ? workloads.slice(0, 1) : workloads) {
    if (late()) {
      console.log(`${label.padEnd(15)} ${w.name}: not run (the check's deadline of ${deadline} s has passed)`);
      continue;
    }
    await selectBackend(registry, backend);
    if (!kernels) for (const name of Object.keys(WEBGPU_KERNELS)) tf.unregisterKernel(name, 'webgpu');
    const model = buildModel(w.model, registry);
    model.build(model.inputShape, new Rng(0));
    const trainer = new Trainer({
      model,
      loss: registry.create('loss', w.loss ?? 'sparse-categorical-crossentropy'),
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
// 3. Forward + backward of the sum of the outputs, as `npm run bench`'s sequence rows (benchmarks/sequence-models.ts)
// time them on the CPU: a 2-layer LSTM (650, b20, t35) and one Transformer encoder layer (256/4/1024, t64, b32).
const sequenceRows = [];
const sequences: { name: string; config: SequentialConfig; batch: number }[] = [
  {
    name: 'lstm 2x650 b20 t35 fwd+bwd',
    config: {
      inputShape: [35, 650],
      layers: [
        { type: 'lstm', units: 650 },
        { type: 'lstm', units: 650 },
      ],
    },
    batch: 20,
  },
  {
    name: 'transformer encoder 256/4/1024 t64 b32 fwd+bwd',
    config: { inputShape: [64, 256], layers: [{ type: 'transformer-encoder', numHeads: 4, ff: 1024, dropout: 0 }] },
    batch: 32,
  },
];
for (const { name, config, batch } of conformanceOnly ? [] : quick ? sequences.slice(1) : sequences) {
  if (late()) {
    console.log(`webgpu          ${name}: not run (the check's deadline of ${deadline} s has passed)`);
    continue;
  }
  await selectBackend(registry, 'webgpu');
  const model = new Sequential(config, registry);
  model.build(undefined, new Rng(0));
  const x = tf.randomNormal([batch, ...config.inputShape], 0, 1, 'float32', 1);
  const vars = model.parameters().map((p) => p.variable);
  const ctx = { training: true, rng: new Rng(0) };
  const step = async () => {
    const { value, grads } = tf.variableGrads(() => tf.sum(model.apply(x, ctx)) as tf.Scalar, vars);
    await value.data();
    tf.dispose([value, ...Object.values(grads)]);
  };
  for (let i = 0; i < 3; i++) await step();
  const dispatches = await dispatchesOf(step);
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await step();
  const ms = (performance.now() - t0) / steps;
  const tokens = batch * config.inputShape[0]!;
  const row = {
    backend: 'webgpu',
    workload: name,
    msPerStep: Math.round(ms * 10) / 10,
    tokensPerSecond: Math.round((tokens / ms) * 1000),
    dispatchesPerStep: dispatches,
    steps,
  };
  console.log(`webgpu          ${name}: ${row.msPerStep} ms/step, ${row.tokensPerSecond} tokens/s, ${dispatches} dispatches a step`);
  sequenceRows.push(row);
  report.sequence = sequenceRows;
  save();
  x.dispose();
  model.dispose();
}

// 4. Conformance subset (last: it stops at the deadline, saying which cases did not run): max |webgpu − cpu| / max |cpu| of outputs and gradients (1e-4 passes, as in the test).
const RTOL = 1e-4;
const ATOL = 1e-6;
async function compare(
  label: string,
  compute: () => tf.Tensor[],
  names: string[] = [],
): Promise<{ label: string; worst: number; ok: boolean; tensors?: { name: string; relative: number; nonFinite: number }[] }> {
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
  const tensors: { name: string; relative: number; nonFinite: number }[] = [];
  want.forEach((w, i) => {
    let scale = 0;
    let diff = 0;
    let nonFinite = 0;
    for (let j = 0; j < w.length; j++) {
      scale = Math.max(scale, Math.abs(w[j]!));
      diff = Math.max(diff, Math.abs(got[i]![j]! - w[j]!));
      if (!Number.isFinite(got[i]![j]!)) nonFinite++;
    }
    worst = Math.max(worst, diff / Math.max(scale, 1e-12));
    const good = diff <= RTOL * scale + ATOL && nonFinite === 0;
    ok &&= good;
    if (!good) tensors.push({ name: names[i] ?? `#${i}`, relative: diff / Math.max(scale, 1e-12), nonFinite });
  });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${label}: worst relative difference ${worst.toExponential(2)}`);
  for (const t of tensors) console.log(`       ${t.name}: ${t.relative.toExponential(2)}${t.nonFinite ? `, ${t.nonFinite} not finite` : ''}`);
  return tensors.length > 0 ? { label, worst, ok, tensors } : { label, worst, ok };
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
const notRun: string[] = [];
for (const name of onlyModels ? [] : layers) {
  for (const ex of registry.get('layer', name).examples ?? []) {
    if (late()) {
      notRun.push(`layer ${name}`);
      continue;
    }
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
// --diagnose: the models again without each of loom's WGSL kernels in turn (that one composed from tfjs kernels),
// then without all of them, and the encoder-decoder with padding trimming off, to place a difference.
const kernelNames = Object.keys(WEBGPU_KERNELS);
const modelVariants = diagnose ? ['', ...kernelNames.map((k) => ` (all kernels but ${k})`), ' (composed)', ' (composed, untrimmed)'] : [''];
const setKernels = (off: string[]) => {
  for (const k of kernelNames) {
    const registered = Boolean(tf.getKernel(k, 'webgpu'));
    if (off.includes(k) && registered) tf.unregisterKernel(k, 'webgpu');
    if (!off.includes(k) && !registered) tf.registerKernel({ kernelName: k, backendName: 'webgpu', kernelFunc: WEBGPU_KERNELS[k] as tf.KernelFunc });
  }
};
for (const variant of modelVariants)
  for (const name of quick ? [] : registry.names('model').filter((n) => !onlyModels || onlyModels.includes(n))) {
    if (variant.includes('untrimmed') && name !== 'transformer-seq2seq') continue;
    setKernels(variant.includes('composed') ? kernelNames : kernelNames.filter((k) => variant === ` (all kernels but ${k})`));
    for (const ex of registry.get('model', name).examples ?? []) {
      if (late()) {
        notRun.push(`model ${name}`);
        continue;
      }
      await selectBackend(registry, 'cpu');
      const rng = new Rng(1);
      const { model, x } = modelCase(registry, name, ex, rng, variant.includes('untrimmed') ? { trimPadding: false } : {});
      const apply = () => model.apply(x, { training: true, rng: new Rng(2) });
      const r = randomNormal(tf.tidy(() => apply()).shape, rng);
      conformance.push(
        await compare(
          `model ${name}${variant}`,
          () =>
            valueAndGrads(
              apply,
              model.parameters().map((p) => p.variable),
              r,
            ),
          ['output', ...model.parameters().map((p) => `${p.name} (variable ${p.variable.name})`)],
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
if (notRun.length > 0) console.log(`conformance cases not run (the check's deadline of ${deadline} s had passed): ${notRun.join(', ')}`);
report.conformance = { rtol: RTOL, atol: ATOL, failed: conformance.filter((c) => !c.ok).length, cases: conformance, notRun };
save();

report.finished = new Date().toISOString();
save();
process.exit((report.conformance as { failed: number }).failed > 0 ? 1 : 0);
