/** Models save to JSON + binary and load back to the same config, weights and predictions. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  loadModel,
  packWeights,
  Rng,
  saveModel,
  Sequential,
  ShapeError,
  unpackWeights,
  type NamedWeights,
  type PluginRegistry,
  type SequentialConfig,
} from '../core';
import { randomNormal, testRegistry } from './harness';

let registry: PluginRegistry;
let dir: string;
beforeAll(async () => {
  registry = await testRegistry();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-save-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const cnn: SequentialConfig = {
  inputShape: [8, 8, 1],
  layers: [
    { type: 'conv2d', filters: 4, kernelSize: 3, activation: 'relu' },
    { type: 'batch-norm' },
    { type: 'max-pool2d', poolSize: 2 },
    { type: 'flatten' },
    { type: 'dense', units: 5, activation: 'relu' },
    { type: 'dense', units: 3 },
  ],
};

describe('saveModel / loadModel', () => {
  it('round-trips config, weights and predictions for any seed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), (seed) => {
        const model = new Sequential(cnn, registry);
        model.build(undefined, new Rng(seed));
        // One training-mode pass moves batch norm's running statistics away from their initial values.
        tf.dispose(model.apply(randomNormal([3, 8, 8, 1], new Rng(seed + 2)), { training: true, rng: new Rng(0) }));
        const out = path.join(dir, `m${seed}`);
        saveModel(model, out);
        const loaded = loadModel(out, registry);
        expect(loaded.spec).toEqual(model.spec);
        const x = randomNormal([2, 8, 8, 1], new Rng(seed + 1));
        const ctx = { training: false, rng: new Rng(0) };
        const [a, b] = [model.apply(x, ctx), loaded.apply(x, ctx)];
        expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
        tf.dispose([x, a, b]);
        model.dispose();
        loaded.dispose();
      }),
      { numRuns: 4 },
    );
  });

  it('refuses weights whose shapes do not match the config, naming the parameter', () => {
    const model = new Sequential(cnn, registry);
    model.build(undefined, new Rng(1));
    const out = path.join(dir, 'bad');
    saveModel(model, out);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8'));
    manifest.config.layers[4].units = 6;
    fs.writeFileSync(path.join(out, 'model.json'), JSON.stringify(manifest));
    expect(() => loadModel(out, registry)).toThrow(ShapeError);
    expect(() => loadModel(out, registry)).toThrow(/dense_5\/kernel/);
    model.dispose();
  });

  it('says so when there is no saved model', () => {
    expect(() => loadModel(path.join(dir, 'nothing-here'), registry)).toThrow(/no saved model/);
  });
});

describe('int8 weights in weights.bin', () => {
  it('pack then unpack gives int8 tensors back exactly, beside float and odd-length ones, in a quarter of the words', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 23 })), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 0, max: 1e6 }),
        (tensors, seed) => {
          const rng = new Rng(seed);
          const weights: NamedWeights = new Map(
            tensors.map(([int8, n], i) => [
              `w${i}`,
              int8
                ? { shape: [n], values: Float32Array.from({ length: n }, () => rng.int(256) - 128), int8: true }
                : { shape: [n], values: Float32Array.from({ length: n }, () => rng.normal()) },
            ]),
          );
          const { entries, data } = packWeights(weights);
          const words = tensors.reduce((a, [int8, n]) => a + (int8 ? Math.ceil(n / 4) : n), 0);
          expect(data.byteLength).toBe(4 * words);
          const back = unpackWeights(entries, data);
          for (const [name, w] of weights) {
            expect(Array.from(back.get(name)!.values), name).toEqual(Array.from(w.values));
            expect(back.get(name)!.int8 ?? false).toBe(w.int8 ?? false);
          }
        },
      ),
      { numRuns: 50 },
    );
  });

  it('refuses to store a value outside [−128, 127] or not an integer as int8', () => {
    for (const bad of [128, -129, 0.5]) {
      expect(() => packWeights(new Map([['w', { shape: [1], values: Float32Array.of(bad), int8: true }]]))).toThrow(/int8/);
    }
  });
});
