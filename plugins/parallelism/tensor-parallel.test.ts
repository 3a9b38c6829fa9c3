/**
 * Tensor-parallel layers (Megatron-LM) in one process, where their group is the world of one: each equals its
 * unsplit counterpart built from the same seed EXACTLY (same whole weights, same outputs, same gradients of the input
 * and of every weight; fast-check over shapes, options and seeds, on every CPU backend), and the vocabulary-parallel
 * cross-entropy equals sparse-categorical-crossentropy within float32 rounding. The sharding helpers cut and join
 * whole tensors exactly, and sharding over a group that cannot divide an option fails naming the field. The
 * `tensor-parallel` strategy chosen by a config trains, in a world of one, exactly what single-process training of
 * the dense model trains, and with more ranks refuses (naming the field) what it cannot do.
 * Under real `mpirun -np 2` and `-np 4` on loopback (one launch each, all checks in it; skipped only where mpirun
 * is absent), test/fixtures/tensor-parallel-worker.ts checks every split layer, whole Transformer blocks and the
 * parallel cross-entropy against the unsplit ones (outputs and gradients within 1e-5 of each tensor's scale: float32
 * rounding of sums taken in another order; measured ≤ 3.2e-7 per layer, 1.3e-6 for a GPT-like model's two SGD steps),
 * counts the block's all-reduces, makes a sharded model whole and shards it again between two training steps, and
 * checks that a step leaves no tensor behind.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ConfigError,
  Rng,
  Sequential,
  selectBackend,
  TOKENS,
  Trainer,
  trainerOptionsSchema,
  type Communicator,
  type Layer,
  type Loss,
  type PluginRegistry,
  type PluginSpec,
  type Shape,
  type StrategyHost,
} from '../../core';
import { buildRunContainer, disposeRun } from '../../runtime';
import { cpuBackends, testRegistry } from '../../test/harness';
import toyBlobs, { toyConfig } from '../../test/toy-data';
import {
  type ColumnParallelDense,
  joinColumns,
  joinRows,
  type ParallelTransformerBlock,
  shardColumns,
  shardModel,
  shardRows,
  SINGLE_GROUP,
  refuseWithSlices,
  TensorParallelStrategy,
  wholeModelWeights,
  type TensorParallelGroup,
} from './tensor-parallel';

let registry: PluginRegistry;
let backends: string[];
beforeAll(async () => {
  registry = await testRegistry();
  backends = await cpuBackends();
});

/** Output and the gradients of Σ y·dy with respect to the input (when float) and every weight, as arrays. */
function run(layer: Layer, x: tf.Tensor, training: boolean, seed: number, mask?: tf.Tensor): { y: Float32Array; grads: Float32Array[] } {
  return tf.tidy(() => {
    const ctx = () => ({ training, rng: new Rng(seed), ...(mask ? { mask } : {}) });
    const y = layer.apply(x, ctx());
    const dy = tf.randomNormal(y.shape, 0, 1, 'float32', seed + 7);
    const input = x.dtype === 'float32' ? tf.variable(x) : null;
    const vars = [...(input ? [input] : []), ...layer.parameters().map((p) => p.variable)];
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(layer.apply(input ?? x, ctx()), dy)) as tf.Scalar, vars);
    const out = { y: y.dataSync() as Float32Array, grads: vars.map((v) => grads[v.name]!.dataSync() as Float32Array) };
    input?.dispose();
    return out;
  });
}

/** Builds `spec` and `reference` from the same seed, checks their whole weights are identical, and both runs are too. */
function expectExactlyEqual(spec: PluginSpec, reference: PluginSpec, shape: Shape, x: tf.Tensor, training: boolean, seed: number, mask?: tf.Tensor): void {
  const a = registry.create('layer', spec) as Layer;
  const b = registry.create('layer', reference) as Layer;
  try {
    a.build(shape, new Rng(seed));
    b.build(shape, new Rng(seed));
    expect(a.parameters().map((p) => p.name.split('/').slice(1).join('/'))).toEqual(b.parameters().map((p) => p.name.split('/').slice(1).join('/')));
    a.parameters().forEach((p, i) => expect(p.variable.dataSync()).toEqual(b.parameters()[i]!.variable.dataSync()));
    const ra = run(a, x, training, seed, mask);
    const rb = run(b, x, training, seed, mask);
    expect(ra.y).toEqual(rb.y);
    expect(ra.grads.length).toBe(rb.grads.length);
    ra.grads.forEach((g, i) => expect(g, `gradient ${i}`).toEqual(rb.grads[i]));
  } finally {
    a.dispose();
    b.dispose();
  }
}

