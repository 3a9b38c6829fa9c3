/**
 * Conformance of models: every registered model (kind `model`, built on core/module.ts), for each example it
 * declares, and a Sequential, get the same checks, one test per model and property (`-t gpt` selects one model):
 * parameter names (`<model>/<part>/<weight>`, unique, independent of the seed), initial weights drawn from the
 * seed alone, gradients against finite differences with no tensor leak, a config that round-trips, saving and
 * loading (same weights, same outputs), and a run resumed from a checkpoint that ends with the weights of the
 * uninterrupted run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  buildModel,
  createRegistry,
  definePlugin,
  listCheckpoints,
  loadModel,
  modelOptions,
  readWeights,
  Rng,
  saveModel,
  sha256,
  TensorDataset,
  type JsonObject,
  type Model,
  type ModelConfig,
  type NamedWeights,
  type PluginRegistry,
} from '../core';
import { runExperiment } from '../runtime';
import { registerBuiltins } from '../plugins';
import gptModel, { GPT } from '../plugins/models/gpt';
import { cpuBackends, expectNoLeak, gradCheck, randomNormal, testRegistry } from './harness';

/** The registry of the backend under test (set per backend); `catalogue` lists the models and their examples. */
let registry: PluginRegistry;
let backend = '';
const catalogue = registerBuiltins(createRegistry());
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-models-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Case {
  label: string;
  config: ModelConfig;
  /** One batch's input shape, batch dimension included. */
  inputShape: number[];
  /** Integer inputs (token ids) in [0, inputInts). */
  inputInts?: number;
}

const cases: Case[] = [
  {
    label: 'sequential',
    config: { inputShape: [3], layers: [{ type: 'dense', units: 4, activation: 'tanh' }, { type: 'layer-norm' }, { type: 'dense', units: 2 }] },
    inputShape: [2, 3],
  },
  ...catalogue.names('model').flatMap((name) =>
    (catalogue.get('model', name).examples ?? []).map((ex, i) => ({
      label: `${name}${i ? ` #${i + 1}` : ''}`,
      config: { type: name, ...ex.options } as ModelConfig,
      inputShape: ex.inputShape!,
      inputInts: ex.inputInts,
    })),
  ),
];

function build(c: Case, seed: number): Model {
  const model = buildModel(c.config, registry);
  model.build(model.inputShape, new Rng(seed));
  return model;
}

function input(c: Case, rng: Rng, batch = c.inputShape[0]!): tf.Tensor {
  const shape = [batch, ...c.inputShape.slice(1)];
  const n = shape.reduce((a, b) => a * b, 1);
  return c.inputInts
    ? tf.tensor(
        Int32Array.from({ length: n }, () => rng.int(c.inputInts!)),
        shape,
        'int32',
      )
    : randomNormal(shape, rng);
}

const values = (w: NamedWeights) => [...w].map(([k, v]) => [k, v.shape, Array.from(v.values)]);
const inference = { training: false, rng: new Rng(0) };

