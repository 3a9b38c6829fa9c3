/**
 * `npm run bench -- webgpu`: training throughput on the webgpu backend (issue 19 item 4), where Dawn finds a hardware
 * adapter, beside native-cpu in the same process: the seed's MNIST CNN (papers/mnist-cnn's full preset, batch 128,
 * samples/s) and a Transformer encoder classifier (one encoder layer 256/4/1024 as in the `sequence` benchmark, sequence
 * 64, batch 32, mean-pooled into 10 classes, Adam; tokens/s). Each row's peers: native-cpu, and webgpu with loom's WGSL
 * kernels (webgpu-kernels.ts) unregistered, i.e. every fused op composed from tfjs kernels: whether the kernels pay on
 * that GPU.
 *
 * With only a software adapter (Mesa's llvmpipe) the rows are skipped, with a line saying so: its timings would be of
 * the CPU that emulates the GPU. `--force-software` runs them there anyway, to check the code path; such rows are
 * printed and never written to results/. `--tiny` shrinks every workload and the timing windows (a smoke test).
 */
import * as tf from '@tensorflow/tfjs-core';
import { buildModel, Rng, selectBackend, Trainer, trainerOptionsSchema, type ModelConfig, type PluginRegistry, type PluginSpec } from '../core';
import papers from '../papers/mnist-cnn';
import { registerWebGpuKernels, WEBGPU_KERNELS } from '../plugins/backends/webgpu-kernels';
import { entry, measure, type BenchEntry, type Benchmark, type PeerResult } from './harness';

export interface WebGpuBenchOptions {
  /** Run on a software adapter too (to check the code path; its rows are not GPU timings and are not written). */
  forceSoftware: boolean;
  /** Tiny workloads and timing windows. */
  tiny: boolean;
}

interface Workload {
  name: string;
  unit: string;
  model: ModelConfig;
  optimizer: PluginSpec;
  batch: () => { x: tf.Tensor; y: tf.Tensor };
  items: number;
}

function workloads(tiny: boolean): Workload[] {
  const mnist = papers.presets.full! as { model: ModelConfig; optimizer: PluginSpec };
  const b = tiny ? 4 : 128;
  const [t, d, heads, ff, tb] = tiny ? [8, 16, 2, 32, 2] : [64, 256, 4, 1024, 32];
  const labels = (n: number) =>
    tf.tensor1d(
      Array.from({ length: n }, (_, i) => i % 10),
      'int32',
    );
  return [
    {
      name: `mnist-cnn train b${b}`,
      unit: 'samples/s',
      model: mnist.model,
      optimizer: mnist.optimizer,
      batch: () => ({ x: tf.randomUniform([b, 28, 28, 1], 0, 1, 'float32', 3), y: labels(b) }),
      items: b,
    },
    {
      name: `transformer encoder ${d}/${heads}/${ff} t${t} b${tb} train`,
      unit: 'tokens/s',
      model: {
        inputShape: [t, d],
        layers: [{ type: 'transformer-encoder', numHeads: heads, ff, dropout: 0 }, { type: 'global-pool' }, { type: 'dense', units: 10 }],
      } as ModelConfig,
      optimizer: { type: 'adam', lr: 1e-4 },
      batch: () => ({ x: tf.randomNormal([tb, t, d], 0, 1, 'float32', 1), y: labels(tb) }),
      items: tb * t,
    },
  ];
}

/** Training throughput of `w` on the active backend: Trainer.trainStep, which ends by reading the loss (so the GPU's work is done). */
async function throughput(registry: PluginRegistry, w: Workload, tiny: boolean): Promise<number> {
  const model = buildModel(w.model, registry);
  model.build(model.inputShape, new Rng(0));
  const trainer = new Trainer({
    model,
    loss: registry.create('loss', 'sparse-categorical-crossentropy'),
    optimizer: registry.create('optimizer', w.optimizer),
    tracker: registry.create('tracker', 'console'),
    strategy: registry.create('parallelism', 'single-process'),
    rng: new Rng(0),
    options: trainerOptionsSchema.parse({ epochs: 1, batchSize: 1, logEvery: 1_000_000 }),
  });
  const { x, y } = w.batch();
  let step = 0;
  try {
    return await measure(() => trainer.trainStep({ x, y }, { step: step++, epoch: 0 }), w.items, tiny ? { seconds: 0.05, repeats: 1, warmup: 1 } : {});
  } finally {
    tf.dispose([x, y]);
    model.dispose();
  }
}

/** Rows where a hardware adapter exists (or forced on a software one); `restore` is the backend to leave active. */
export function webgpuRows(registry: PluginRegistry, restore: string, opts: WebGpuBenchOptions): Benchmark {
  return {
    name: 'webgpu',
    description: 'training throughput on webgpu (MNIST CNN, Transformer encoder) beside native-cpu and beside webgpu without loom’s WGSL kernels',
    async run(): Promise<BenchEntry[]> {
      const webgpu = registry.create('backend', 'webgpu');
      const hardware = await webgpu.available(false);
      let software = false;
      if (!hardware.ok) {
        const any = await webgpu.available(true);
        if (!opts.forceSoftware || !any.ok) {
          const hint = any.ok ? '; --force-software runs them there to check the code path (not GPU timings; not written to results/)' : '';
          console.log(`  webgpu rows skipped: ${hardware.reason}${hint}`);
          return [];
        }
        software = true;
        console.log(`  webgpu rows on a software adapter (--force-software): they check the code path; they are not GPU timings`);
      }
      const nativeCpu = await registry.create('backend', 'native-cpu').available(true);
      const out: BenchEntry[] = [];
      try {
        for (const w of workloads(opts.tiny)) {
          const { tags } = await selectBackend(registry, 'webgpu');
          const ours = await throughput(registry, w, opts.tiny);
          for (const name of Object.keys(WEBGPU_KERNELS)) tf.unregisterKernel(name, 'webgpu');
          let composed: number;
          try {
            composed = await throughput(registry, w, opts.tiny);
          } finally {
            registerWebGpuKernels();
          }
          let cpu: PeerResult;
          if (nativeCpu.ok) {
            await selectBackend(registry, 'native-cpu');
            cpu = { peer: 'loom on native-cpu', value: await throughput(registry, w, opts.tiny), unit: w.unit };
          } else cpu = { peer: 'loom on native-cpu', value: null, unit: w.unit, missing: nativeCpu.reason };
          const peers = [cpu, { peer: "loom on webgpu without loom's WGSL kernels (composed tfjs ops)", value: composed, unit: w.unit }];
          const adapter = tags['backend.adapter'] ?? '?';
          const row = entry(`webgpu ${w.name}`, w.unit, ours, `loom on webgpu (${adapter}) with loom's WGSL kernels`, peers);
          out.push(software ? { ...row, unrecorded: 'a software adapter: the CPU emulating a GPU' } : row);
        }
      } finally {
        await selectBackend(registry, restore);
      }
      return out;
    },
  };
}