describe('tensor-parallel layers in a world of one', () => {
  it('column- and row-parallel dense are exactly dense (outputs, input and weight gradients)', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 9 }),
          fc.integer({ min: 1, max: 9 }),
          fc.boolean(),
          fc.constantFrom('linear', 'relu', 'tanh', 'gelu'),
          fc.boolean(),
          fc.constantFrom('column-parallel-dense', 'row-parallel-dense'),
          fc.integer({ min: 0, max: 1e6 }),
          (inF, units, seq, activation, useBias, type, seed) => {
            const shape = seq ? [2, 3, inF] : [3, inF];
            const x = tf.randomNormal(shape, 0, 1, 'float32', seed);
            const extra: Record<string, boolean> = type === 'column-parallel-dense' ? { gatherOutput: seed % 2 === 0 } : { inputIsParallel: seed % 2 === 0 };
            try {
              expectExactlyEqual(
                { type, units, activation, useBias, ...extra },
                { type: 'dense', units, activation, useBias },
                [null, ...shape.slice(1)],
                x,
                false,
                seed,
              );
            } finally {
              x.dispose();
            }
          },
        ),
        { numRuns: 12 },
      );
    }
  });

  it('parallel-attention is exactly multi-head-attention (padding and causal masks, attention dropout in training)', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 5 }),
          fc.boolean(),
          fc.boolean(),
          fc.constantFrom(0, 0.3),
          fc.integer({ min: 0, max: 1e6 }),
          (heads, dk, t, causal, masked, dropout, seed) => {
            const d = heads * dk;
            const x = tf.randomNormal([2, t, d], 0, 1, 'float32', seed);
            const mask = masked ? tf.tensor2d([Array.from({ length: t }, (_, i) => (i === t - 1 && t > 1 ? 0 : 1)), Array(t).fill(1)]) : undefined;
            const opts = { numHeads: heads, causal, dropout };
            try {
              expectExactlyEqual({ type: 'parallel-attention', ...opts }, { type: 'multi-head-attention', ...opts }, [null, t, d], x, dropout > 0, seed, mask);
            } finally {
              tf.dispose([x, ...(mask ? [mask] : [])]);
            }
          },
        ),
        { numRuns: 10 },
      );
    }
  });

  it('parallel-transformer-block is exactly transformer-encoder (post- and pre-norm, causal, dropout)', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 2 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 8 }),
          fc.boolean(),
          fc.boolean(),
          fc.constantFrom(0, 0.2),
          fc.integer({ min: 0, max: 1e6 }),
          (heads, dk, ff, preNorm, causal, dropout, seed) => {
            const d = heads * dk;
            const x = tf.randomNormal([2, 3, d], 0, 1, 'float32', seed);
            const opts = { numHeads: heads, ff, preNorm, causal, dropout, attentionDropout: dropout, activation: 'gelu' };
            try {
              expectExactlyEqual({ type: 'parallel-transformer-block', ...opts }, { type: 'transformer-encoder', ...opts }, [null, 3, d], x, dropout > 0, seed);
            } finally {
              x.dispose();
            }
          },
        ),
        { numRuns: 8 },
      );
    }
  });

  it('vocab-parallel-embedding is exactly embedding (lookups and the table gradient)', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: 1e6 }), (vocab, dim, seed) => {
          const g = new Rng(seed);
          const ids = tf.tensor2d(
            Array.from({ length: 8 }, () => Math.floor(g.next() * vocab)),
            [2, 4],
            'int32',
          );
          try {
            expectExactlyEqual(
              { type: 'vocab-parallel-embedding', vocabSize: vocab, dim },
              { type: 'embedding', vocabSize: vocab, dim },
              [null, 4],
              ids,
              false,
              seed,
            );
          } finally {
            ids.dispose();
          }
        }),
        { numRuns: 10 },
      );
    }
  });

  it('vocab-parallel-cross-entropy equals sparse-categorical-crossentropy (loss and gradient; ignoreIndex, label smoothing) within float32 rounding', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 7 }),
          fc.integer({ min: 2, max: 9 }),
          fc.boolean(),
          fc.double({ min: 0.1, max: 30, noNaN: true }),
          fc.integer({ min: 0, max: 1e6 }),
          (n, classes, ignore, spread, seed) => {
            const g = new Rng(seed);
            const labels = tf.tensor1d(
              Array.from({ length: n }, () => Math.floor(g.next() * classes)),
              'float32',
            );
            const z = tf.randomNormal([n, classes], 0, spread, 'float32', seed);
            const options: Record<string, number> = { ...(ignore ? { ignoreIndex: 0 } : {}), ...(seed % 3 === 0 ? { labelSmoothing: 0.1 } : {}) };
            const parallel = registry.create('loss', { type: 'vocab-parallel-cross-entropy', ...options }) as Loss;
            const unsplit = registry.create('loss', { type: 'sparse-categorical-crossentropy', ...options }) as Loss;
            try {
              const [a, b] = [parallel, unsplit].map((loss) =>
                tf.tidy(() => {
                  const { value, grads } = tf.valueAndGrads((v: tf.Tensor) => loss.compute(labels, v))([z]);
                  return { loss: value.dataSync()[0]!, grad: grads[0]!.dataSync() as Float32Array };
                }),
              );
              // log S + M − z_y against logsumexp − z_y: a few float32 roundings of numbers of size ≤ |z| + log K.
              const scale = 1 + spread * 6 + Math.log(classes);
              expect(Math.abs(a!.loss - b!.loss)).toBeLessThanOrEqual(4e-7 * scale * 4);
              a!.grad.forEach((v, i) => expect(Math.abs(v - b!.grad[i]!)).toBeLessThanOrEqual(1e-6));
            } finally {
              tf.dispose([labels, z]);
            }
          },
        ),
        { numRuns: 20 },
      );
    }
  });
});