describe.each(await cpuBackends())('on backend %s', (name) => {
  beforeAll(async () => {
    registry = await testRegistry(name);
    backend = name;
  });

  describe('every model', () => {
    it('is registered with examples', () => {
      expect(registry.names('model').length).toBeGreaterThan(0);
      for (const name of registry.names('model')) expect(registry.get('model', name).examples?.length, `model ${name} declares examples`).toBeGreaterThan(0);
    });

    describe.each(cases)('$label', (c) => {
      it('names its parameters <layer>/<weight> (a registered model: <model>/<part>/<weight>), uniquely and the same for any seed', () => {
        const [a, b] = [build(c, 1), build(c, 2)];
        try {
          const names = a.weights().map((p) => p.name);
          expect(new Set(names).size).toBe(names.length);
          expect(a.weights().map((p) => `${p.name}:${p.variable.shape}`)).toEqual(b.weights().map((p) => `${p.name}:${p.variable.shape}`));
          expect(names.slice(0, a.parameters().length)).toEqual(a.parameters().map((p) => p.name));
          if (a.spec.type === 'sequential') {
            const layers = (a.spec.layers as JsonObject[]).map((l) => l.name as string);
            for (const n of names)
              expect(
                layers.some((l) => n.startsWith(`${l}/`)),
                n,
              ).toBe(true);
          } else {
            for (const n of names) expect(n, n).toMatch(new RegExp(`^${a.name}/[^/]+/.+|^${a.name}/[^/]+$`));
          }
          expect(a.countParams()).toBe(a.parameters().reduce((s, p) => s + p.variable.size, 0));
        } finally {
          a.dispose();
          b.dispose();
        }
      });

      it('draws its initial weights from the seed alone', () => {
        const [a, b, other] = [build(c, 5), build(c, 5), build(c, 6)];
        try {
          expect(values(readWeights(a.weights()))).toEqual(values(readWeights(b.weights())));
          expect(values(readWeights(a.weights()))).not.toEqual(values(readWeights(other.weights())));
        } finally {
          for (const m of [a, b, other]) m.dispose();
        }
      });

      it('has gradients matching finite differences and leaks no tensor (built, trained and disposed: none left)', () => {
        const start = tf.memory().numTensors;
        const rng = new Rng(11);
        const model = build(c, 11);
        const x = input(c, rng);
        const wrt = model.parameters().map((p) => p.variable);
        const ctx = () => ({ training: true, rng: new Rng(3) });
        try {
          gradCheck(`model ${c.label}`, () => model.apply(x, ctx()), wrt, rng);
          expectNoLeak(() => {
            const { value, grads } = tf.variableGrads(() => tf.sum(model.apply(x, ctx())) as tf.Scalar, wrt);
            tf.dispose([value, ...Object.values(grads)]);
          });
        } finally {
          x.dispose();
          model.dispose();
        }
        expect(tf.memory().numTensors).toBe(start);
      });

      it('has a config that round-trips through JSON and rebuilds the same model', () => {
        const a = buildModel(c.config, registry);
        const b = buildModel(JSON.parse(JSON.stringify(a.spec)) as ModelConfig, registry);
        expect(b.spec).toEqual(a.spec);
        expect(b.inputShape).toEqual(a.inputShape);
        a.dispose();
        b.dispose();
      });

      it('saves and loads: the same weights by name, and the same outputs bit for bit', () => {
        const model = build(c, 21);
        const out = path.join(dir, `saved-${backend}-${c.label.replace(/\W+/g, '-')}`);
        const x = input(c, new Rng(22), 3);
        try {
          saveModel(model, out);
          const loaded = loadModel(out, registry);
          try {
            expect(loaded.spec).toEqual(model.spec);
            expect(values(readWeights(loaded.weights()))).toEqual(values(readWeights(model.weights())));
            const [ya, yb] = [model, loaded].map((m) => tf.tidy(() => m.apply(x, inference)));
            expect(Array.from(yb!.dataSync())).toEqual(Array.from(ya!.dataSync()));
            tf.dispose([ya!, yb!]);
          } finally {
            loaded.dispose();
          }
        } finally {
          x.dispose();
          model.dispose();
        }
      });

      it('resumed from a checkpoint, ends a run with the weights of the uninterrupted run', async () => {
        const { uninterrupted, resumed } = await trainAndResume(c, c.label);
        expect(resumed).toEqual(uninterrupted);
      });
    });
  });

  describe('configs written before models were their own kind', () => {
    it('a Sequential whose one layer names a model builds that model; its saved files (loom.sequential 1) still load', () => {
      const spec = { type: 'gpt', name: 'gpt', vocabSize: 7, context: 5, dModel: 8, numHeads: 2, layers: 1, dropout: 0 };
      const legacy = buildModel({ inputShape: [5], layers: [spec] }, registry);
      expect(legacy.spec).toEqual(registry.normalize('model', spec));
      legacy.dispose();
      const model = build({ label: 'gpt', config: spec, inputShape: [2, 5], inputInts: 7 }, 4);
      const out = path.join(dir, `legacy-${backend}`);
      saveModel(model, out);
      const manifest = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8')) as JsonObject;
      const { type: _t, ...options } = manifest.config as JsonObject;
      const old = { ...manifest, format: 'loom.sequential', version: 1, config: { inputShape: [5], layers: [{ type: 'gpt', ...options }] } };
      fs.writeFileSync(path.join(out, 'model.json'), JSON.stringify(old));
      const loaded = loadModel(out, registry);
      expect(loaded.spec).toEqual(model.spec);
      expect(values(readWeights(loaded.weights()))).toEqual(values(readWeights(model.weights())));
      loaded.dispose();
      model.dispose();
    });

    it("a checkpoint whose config names the model as a Sequential's one layer resumes under the new config, exactly", async () => {
      const spec = { type: 'gpt', name: 'gpt', vocabSize: 7, context: 5, dModel: 8, numHeads: 2, layers: 1, dropout: 0 };
      const legacy = (state: JsonObject) => {
        (state.config as JsonObject).model = { inputShape: [5], layers: [spec] };
      };
      const { uninterrupted, resumed } = await trainAndResume({ label: 'gpt', config: spec, inputShape: [2, 5], inputInts: 7 }, 'legacy-gpt', legacy);
      expect(resumed).toEqual(uninterrupted);
    });

    it("reads a model config's options as its plugin does, and refuses another model's config naming the field", () => {
      const options = modelOptions(gptModel, { type: 'gpt', vocabSize: 7, context: 5 });
      expect(options).toMatchObject({ vocabSize: 7, context: 5, dModel: 384, layers: 6, tieEmbeddings: true });
      expect(() => modelOptions(gptModel, { type: 'bert', vocabSize: 7 })).toThrow(/^model\.type: expected a "gpt" model, got "bert"/);
      expect(() => modelOptions(gptModel, cases[0]!.config)).toThrow(/^model\.type: expected a "gpt" model, got a Sequential/);
      expect(() => modelOptions(gptModel, { type: 'gpt', vocabSize: 0, context: 5 })).toThrow(/^model\.vocabSize: /);
    });

    it('a Sequential of layers stays a Sequential, and a model of another class is refused by name', () => {
      const seq = buildModel(cases[0]!.config, registry);
      expect(seq.spec.type).toBe('sequential');
      const out = path.join(dir, `sequential-${backend}`);
      seq.build(seq.inputShape, new Rng(0));
      saveModel(seq, out);
      seq.dispose();
      expect(() => loadModel(out, registry, GPT)).toThrow(/saved model .*model\.json: expected a GPT model, got a Sequential/);
    });
  });
});

