/**
 * Training throughput of the seed's MNIST CNN (samples/s) at batch 32 and 128: loom (model and optimizer from
 * papers/mnist-cnn/presets/full.json, on the backend loom selects) vs tfjs-layers on stock tfjs-backend-cpu vs
 * PyTorch (best of 1 thread, 2 threads, and 2 threads whose idle threads sleep: harness.ts TORCH_SETTINGS).
 */
import * as tf from '@tensorflow/tfjs-core';
import { Rng, Sequential, Trainer, trainerOptionsSchema, type PluginRegistry } from '../core';
import papers from '../papers/mnist-cnn';
import { TORCH_SETTINGS, best, entry, measure, memoryTrend, nodePeer, pythonPeer, type Benchmark } from './harness';

/**
 * The benchmark's loop: a {@link Trainer} of the full preset's model, loss and optimizer (no metrics, callbacks or
 * tracking) and one fixed random batch of `batch` images, on which `step` takes one `trainStep`. Built once per
 * measurement; `dispose` frees the batch and the model.
 */
export async function mnistTrainStep(registry: PluginRegistry, batch: number): Promise<{ step: () => Promise<number>; dispose: () => void }> {
  const full = papers.presets.full! as { model: never; optimizer: never; loss: never };
  const model = new Sequential(full.model, registry);
  model.build(undefined, new Rng(0));
  const trainer = new Trainer({
    model,
    loss: registry.create('loss', full.loss),
    optimizer: registry.create('optimizer', full.optimizer),
    tracker: registry.create('tracker', 'console'),
    strategy: registry.create('parallelism', 'single-process'),
    rng: new Rng(0),
    options: trainerOptionsSchema.parse({ epochs: 1, batchSize: batch, shuffle: false, logEvery: 1000, evalBatchSize: batch }),
  });
  const x = tf.randomUniform([batch, 28, 28, 1], 0, 1, 'float32', 3);
  const y = tf.tensor1d(
    Array.from({ length: batch }, (_, i) => i % 10),
    'int32',
  );
  let n = 0;
  await trainer.trainStep({ x, y }, { step: n++, epoch: 0 });
  return {
    step: () => trainer.trainStep({ x, y }, { step: n++, epoch: 0 }),
    dispose() {
      tf.dispose([x, y]);
      model.dispose();
    },
  };
}

export function mnistCnn(registry: PluginRegistry, backend: string): Benchmark {
  return {
    name: 'mnist-cnn',
    description: "training samples/s of the seed's MNIST CNN, batch 32 and 128",
    async run() {
      const out = [];
      for (const batch of [32, 128]) {
        const { step: train, dispose } = await mnistTrainStep(registry, batch);
        const ours = await measure(train, batch);
        // Flat memory: live tensors constant and no upward trend in RSS measured after full collections, once warm.
        const memory = await memoryTrend(train, batch === 32 ? 4000 : 2000, batch === 32 ? 250 : 125, () => tf.memory().numTensors);
        dispose();
        const torch = best(TORCH_SETTINGS.map(({ threads: t, env }) => pythonPeer('mnist_cnn_torch.py', [batch, t, 3], 'PyTorch', 'samples/s', t, env)));
        const layers = nodePeer('mnist_cnn_tfjs_layers.ts', [batch], 'tfjs-layers on tfjs-backend-cpu', 'samples/s');
        out.push(entry(`mnist-cnn train b${batch}`, 'samples/s', ours, `loom on ${backend}; ${memory}`, [torch, layers], 1.5)); // issue 20: at least 1.5x PyTorch at its best
      }
      return out;
    },
  };
}
