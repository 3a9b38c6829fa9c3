/**
 * One rank of benchmarks/data-parallel.ts, started by `mpirun -np N`: trains `model` (mnist-cnn | transformer) on
 * random data with the mpi-data-parallel strategy at `batch` examples per rank and prints, from rank 0, the
 * global throughput as `{"value": samples/s, "detail": ...}`. Every rank runs the same number of steps (rank 0
 * picks it from its warm-up and broadcasts it), because each step is an all-reduce that all ranks must join.
 * Usage: data-parallel-worker.ts <model> <batch per rank> <seconds>
 */
import 'reflect-metadata';
import * as tf from '@tensorflow/tfjs-core';
import { createRegistry, Rng, selectBackend, Sequential, Trainer, trainerOptionsSchema, type SequentialConfig } from '../core';
import papers from '../papers/mnist-cnn';
import { registerBuiltins } from '../plugins';
import { DataParallelStrategy } from '../plugins/parallelism/data-parallel';

const [which, batchArg, secondsArg] = process.argv.slice(2) as [string, string, string];
const batch = Number(batchArg);
const registry = registerBuiltins(createRegistry());
const { tags } = await selectBackend(registry, process.env.LOOM_BACKEND);
const strategy = registry.create('parallelism', 'mpi-data-parallel');
if (!(strategy instanceof DataParallelStrategy)) throw new Error('data-parallel-worker: mpi-data-parallel is not a DataParallelStrategy');
const { comm } = strategy;

const full = papers.presets.full! as { model: SequentialConfig };
const setups: Record<string, { model: SequentialConfig; loss: string; x: () => tf.Tensor; y: () => tf.Tensor }> = {
  'mnist-cnn': {
    model: full.model,
    loss: 'sparse-categorical-crossentropy',
    x: () => tf.randomUniform([batch, 28, 28, 1], 0, 1, 'float32', 3 + strategy.rank),
    y: () =>
      tf.tensor1d(
        Array.from({ length: batch }, (_, i) => (i + strategy.rank) % 10),
        'int32',
      ),
  },
  // One encoder layer (d 256, 4 heads, ff 1024) over 64 positions, regressing a random target.
  transformer: {
    model: { inputShape: [64, 256], layers: [{ type: 'transformer-encoder', numHeads: 4, ff: 1024, dropout: 0 }] },
    loss: 'mse',
    x: () => tf.randomNormal([batch, 64, 256], 0, 1, 'float32', 3 + strategy.rank),
    y: () => tf.randomNormal([batch, 64, 256], 0, 1, 'float32', 7 + strategy.rank),
  },
};
const setup = setups[which];
if (!setup) throw new Error(`data-parallel-worker: unknown model "${which}" (mnist-cnn, transformer)`);
const model = new Sequential(setup.model, registry);
model.build(undefined, new Rng(0));
const trainer = new Trainer({
  model,
  loss: registry.create('loss', setup.loss),
  optimizer: registry.create('optimizer', { type: 'adam', lr: 1e-3 }),
  tracker: registry.create('tracker', 'console'),
  strategy,
  rng: new Rng(0),
  options: trainerOptionsSchema.parse({ epochs: 1, batchSize: batch, shuffle: false, logEvery: 1000, evalBatchSize: batch }),
});
const data = { x: setup.x(), y: setup.y() };
let step = 0;
for (let i = 0; i < 2; i++) await trainer.trainStep(data, { step: step++, epoch: 0 }); // warm-up
const t0 = performance.now();
for (let i = 0; i < 2; i++) await trainer.trainStep(data, { step: step++, epoch: 0 });
const steps = Float32Array.of(Math.max(3, Math.ceil((Number(secondsArg) * 1000) / ((performance.now() - t0) / 2))));
await comm.broadcast(steps, 0);
await comm.barrier();
const t1 = performance.now();
for (let i = 0; i < steps[0]!; i++) await trainer.trainStep(data, { step: step++, epoch: 0 });
const seconds = (performance.now() - t1) / 1000;
if (strategy.isGlobalZero) {
  const value = (steps[0]! * batch * strategy.worldSize) / seconds;
  console.log(
    JSON.stringify({
      value,
      detail: `${strategy.worldSize} rank(s) x batch ${batch}, ${steps[0]} steps, ${tags.backend}, LOOM_THREADS=${process.env.LOOM_THREADS ?? 'all'}`,
    }),
  );
}
tf.dispose([data.x, data.y]);
model.dispose();