/**
 * Trains `c` on random data of its shapes for 6 steps (checkpoints after each), then again from the checkpoint after
 * step 2, copied to a folder of its own (the finished run's folder is marked done) and first passed to `edit` (its
 * state.json's manifest, to rewrite); returns both runs' final weights.
 */
async function trainAndResume(c: Case, tag: string, edit?: (state: JsonObject) => void): Promise<{ uninterrupted: unknown[]; resumed: unknown[] }> {
  const probe = build(c, 0);
  const [inShape, out] = [probe.inputShape.slice(1) as number[], probe.outputShape];
  probe.dispose();
  // Data the model takes: its inputs, and class labels for its outputs ([batch, classes] or [batch, time, vocab]).
  const n = 12;
  const rng = new Rng(31);
  const size = (shape: number[]) => n * shape.reduce((a, b) => a * b, 1);
  const ints = c.inputInts;
  const x = ints ? Int32Array.from({ length: size(inShape) }, () => rng.int(ints)) : Float32Array.from({ length: size(inShape) }, () => rng.normal());
  const yShape = out.slice(1, -1) as number[];
  const y = Int32Array.from({ length: size(yShape) }, () => rng.int(out.at(-1)!));
  const data = new TensorDataset(`model-data:${backend}:${tag}`, x, inShape, y, yShape);
  const source = definePlugin({
    kind: 'dataset',
    name: `model-data-${backend}-${tag.replace(/\W+/g, '-')}`,
    description: 'test data for one model',
    schema: z.object({}),
    create: () => ({ splits: ['train'], load: () => data }),
  });
  registry.register(source);
  const whole = path.join(dir, `ckpt-${source.name}`);
  const config = {
    experiment: 'models',
    seed: 3,
    data: { source: source.name, test: null },
    model: c.config,
    loss: 'sparse-categorical-crossentropy',
    optimizer: { type: 'adam', lr: 0.01 },
    trackers: [{ type: 'mlflow-file', root: path.join(dir, `run-${source.name}`) }],
    trainer: { epochs: 2, batchSize: 4, clipNorm: 1, checkpoint: { everySteps: 1, keep: 10, dir: whole } },
  };
  let final: NamedWeights | null = null;
  const evaluate = (t: { model: Model }) => ((final = readWeights(t.model.weights())), {});
  await runExperiment({ registry, config, runName: 'whole', evaluate, log: () => {}, handleSignals: false });
  const uninterrupted = values(final!);
  const after2 = listCheckpoints(whole).find((d) => /ckpt-0+2-/.test(path.basename(d)));
  expect(after2, listCheckpoints(whole).join(', ')).toBeDefined();
  const resumed = path.join(dir, `resumed-${source.name}`, path.basename(after2!));
  fs.cpSync(after2!, resumed, { recursive: true });
  if (edit) {
    // state.json is the manifest's JSON with its checksum appended (core/checkpoint.ts): rewritten the same way.
    const file = path.join(resumed, 'state.json');
    const { sha256: _s, ...state } = JSON.parse(fs.readFileSync(file, 'utf8')) as JsonObject;
    edit(state);
    const body = JSON.stringify(state);
    fs.writeFileSync(file, `${body.slice(0, -1)},"sha256":"${sha256(body)}"}`);
  }
  final = null;
  await runExperiment({ registry, config, runName: 'whole', resume: resumed, evaluate, log: () => {}, handleSignals: false });
  return { uninterrupted, resumed: values(final!) };
}
