/**
 * The webgpu backend (tfjs-backend-webgpu on Dawn), where Dawn finds an adapter: on a machine without a GPU that is
 * Mesa's software llvmpipe adapter (.ci/run installs Mesa 25 from bookworm-backports when Dawn finds none), which
 * runs the same WGSL kernels a GPU runs. Where there is no adapter (or no `webgpu` package) every test here is skipped,
 * and its name gives Dawn's reason.
 *
 * The conformance properties run here differentially: every registered layer, activation, loss and optimizer (but
 * those in EXEMPT, each with its reason, checked) computes its outputs and the gradients of a random projection of
 * them on webgpu and on tfjs's reference `cpu` backend, from the same weights and inputs, and the two must agree
 * within the float32 tolerance stated per test (RTOL). The cpu results are the ones test/conformance.test.ts checks
 * against finite differences; finite differences themselves cannot run here, since they read synchronously and
 * webgpu reads asynchronously in Node. Properties over 2-3 random seeds each (not conformance's more), because
 * llvmpipe compiles a shader for every new kernel and shape on the 2 shared CPUs: the file takes ~30 s there.
 * Left to test/conformance.test.ts (backend-independent or needing synchronous reads): config round trips, save and
 * load, initializers, augmentations, metrics' streaming (the trainer tests below run accuracy on webgpu).
 *
 * Then the trainer: the tensor count and the GPU memory (tf.memory().numBytesInGPU, and the buffer pool) stay flat
 * across 1,000 training steps, a step reads back to the CPU only what the trainer needs (counted: the loss with the
 * gradients' finiteness, and each metric's counts), the pipeline and data-parallel strategies, the Learner and a
 * pruned run train as on cpu, and a short toy run on webgpu (fit, validation, test, saving the model) logs the losses
 * the cpu run logs.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildModel,
  loadModel,
  Rng,
  selectBackend,
  TOKENS,
  Trainer,
  type Activation,
  type Layer,
  type Loss,
  type ModelConfig,
  type PluginExample,
  type PluginRegistry,
  readToHost,
  saveModel,
} from '../../core';
import { buildRunContainer, disposeRun, Learner, runExperiment } from '../../runtime';
import { quantizeModel } from '../../runtime/quantize';
import { exampleTargets, expectFlatMemoryAcrossSteps, layerCase, randomNormal, testRegistry } from '../../test/harness';
import { modelCase, optimizerProblem } from '../../testing';
import toyBlobs, { toyConfig } from '../../test/toy-data';
import { webGpuAdapter } from './webgpu';

interface GPUDeviceLike {
  createBuffer(d: { size: number; usage: number }): unknown;
  queue: { onSubmittedWorkDone(): Promise<void> };
}

const adapter = await webGpuAdapter();
const why = adapter.ok ? '' : ` (skipped: ${adapter.reason})`;
const registry: PluginRegistry = (await testRegistry('cpu')).register(toyBlobs);
const seeds = fc.integer({ min: 0, max: 2 ** 30 });

/** Reads every tensor (asynchronously, as webgpu needs) and disposes it. */
async function readAll(ts: tf.Tensor[]): Promise<Float32Array[]> {
  const out = await Promise.all(ts.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(ts);
  return out;
}

/**
 * `compute()` on the cpu backend, then on webgpu (the same tensors move there), and the largest difference of each
 * result must be at most `rtol` times the largest magnitude of the cpu result plus {@link ATOL}.
 */
async function cpuVsWebgpu(label: string, compute: () => tf.Tensor[], rtol: number): Promise<void> {
  await selectBackend(registry, 'cpu');
  const want = await readAll(compute());
  await selectBackend(registry, 'webgpu');
  const results = compute();
  const gpu = tf.findBackend('webgpu');
  const engineState = tf.engine().state as unknown as { tensorInfo: WeakMap<object, { backend: tf.KernelBackend }> };
  expect(
    results.every((t) => engineState.tensorInfo.get(t.dataId)?.backend === gpu),
    `${label}: computed on webgpu`,
  ).toBe(true);
  const got = await readAll(results);
  want.forEach((w, i) => expectNear(got[i]!, w, `${label}: result ${i}`, rtol));
}

/** webgpu's values `got` against cpu's `want`: the same length, and the largest difference at most `rtol`·max|want| + {@link ATOL}. */
function expectNear(got: ArrayLike<number>, want: ArrayLike<number>, label: string, rtol = RTOL): void {
  expect(got.length, `${label}: length`).toBe(want.length);
  let scale = 0;
  let diff = 0;
  for (let j = 0; j < want.length; j++) {
    scale = Math.max(scale, Math.abs(want[j]!));
    diff = Math.max(diff, Math.abs(got[j]! - want[j]!));
  }
  expect(diff, `${label}: max |webgpu − cpu| = ${diff} for a largest |cpu| of ${scale}`).toBeLessThanOrEqual(rtol * scale + ATOL);
}

/** The output of `f(x)` and the gradients of ⟨f(x), r⟩ for a fixed random r with respect to `wrt`. */
function valueAndGrads(f: () => tf.Tensor, wrt: tf.Variable[], r: tf.Tensor): tf.Tensor[] {
  const { value, grads } = tf.variableGrads(() => tf.sum(tf.mul(f(), r)) as tf.Scalar, wrt);
  value.dispose();
  return [tf.tidy(() => f().clone()), ...wrt.map((v) => grads[v.name]!)]; // a clone: f may return x itself (linear)
}

/**
 * Plugins not compared here, each with the reason, which its test below checks still holds (as conformance's
 * exemption lists do): nothing is left out silently.
 */
const EXEMPT: Record<string, { reason: string; holds: () => Promise<void> }> = {
  'quantized-dense': {
    reason:
      "static mode matches cpu; dynamic mode reads each batch's range on the host in the forward pass, synchronously, and is refused with a ConfigError naming the layer",
    holds: () => quantizedOnWebgpu('quantized-dense'),
  },
  'quantized-conv2d': {
    reason:
      "static mode matches cpu; dynamic mode reads each batch's range on the host in the forward pass, synchronously, and is refused with a ConfigError naming the layer",
    holds: () => quantizedOnWebgpu('quantized-conv2d'),
  },
  distillation: {
    reason: 'needs a saved teacher model (its own test, plugins/losses/distillation.test.ts, trains one)',
    holds: async () => expect(() => registry.create('loss', 'distillation')).toThrow(/teacher/),
  },
};

/** Each of loss `name`'s examples: its value and gradient on webgpu equal cpu's (see RTOL). */
async function compareLoss(name: string, seed: number): Promise<void> {
  const examples: PluginExample[] = registry.get('loss', name).examples ?? [{ inputShape: [2, 5], target: 'classes' }];
  for (const ex of examples) {
    await selectBackend(registry, 'cpu');
    const rng = new Rng(seed);
    const loss = registry.create('loss', { type: name, ...ex.options }) as Loss;
    const yPred = tf.variable(randomNormal(ex.inputShape as number[], rng));
    const yTrue = exampleTargets(ex, ex.inputShape as number[], rng);
    const one = tf.scalar(1);
    try {
      await cpuVsWebgpu(`loss ${name}`, () => valueAndGrads(() => loss.compute(yTrue, yPred), [yPred], one), RTOL);
    } finally {
      tf.dispose([yPred, yTrue, one]);
    }
  }
}

/**
 * A quantized layer's static examples give cpu's outputs and gradients on webgpu (on tfjs ops there: the int8
 * kernels are native-cpu's), and each dynamic example is refused, naming the layer and what to use instead.
 */
async function quantizedOnWebgpu(name: string): Promise<void> {
  const examples = registry.get('layer', name).examples ?? [];
  const dynamic = (ex: PluginExample) => ex.options?.mode === 'dynamic';
  expect(examples.some(dynamic) && examples.some((ex) => !dynamic(ex)), `${name} has static and dynamic examples`).toBe(true);
  await compareLayer(name, 0, 2, (ex) => !dynamic(ex));
  for (const ex of examples.filter(dynamic))
    await expect(compareLayer(name, 0, 2, (e) => e === ex)).rejects.toThrow(
      /^mode: layer "[^"]+": dynamic quantization reads each batch's range on the host .* the webgpu backend cannot do; use mode "static"/,
    );
}