describe('the tensor-parallel strategy', () => {
  it('chosen by a config, in a world of one, trains exactly what single-process training of the dense model trains', async () => {
    const reg = (await testRegistry()).register(toyBlobs);
    const quiet = () => undefined;
    const config = (tp: boolean) => ({
      ...toyConfig('unused', {
        trackers: ['console'],
        trainer: { epochs: 2, batchSize: 16, validationSplit: 0.25, logEvery: 100, checkpoint: { enabled: false } },
      }),
      data: { source: { type: 'toy-blobs', size: 96, classes: 4 } },
      model: {
        inputShape: [2],
        layers: [
          { type: tp ? 'column-parallel-dense' : 'dense', units: 8, activation: 'relu' },
          { type: tp ? 'row-parallel-dense' : 'dense', units: 6, activation: 'tanh' },
          tp ? { type: 'column-parallel-dense', units: 4, gatherOutput: true } : { type: 'dense', units: 4 },
        ],
      },
      parallelism: tp ? 'tensor-parallel' : 'single-process',
    });
    const run = async (tp: boolean) => {
      const c = await buildRunContainer({ registry: reg, config: config(tp), log: quiet });
      const trainer = c.resolve(Trainer);
      const history = await trainer.fit(c.resolve(TOKENS.TrainData), c.resolve(TOKENS.ValidationData));
      const out = {
        type: trainer.strategy.spec.type,
        history,
        weights: c
          .resolve(TOKENS.Model)
          .parameters()
          .map((p) => Array.from(p.variable.dataSync())),
      };
      disposeRun(c);
      return out;
    };
    const [tp, single] = [await run(true), await run(false)];
    expect([tp.type, single.type]).toEqual(['tensor-parallel', 'single-process']);
    expect(tp.weights).toEqual(single.weights);
    expect(tp.history.epochs).toEqual(single.history.epochs);
  });

  it('with more than one rank refuses, naming the field, what it cannot do: clipNorm, onNonFinite skip, an optimizer that is not element-wise, a model without tensor-parallel layers', async () => {
    const fake: Communicator = {
      rank: 0,
      worldSize: 2,
      allReduce: async () => undefined,
      broadcast: async () => undefined,
      barrier: async () => undefined,
      send: async () => undefined,
      recv: async () => undefined,
      finalize: async () => undefined,
    } as unknown as Communicator;
    const group: TensorParallelGroup = { rank: 0, worldSize: 2, allReduceNow: () => undefined };
    const model = new Sequential({ inputShape: [3], layers: [{ type: 'dense', units: 2 }] }, registry);
    model.build(undefined, new Rng(0));
    const options = trainerOptionsSchema.parse({ epochs: 1, batchSize: 1 });
    const host = (o: Record<string, unknown>, optimizer: unknown = registry.create('optimizer', 'sgd')) =>
      ({ model, loss: registry.create('loss', 'vocab-parallel-cross-entropy'), optimizer, options: { ...options, ...o } }) as unknown as StrategyHost;
    const strategy = new TensorParallelStrategy(fake, group);
    await expect(strategy.setup(host({ clipNorm: 1 }))).rejects.toThrow(/^trainer\.clipNorm: is not supported with tensor parallelism over 2 ranks/);
    await expect(strategy.setup(host({ onNonFinite: 'skip' }))).rejects.toThrow(/^trainer\.onNonFinite: /);
    await expect(strategy.setup(host({}, { spec: { type: 'lamb' } }))).rejects.toThrow(
      /^optimizer\.type: tensor parallelism steps each rank's slices on their own, which needs an element-wise update rule/,
    );
    await expect(strategy.setup(host({}))).rejects.toThrow('parallelism: tensor parallelism over 2 ranks needs tensor-parallel layers in the model');
    model.dispose();
  });

  it('refuseWithSlices, shared with the hybrid strategy (tensor > 1): onNonFinite skip, clipNorm and a non-element-wise optimizer, naming the field and the layout', () => {
    const options = trainerOptionsSchema.parse({ epochs: 1, batchSize: 1 });
    const host = (o: Record<string, unknown>, type = 'adam') => ({ options: { ...options, ...o }, optimizer: { spec: { type } } }) as unknown as StrategyHost;
    const where = 'parallelism.tensor = 2';
    expect(() => refuseWithSlices(host({}), where)).not.toThrow();
    expect(() => refuseWithSlices(host({ clipValue: 1 }), where)).not.toThrow();
    expect(() => refuseWithSlices(host({ onNonFinite: 'skip' }), where)).toThrow(/^trainer\.onNonFinite: is not supported with parallelism\.tensor = 2: /);
    expect(() => refuseWithSlices(host({ clipNorm: 1 }), where)).toThrow(/^trainer\.clipNorm: is not supported with parallelism\.tensor = 2: /);
    expect(() => refuseWithSlices(host({}, 'lamb'), where)).toThrow(/^optimizer\.type: .*optimizer "lamb" is not known to be one/);
  });
});