/** Each of layer `name`'s examples (those `only` keeps): outputs and input and weight gradients on webgpu equal cpu's (see RTOL). */
async function compareLayer(name: string, seed: number, batch: number, only: (ex: PluginExample) => boolean = () => true): Promise<void> {
  for (const ex of (registry.get('layer', name).examples ?? []).filter(only)) {
    await selectBackend(registry, 'cpu');
    const rng = new Rng(seed);
    const { layer, x, wrt } = layerCase(registry, name, ex, batch, rng);
    const apply = () => (layer as Layer).apply(x, { training: true, rng: new Rng(seed) });
    const r = randomNormal(tf.tidy(() => apply()).shape, rng);
    try {
      await cpuVsWebgpu(`layer ${name} ${JSON.stringify(ex.options ?? {})}`, () => valueAndGrads(apply, wrt, r), RTOL);
    } finally {
      tf.dispose([x, r]);
      layer.dispose();
    }
  }
}

const compared = (kind: 'layer' | 'activation' | 'loss' | 'optimizer') => registry.names(kind).filter((n) => !(n in EXEMPT));

/**
 * float32 tolerance of webgpu against cpu, relative to the largest magnitude of the cpu result: the two sum in
 * different orders (tiled matrix products, tree reductions) and llvmpipe's exp/log/tanh differ from V8's in the last
 * bits. A wrong kernel (a wrong index, a missing term) is off by O(1) of the scale.
 */
const RTOL = 1e-4;
/**
 * Plus an absolute 1e-6 for results that are small differences of terms of order 1: batch-norm's input gradient
 * (Σ terms cancel to ~1e-3) differed by 1.8e-7, the float32 rounding of the terms, which a relative bound misreads.
 */
const ATOL = 1e-6;

describe.skipIf(!adapter.ok)(`webgpu${why}`, () => {
  afterAll(async () => {
    await selectBackend(registry, 'cpu');
  });

  describe('layer', () => {
    for (const name of compared('layer')) {
      it(`${name} > outputs and gradients match cpu (tolerance ${RTOL}·max|cpu| + ${ATOL})`, async () => {
        await fc.assert(
          fc.asyncProperty(seeds, fc.integer({ min: 1, max: 3 }), (seed, batch) => compareLayer(name, seed, batch)),
          { numRuns: 2 },
        );
      });
    }
  });

  describe('activation', () => {
    for (const name of compared('activation')) {
      it(`${name} > values and gradients match cpu (tolerance ${RTOL}·max|cpu| + ${ATOL})`, async () => {
        await fc.assert(
          fc.asyncProperty(seeds, async (seed) => {
            await selectBackend(registry, 'cpu');
            const rng = new Rng(seed);
            const act = registry.create('activation', name) as Activation;
            const x = tf.variable(randomNormal([3, 7], rng, 3));
            const r = randomNormal([3, 7], rng);
            try {
              await cpuVsWebgpu(`activation ${name}`, () => valueAndGrads(() => act.apply(x), [x], r), RTOL);
            } finally {
              tf.dispose([x, r]);
            }
          }),
          { numRuns: 3 },
        );
      });
    }
  });

  describe('loss', () => {
    for (const name of compared('loss')) {
      it(`${name} > value and gradient match cpu (tolerance ${RTOL}·max|cpu| + ${ATOL})`, async () => {
        await fc.assert(
          fc.asyncProperty(seeds, (seed) => compareLoss(name, seed)),
          { numRuns: 3 },
        );
      });
    }
  });

  describe('optimizer', () => {
    for (const name of compared('optimizer')) {
      it(`${name} > five steps on a quadratic reach the weights cpu reaches (tolerance ${RTOL}·max|cpu| + ${ATOL})`, async () => {
        let problem: ReturnType<typeof optimizerProblem> | null = null;
        await cpuVsWebgpu(
          `optimizer ${name}`,
          () => {
            problem?.dispose();
            problem = optimizerProblem(registry, name); // on the active backend: a fresh optimizer and w = 0
            for (let i = 0; i < 5; i++) problem.step();
            return [problem.param.variable.clone()];
          },
          RTOL,
        );
        (problem as ReturnType<typeof optimizerProblem> | null)?.dispose();
      });
    }
  });

  describe('model', () => {
    for (const name of registry.names('model')) {
      it(`${name} > outputs and weight gradients match cpu (tolerance ${RTOL}·max|cpu| + ${ATOL})`, async () => {
        for (const ex of registry.get('model', name).examples ?? []) {
          await selectBackend(registry, 'cpu');
          const rng = new Rng(1);
          const { model, x } = modelCase(registry, name, ex, rng);
          const apply = () => model.apply(x, { training: true, rng: new Rng(2) });
          const r = randomNormal(tf.tidy(() => apply()).shape, rng);
          try {
            const wrt = model.parameters().map((p) => p.variable);
            await cpuVsWebgpu(`model ${name} ${JSON.stringify(ex.options ?? {})}`, () => valueAndGrads(apply, wrt, r), RTOL);
          } finally {
            tf.dispose([x, r]);
            model.dispose();
          }
        }
      });
    }
  });

  describe('augmentation', () => {
    for (const name of registry.names('augmentation')) {
      it(`${name} > transforms a batch of images as cpu does (tolerance ${RTOL}·max|cpu| + ${ATOL})`, async () => {
        await fc.assert(
          fc.asyncProperty(seeds, fc.integer({ min: 1, max: 3 }), fc.integer({ min: 2, max: 7 }), async (seed, n, size) => {
            await selectBackend(registry, 'cpu');
            const aug = registry.create('augmentation', name);
            const x = randomNormal([n, size, size + 1, 2], new Rng(seed));
            try {
              await cpuVsWebgpu(`augmentation ${name}`, () => [aug.apply(x, new Rng(seed))], RTOL);
            } finally {
              x.dispose();
            }
          }),
          { numRuns: 3 },
        );
      });
    }
  });

  it('pins tfjs-backend-webgpu 4.22 in Node: dataSync of GPU data throws (its path draws through an OffscreenCanvas); after readToHost it reads', async () => {
    await selectBackend(registry, 'webgpu');
    const t = tf.tidy(() => tf.matMul(tf.ones([2, 3]), tf.ones([3, 2]))); // a GPU kernel (small elementwise ops may run on the CPU)
    try {
      expect(() => t.dataSync()).toThrow(/synchronous read .* await tensor\.data\(\)/);
      await readToHost([t]);
      expect(Array.from(t.dataSync())).toEqual([3, 3, 3, 3]);
    } finally {
      t.dispose();
    }
  });

  it("pins tfjs-backend-webgpu 4.22: AddN of more inputs than the storage buffers a shader stage may bind (the global norm of a GPT's gradients) equals cpu's sum", async () => {
    await selectBackend(registry, 'cpu');
    const rng = new Rng(5);
    const xs = Array.from({ length: 40 }, () => randomNormal([3, 5], rng));
    try {
      await cpuVsWebgpu('addN of 40', () => [tf.addN(xs)], RTOL);
    } finally {
      tf.dispose(xs);
    }
  });

  it('post-training quantization is refused on webgpu before it reads anything, naming the flag (loom quantize exits 2) or the field', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-webgpu-'));
    await selectBackend(registry, 'cpu');
    const model = buildModel({ inputShape: [4], layers: [{ type: 'dense', units: 3 }] } as ModelConfig, registry);
    model.build(model.inputShape, new Rng(1));
    try {
      saveModel(model, path.join(dir, 'model'));
      await selectBackend(registry, 'webgpu');
      expect(() => quantizeModel(model, registry, { mode: 'dynamic' })).toThrow(/^backend: post-training quantization reads .* webgpu backend cannot do/);
      const root = path.resolve(import.meta.dirname, '../..');
      const r = spawnSync(
        process.execPath,
        [path.join(root, 'cli/bin.mjs'), 'quantize', path.join(dir, 'model'), '--out', path.join(dir, 'q'), '--mode', 'dynamic', '--backend', 'webgpu'],
        {
          encoding: 'utf8',
          env: { ...process.env, LOOM_BACKEND: '' },
        },
      );
      expect([r.status, r.stderr.trim().split('\n').at(-1)]).toEqual([
        2,
        expect.stringMatching(/^loom: --backend: post-training quantization reads .* quantize on native-cpu or cpu$/),
      ]);
      expect(fs.existsSync(path.join(dir, 'q')), 'nothing written').toBe(false);
    } finally {
      model.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a kernel the GPU rejects fails the next read, instead of leaving wrong results behind', async () => {
    await selectBackend(registry, 'webgpu');
    const device = (tf.backend() as unknown as { device: GPUDeviceLike }).device;
    device.createBuffer({ size: 4, usage: 0xffffff }); // invalid usage flags: Dawn rejects it (and prints why)
    await device.queue.onSubmittedWorkDone();
    const t = tf.matMul(tf.ones([2, 2]), tf.ones([2, 2]));
    await expect(t.data()).rejects.toThrow(/GPU rejected a kernel/);
    await expect(t.data()).resolves.toEqual(new Float32Array([2, 2, 2, 2])); // one error, reported once
    tf.dispose(t);
  });

  it("a stateful LSTM's carried state reaches a checkpoint on webgpu: readToHost of its carried tensors reads it, then getState gives its values", async () => {
    await selectBackend(registry, 'webgpu');
    const rng = new Rng(3);
    const layer = registry.create('layer', { type: 'lstm', units: 3, stateful: true }) as Layer;
    layer.build([null, 4, 2], rng);
    const x = randomNormal([2, 4, 2], rng);
    try {
      tf.dispose(layer.apply(x, { training: false, rng }));
      const h = (layer as unknown as { state: { value: { h: tf.Tensor } } }).state.value.h;
      expect(() => layer.getState?.()).toThrow(/synchronous read/); // the state is on the GPU
      await readToHost(layer.carriedTensors!()); // the carried state belongs to what holds it (a model, or here the layer)
      const state = layer.getState!() as { shape: number[]; h: number[] };
      expect(state.shape).toEqual([2, 3]);
      expect(state.h).toEqual(Array.from(await h.data()));
    } finally {
      x.dispose();
      layer.dispose();
    }
  });

  describe('exempt', () => {
    for (const [name, { reason, holds }] of Object.entries(EXEMPT)) it(`${name}: ${reason}`, holds);
  });

  describe('trainer', () => {
    it("reads back to the CPU only what the trainer needs in a step: the loss with the gradients' finiteness (one read) and each metric's counts (accuracy: one)", async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-webgpu-'));
      const c = await buildRunContainer({ registry, backend: 'webgpu', config: toyConfig(dir, { trainer: { epochs: 1, batchSize: 16 } }) });
      // Every download from the GPU goes through getBufferData (async read); a synchronous read through readSync.
      const gpu = tf.findBackend('webgpu') as unknown as { getBufferData(b: unknown): Promise<ArrayBuffer>; readSync(d: object): unknown };
      const [getBufferData, readSync] = [gpu.getBufferData, gpu.readSync];
      let downloads = 0;
      let syncReads = 0;
      gpu.getBufferData = function (this: unknown, b: unknown) {
        downloads++;
        return getBufferData.call(this, b);
      };
      gpu.readSync = function (this: unknown, d: object) {
        syncReads++;
        return readSync.call(this, d);
      };
      try {
        const trainer = c.resolve(Trainer);
        const data = c.resolve(TOKENS.TrainData);
        const counts: number[] = [];
        for (let s = 0; s < 4; s++) {
          const b = data.batch([0, 1, 2, 3, 4, 5, 6, 7].map((i) => i + 8 * s));
          const before = downloads;
          await trainer.trainStep(b, { step: s, epoch: 0 });
          counts.push(downloads - before);
          tf.dispose([b.x, b.y]);
        }
        expect(counts, 'GPU reads per training step').toEqual([2, 2, 2, 2]);
        expect(syncReads, 'synchronous reads').toBe(0);
      } finally {
        gpu.getBufferData = getBufferData;
        gpu.readSync = readSync;
        disposeRun(c);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('holds GPU memory flat over 1,000 training steps (issue 19): tensors, bytes in tensors, and the buffer pool once warm', {
      timeout: 600_000,
    }, async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-webgpu-'));
      const c = await buildRunContainer({ registry, backend: 'webgpu', config: toyConfig(dir, { trainer: { epochs: 1, batchSize: 16 } }) });
      try {
        expect(tf.getBackend()).toBe('webgpu');
        // ~30 ms a step on llvmpipe (contended)
        const warm = await expectFlatMemoryAcrossSteps(c.resolve(Trainer), c.resolve(TOKENS.TrainData), { steps: 1000, warmup: 20, batchSize: 16 });
        expect(warm.numBytesInGPU, 'the weights and slots live on the GPU').toBeGreaterThan(0);
      } finally {
        disposeRun(c);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it("Learner on webgpu: fit, evaluate, predict and save give cpu's loss, outputs and saved weights (tolerance 1e-4·max|cpu| + 1e-6)", async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-webgpu-'));
      const rng = new Rng(11);
      const x = Array.from({ length: 48 }, () => [rng.next() * 2 - 1, rng.next() * 2 - 1]);
      const y = x.map(([a, b]) => (a! * b! > 0 ? 1 : 0)); // XOR of the signs
      const { model, loss, optimizer, metrics } = toyConfig(dir); // the toy runs' model (3 outputs; XOR's classes use 2)
      const learn = async (backend: string) => {
        const learner = await Learner.create({ registry, backend, model, loss, optimizer, metrics, seed: 4 });
        const history = await learner.fit({ x, y }, { epochs: 3, batchSize: 16 });
        const test = await learner.evaluate({ x, y });
        const out = learner.predict(x);
        const predicted = Float32Array.from(await out.data());
        out.dispose();
        await learner.save(path.join(dir, backend)); // the weights are on the GPU: fetched first on webgpu
        learner.dispose();
        learner.model.dispose();
        return { loss: history.epochs.at(-1)!.loss!, test: test.loss!, predicted };
      };
      try {
        const cpu = await learn('cpu');
        const gpu = await learn('webgpu');
        expect(tf.getBackend()).toBe('webgpu');
        expectNear([gpu.loss, gpu.test], [cpu.loss, cpu.test], 'training and evaluation loss');
        expectNear(gpu.predicted, cpu.predicted, 'predictions');
        await selectBackend(registry, 'cpu');
        const [a, b] = ['cpu', 'webgpu'].map((n) => loadModel(path.join(dir, n), registry));
        for (const [i, p] of a!.parameters().entries()) expectNear(b!.parameters()[i]!.variable.dataSync(), p.variable.dataSync(), `saved ${p.name}`);
        a!.dispose();
        b!.dispose();
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it("a pipeline (one stage, 3 micro-batches) and data parallelism (a world of one) train on webgpu as on cpu: the losses and weights cpu's runs reach (tolerance 1e-4·max|cpu| + 1e-6)", async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-webgpu-'));
      try {
        for (const parallelism of [{ type: 'pipeline', microBatches: 3 }, { type: 'mpi-data-parallel' }]) {
          const run = async (backend: string) => {
            const c = await buildRunContainer({
              registry,
              backend,
              config: toyConfig(dir, { trainer: { epochs: 2, batchSize: 16, validationSplit: 0.25 }, trackers: [], parallelism }),
            });
            try {
              const trainer = c.resolve(Trainer);
              expect(trainer.strategy.spec.type).toBe(parallelism.type);
              const history = await trainer.fit(c.resolve(TOKENS.TrainData), c.resolve(TOKENS.ValidationData));
              const params = c.resolve(TOKENS.Model).parameters();
              const weights = (await Promise.all(params.map((p) => p.variable.data()))).flatMap((v) => Array.from(v));
              return { losses: history.epochs.flatMap((e) => [e.loss!, e.val_loss!]), weights };
            } finally {
              disposeRun(c);
            }
          };
          const cpu = await run('cpu');
          const gpu = await run('webgpu');
          for (const [what, w, g] of [
            ['losses', cpu.losses, gpu.losses],
            ['weights', cpu.weights, gpu.weights],
          ] as const)
            expectNear(g, w, `${parallelism.type} ${what}`);
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it("a pruned run saves its masks from webgpu: the saved model's masks and weights are the cpu run's (weights within 1e-4·max|cpu| + 1e-6)", async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-webgpu-'));
      try {
        const run = (backend: string) =>
          runExperiment({
            registry,
            backend,
            config: toyConfig(dir, {
              trainer: { epochs: 1, batchSize: 16 },
              callbacks: [
                { type: 'magnitude-pruning', finalSparsity: 0.5, frequency: 1, prunings: 2, roles: ['kernel'] },
                { type: 'model-checkpoint', dir: path.join(dir, backend), keep: 1 },
              ],
            }),
          });
        await run('cpu');
        await run('webgpu'); // saveModel reads the masks synchronously: readToHost fetches them first
        await selectBackend(registry, 'cpu');
        const [cpu, gpu] = ['cpu', 'webgpu'].map((b) => loadModel(path.join(dir, b, 'epoch-1'), registry));
        try {
          const masked = cpu!.parameters().filter((p) => p.mask);
          expect(masked.map((p) => p.name).length, 'both kernels pruned').toBe(2);
          for (const [i, p] of cpu!.parameters().entries()) {
            const q = gpu!.parameters()[i]!;
            expect(q.mask ? Array.from(q.mask.dataSync()) : null, `${p.name}: mask`).toEqual(p.mask ? Array.from(p.mask.dataSync()) : null);
            expectNear(q.variable.dataSync(), p.variable.dataSync(), p.name);
          }
        } finally {
          cpu!.dispose();
          gpu!.dispose();
        }
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('a short run (fit, validation, checkpoints, the best model, test, save) logs the losses and accuracies the cpu run logs, within 1e-4', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-webgpu-'));
      try {
        const run = (name: string) =>
          toyConfig(dir, {
            trainer: { epochs: 2, batchSize: 16, validationSplit: 0.25, checkpoint: { everySteps: 3, keep: 2, dir: path.join(dir, `ckpt-${name}`) } },
            callbacks: [{ type: 'model-checkpoint', dir: path.join(dir, `best-${name}`), saveBestOnly: true }],
          });
        const cpu = await runExperiment({ registry, backend: 'cpu', config: run('cpu') });
        const gpu = await runExperiment({ registry, backend: 'webgpu', config: run('webgpu') });
        // Checkpoints (weights and Adam's slots) and the best model were written from webgpu's values, as on cpu.
        for (const name of ['cpu', 'webgpu']) {
          expect(fs.existsSync(path.join(dir, `best-${name}`, 'best', 'weights.bin')), `best model (${name})`).toBe(true);
          expect(
            fs.readdirSync(path.join(dir, `ckpt-${name}`), { recursive: true }).some((f) => String(f).endsWith('tensors.bin')),
            `checkpoints (${name})`,
          ).toBe(true);
        }
        expect(gpu.backend).toBe('webgpu');
        expect(gpu.tags['backend.adapter']).toBe(
          `${adapter.ok && adapter.facts.vendor} ${adapter.ok && adapter.facts.architecture} ${adapter.ok && adapter.facts.description}`,
        );
        for (const [i, epoch] of cpu.history.entries())
          for (const [k, v] of Object.entries(epoch))
            expect(Math.abs(gpu.history[i]![k]! - v), `epoch ${i + 1} ${k}`).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(v)));
        for (const [k, v] of Object.entries(cpu.test!)) expect(Math.abs(gpu.test![k]! - v), `test ${k}`).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(v)));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});

describe('webgpu backend selection', () => {
  it('is offered automatically only on a hardware adapter, and says why not otherwise', async () => {
    const available = await registry.create('backend', 'webgpu').available(false);
    if (adapter.ok && !adapter.facts.software) expect(available).toEqual({ ok: true });
    else {
      expect(available.ok).toBe(false);
      expect(available.reason).toMatch(adapter.ok ? /software adapter.*--backend webgpu/ : /webgpu|adapter|Dawn/);
    }
  });

  it('on a machine without a Vulkan driver, a run says why webgpu was skipped, and --backend webgpu is a ConfigError saying why', () => {
    // A process whose Vulkan loader finds no driver (VK_ICD_FILENAMES names none), as on a machine without one.
    const script = `
      import { createRegistry, selectBackend } from './core';
      import { registerBuiltins } from './plugins';
      const registry = registerBuiltins(createRegistry());
      const auto = await selectBackend(registry);
      let forced = '';
      try { await selectBackend(registry, 'webgpu'); } catch (e) { forced = e.name + ': ' + e.message; }
      console.log(JSON.stringify({ skipped: auto.tags['backend.skipped'], forced }));`;
    const root = path.resolve(import.meta.dirname, '../..');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, VK_ICD_FILENAMES: path.join(os.tmpdir(), 'no-such-icd.json'), LOOM_BACKEND: '', LOOM_WEBGPU_PEEK: '' },
    });
    expect(r.status, r.stderr).toBe(0);
    const { skipped, forced } = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { skipped: string; forced: string };
    const why =
      /webgpu: (Dawn finds no WebGPU adapter \(no Vulkan driver|the optional packages webgpu and @tensorflow\/tfjs-backend-webgpu are not both installed)/;
    expect(skipped).toMatch(why);
    expect(forced).toMatch(/^ConfigError: .*backend "webgpu" is not available here: (Dawn finds no WebGPU adapter|the optional package)/);
  });
});