describe('sharding helpers', () => {
  it('shards of columns (in blocks) and rows join back to the whole tensor exactly; shard r holds its slice of every block', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 5 }),
        (size, blocks, per, rows) => {
          const cols = size * blocks * per;
          const w = tf.tensor2d(
            Array.from({ length: rows * cols }, (_, i) => i),
            [rows, cols],
          );
          const byCols = Array.from({ length: size }, (_, r) => shardColumns(w, r, size, blocks));
          const byRows = Array.from({ length: size }, (_, r) => shardRows(tf.transpose(w), r, size));
          try {
            for (const [r, s] of byCols.entries()) {
              const v = s.arraySync() as number[][];
              // Element (i, b·per + c) of shard r is column (b·size + r)·per + c of the whole.
              for (let i = 0; i < rows; i++)
                for (let b = 0; b < blocks; b++) for (let c = 0; c < per; c++) expect(v[i]![b * per + c]).toBe(i * cols + (b * size + r) * per + c);
            }
            const joined = joinColumns(byCols, blocks);
            expect(joined.dataSync()).toEqual(w.dataSync());
            const t = joinRows(byRows);
            expect(t.arraySync()).toEqual(tf.transpose(w).arraySync());
            tf.dispose([joined, t]);
          } finally {
            tf.dispose([w, ...byCols, ...byRows]);
          }
        },
      ),
      { numRuns: 30 },
    );
  });

  it('a group of one leaves the weights whole; wholeModelWeights returns them; a group that cannot divide names the field', () => {
    const block = registry.create('layer', { type: 'parallel-transformer-block', numHeads: 2, ff: 6 }, 'model.layers[0]') as ParallelTransformerBlock;
    block.build([null, 3, 4], new Rng(3));
    const before = block.parameters().map((p) => Array.from(p.variable.dataSync()));
    expect(shardModel(block, SINGLE_GROUP)).toBe(1);
    const whole = wholeModelWeights(block);
    expect([...whole.keys()]).toEqual(block.parameters().map((p) => p.name));
    block.parameters().forEach((p, i) => expect(Array.from(whole.get(p.name)!.dataSync())).toEqual(before[i]));
    tf.dispose([...whole.values()]);
    block.dispose();

    const three: TensorParallelGroup = { rank: 0, worldSize: 3, allReduceNow: () => expect.unreachable('no communication before the check') };
    const dense = registry.create('layer', { type: 'column-parallel-dense', units: 4 }, 'model.layers[2]') as ColumnParallelDense;
    dense.build([null, 5], new Rng(0));
    expect(() => dense.shard(three)).toThrow(ConfigError);
    expect(() => dense.shard(three)).toThrow('model.layers[2].units: 4 is not divisible by the tensor-parallel size 3');
    dense.dispose();
    const attn = registry.create('layer', { type: 'parallel-transformer-block', numHeads: 2, ff: 6 }, 'model.layers[1]') as ParallelTransformerBlock;
    attn.build([null, 2, 4], new Rng(0));
    expect(() => attn.shard(three)).toThrow('model.layers[1].attention.numHeads: 2 is not divisible by the tensor-parallel size 3');
    attn.dispose();
    const soft = registry.create('layer', { type: 'column-parallel-dense', units: 4, activation: 'softmax' }, 'head') as ColumnParallelDense;
    soft.build([null, 5], new Rng(0));
    expect(() => soft.shard({ ...three, worldSize: 2 })).toThrow('head.activation: softmax mixes the whole row');
    soft.dispose();
  });

  it('sharding over two ranks keeps rank r’s slices in the same Parameter objects, and frees the whole weights', () => {
    const dense = registry.create('layer', { type: 'column-parallel-dense', units: 6 }) as ColumnParallelDense;
    dense.build([null, 5], new Rng(4));
    const whole = dense.parameters().map((p) => p.variable.clone());
    const params = [...dense.parameters()];
    const names = params.map((p) => p.name);
    const before = tf.memory().numTensors;
    dense.shard({ rank: 1, worldSize: 2, allReduceNow: () => undefined });
    expect(tf.memory().numTensors).toBe(before); // two slices in, two whole weights out
    expect(dense.parameters().map((p) => p.name)).toEqual(names);
    dense.parameters().forEach((p, i) => expect(p).toBe(params[i])); // the same Parameter objects, new variables
    expect(dense.parameters().map((p) => p.variable.shape)).toEqual([[5, 3], [3]]);
    const want = shardColumns(whole[0]!, 1, 2);
    expect(dense.parameters()[0]!.variable.dataSync()).toEqual(want.dataSync());
    tf.dispose([want, ...whole]);
    dense.dispose();
  });
});

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const hasMpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;

/** One launch of test/fixtures/tensor-parallel-worker.ts on `np` ranks over loopback (as mpi.test.ts launches); each rank writes its results into `out`. */
function mpirun(np: number, out: string) {
  const args = ['--oversubscribe', '-np', String(np), '--mca', 'btl', 'self,tcp', '--mca', 'btl_tcp_if_include', 'lo', '--bind-to', 'none'];
  args.push(process.execPath, path.join(repo, 'test/fixtures/run-ts.mjs'), path.join(repo, 'test/fixtures/tensor-parallel-worker.ts'));
  const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', LOOM_THREADS: '1', LOOM_MPI_RESULTS: out };
  // A hang (a rank stuck in a collective) fails the test at the timeout instead of blocking the suite.
  return spawnSync('mpirun', args, { cwd: repo, env, encoding: 'utf8', timeout: 50_000 });
}

interface RankResult {
  rank: number;
  checks: Record<string, { ok: boolean; detail: string }>;
}

describe.skipIf(!hasMpirun)('tensor parallelism under Open MPI (needs mpirun: apt-get install openmpi-bin libopenmpi-dev)', () => {
  for (const np of [2, 4]) {
    it(`-np ${np}: every split layer, whole Transformer blocks, the parallel cross-entropy, a GPT-like model's steps and the tensor-parallel strategy equal the unsplit ones; 2 + 2 all-reduces per block`, () => {
      expect(fs.existsSync(path.join(repo, 'native/mpi/build/Release/loom_mpi.node')), 'the MPI binding is not built: npm run build:mpi').toBe(true);
      let results: RankResult[] = [];
      const out = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-tp-'));
      try {
        const r = mpirun(np, out);
        expect(r.error, 'mpirun did not end: a rank is still waiting').toBeUndefined();
        expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
      } finally {
        results = fs.readdirSync(out).map((f) => JSON.parse(fs.readFileSync(path.join(out, f), 'utf8')) as RankResult);
        fs.rmSync(out, { recursive: true, force: true });
      }
      expect(results.map((x) => x.rank).sort()).toEqual(Array.from({ length: np }, (_, i) => i));
      const failed = results.flatMap((x) =>
        Object.entries(x.checks)
          .filter(([, c]) => !c.ok)
          .map(([name, c]) => `rank ${x.rank}: ${name} (${c.detail})`),
      );
      expect(failed).toEqual([]);
      // 17 checks, and with 4 ranks one more: a block over sub-communicators of 2 ranks.
      for (const x of results) expect(Object.keys(x.checks).length).toBe(np >= 4 ? 18 : 17);
    }, 60_000);
  }
});
