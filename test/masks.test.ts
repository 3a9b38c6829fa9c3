/** Weight masks (pruning): kept at zero through training steps, stored with a saved model (dense bits or sparse) and put back on load. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  loadModel,
  markAsyncReads,
  packWeights,
  readsAsynchronously,
  readToHost,
  Rng,
  saveModel,
  Sequential,
  setMask,
  TOKENS,
  Trainer,
  unpackWeights,
  type NamedWeights,
  type PluginRegistry,
  type SequentialConfig,
} from '../core';
import { buildRunContainer, disposeRun } from '../runtime';
import { randomNormal, testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

let registry: PluginRegistry;
let dir: string;
beforeAll(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-masks-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Random weights, some of them masked with a random mask of random density. */
const weightsArb = fc
  .array(
    fc.record({
      n: fc.integer({ min: 1, max: 80 }),
      masked: fc.boolean(),
      density: fc.double({ min: 0, max: 1, noNaN: true }),
      seed: fc.integer({ min: 0, max: 1e6 }),
    }),
    { minLength: 1, maxLength: 5 },
  )
  .map((specs) => {
    const w: NamedWeights = new Map();
    specs.forEach(({ n, masked, density, seed }, i) => {
      const rng = new Rng(seed);
      const mask = masked ? Uint8Array.from({ length: n }, () => (rng.next() < density ? 1 : 0)) : undefined;
      const values = Float32Array.from({ length: n }, (_, j) => (mask && !mask[j] ? 0 : rng.normal()));
      w.set(`t${i}`, { shape: [n], values, ...(mask ? { mask } : {}) });
    });
    return w;
  });

/**
 * Runs `body` with a tfjs backend active that its "plugin" marked as reading asynchronously (as webgpu's is) but
 * that reads like cpu's: readToHost then fetches, and a spy on `data()` sees what. The tensors stay where they were
 * made (a read goes to the backend that holds the data); the cpu backend itself is left unmarked.
 */
async function onAsyncReadingBackend(body: (backend: tf.KernelBackend) => Promise<void>): Promise<void> {
  const previous = tf.getBackend();
  const backend = new MathBackendCPU();
  markAsyncReads(backend);
  tf.registerBackend('async-reads', () => backend);
  try {
    await tf.setBackend('async-reads');
    await body(backend);
  } finally {
    await tf.setBackend(previous);
    tf.removeBackend('async-reads');
  }
}

describe('masks', () => {
  it('pack/unpack round-trips values and masks in every storage; sparse takes 2 words per kept value', () => {
    fc.assert(
      fc.property(weightsArb, fc.constantFrom('auto', 'dense', 'sparse') as fc.Arbitrary<'auto' | 'dense' | 'sparse'>, (weights, storage) => {
        const { entries, data } = packWeights(weights, storage);
        const back = unpackWeights(entries, data);
        expect([...back.keys()]).toEqual([...weights.keys()]);
        for (const [name, w] of weights) {
          const b = back.get(name)!;
          expect(Array.from(b.values)).toEqual(Array.from(w.values));
          expect(b.mask ? Array.from(b.mask) : undefined).toEqual(w.mask ? Array.from(w.mask) : undefined);
        }
        const words = [...weights.values()].reduce((a, w) => {
          if (!w.mask) return a + w.values.length;
          const bits = w.values.length + Math.ceil(w.values.length / 32);
          const sparse = 2 * w.mask.reduce((s, v) => s + v, 0);
          return a + (storage === 'dense' ? bits : storage === 'sparse' ? sparse : Math.min(bits, sparse));
        }, 0);
        expect(data.byteLength).toBe(4 * words);
      }),
      { numRuns: 60 },
    );
  });

  it('a sparse entry with indices out of order is refused as corrupt', () => {
    const w: NamedWeights = new Map([['a', { shape: [4], values: Float32Array.of(1, 0, 2, 0), mask: Uint8Array.of(1, 0, 1, 0) }]]);
    const { entries, data } = packWeights(w, 'sparse');
    new Uint32Array(data.buffer).set([2, 0], 0);
    expect(() => unpackWeights(entries, data)).toThrow(/not ascending/);
  });

  it('saveModel stores masks (version 3) and loadModel puts them back; a model without masks is saved as version 2', () => {
    const config: SequentialConfig = {
      inputShape: [6],
      layers: [
        { type: 'dense', units: 5, activation: 'relu' },
        { type: 'dense', units: 3 },
      ],
    };
    for (const storage of ['dense', 'sparse'] as const) {
      const model = new Sequential(config, registry);
      model.build(undefined, new Rng(3));
      const plain = path.join(dir, `plain-${storage}`);
      saveModel(model, plain);
      expect(JSON.parse(fs.readFileSync(path.join(plain, 'model.json'), 'utf8')).version).toBe(2);
      const kernel = model.parameters()[0]!;
      setMask(
        kernel,
        tf.tensor(
          Float32Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? 1 : 0)),
          [6, 5],
        ),
      );
      expect(Array.from(kernel.variable.dataSync()).filter((v, i) => i % 3 !== 0 && v !== 0)).toEqual([]);
      const out = path.join(dir, `masked-${storage}`);
      saveModel(model, out, { maskStorage: storage });
      const manifest = JSON.parse(fs.readFileSync(path.join(out, 'model.json'), 'utf8'));
      expect(manifest.version).toBe(3);
      expect(manifest.weights[0].mask).toBe(storage === 'dense' ? 'bits' : 'sparse');
      const loaded = loadModel(out, registry);
      const lk = loaded.parameters()[0]!;
      expect(Array.from(lk.mask!.dataSync())).toEqual(Array.from(kernel.mask!.dataSync()));
      expect(loaded.parameters()[1]!.mask).toBeUndefined();
      const x = randomNormal([2, 6], new Rng(1));
      const ctx = { training: false, rng: new Rng(0) };
      const [a, b] = [model.apply(x, ctx), loaded.apply(x, ctx)];
      expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
      tf.dispose([x, a, b]);
      const before = tf.memory().numTensors;
      loaded.dispose();
      // The loaded model's 4 variables and 1 mask are released with it.
      expect(tf.memory().numTensors).toBe(before - 5);
      model.dispose();
    }
  });

  it('a masked weight stays exactly zero through Adam steps while the others train', async () => {
    const c = await buildRunContainer({ registry, config: toyConfig(dir), log: () => undefined });
    const trainer = c.resolve(Trainer);
    const data = c.resolve(TOKENS.TrainData);
    const kernel = trainer.model.parameters()[0]!;
    const mask = Float32Array.from({ length: kernel.variable.size }, (_, i) => (i % 2 ? 1 : 0));
    setMask(kernel, tf.tensor(mask, kernel.variable.shape));
    const start = Float32Array.from(kernel.variable.dataSync());
    for (let s = 0; s < 5; s++) {
      const b = data.batch([0, 1, 2, 3, 4, 5, 6, 7]);
      await trainer.trainStep(b, { step: s, epoch: 0 });
      tf.dispose([b.x, b.y]);
    }
    const end = kernel.variable.dataSync();
    mask.forEach((m, i) => (m ? expect(end[i]).not.toBe(start[i]) : expect(end[i] === 0, `weight ${i} is pruned`).toBe(true)));
    disposeRun(c);
  });

  it("readToHost(model) fetches that model's masks with every variable on a backend that reads asynchronously, no other model's masks, and nothing on cpu", async () => {
    const config: SequentialConfig = {
      inputShape: [3],
      layers: [
        { type: 'dense', units: 2 },
        { type: 'dense', units: 2 },
      ],
    };
    const masking = fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }); // which of the 4 weights carry a mask
    await fc.assert(
      fc.asyncProperty(masking, masking, async (maskedA, maskedB) => {
        const [a, b] = [maskedA, maskedB].map((masked, m) => {
          const model = new Sequential(config, registry);
          model.build(undefined, new Rng(m));
          model.weights().forEach((p, i) => masked[i] && setMask(p, tf.onesLike(p.variable)));
          return model;
        });
        try {
          const reads = (t: tf.Tensor | undefined) => (t ? vi.spyOn(t, 'data') : null);
          const spies = [a!, b!].map((model) => model.weights().map((p) => ({ variable: reads(p.variable)!, mask: reads(p.mask) })));
          const count = (pick: 'variable' | 'mask', model: number) => spies[model]!.map((s) => (s[pick] ? s[pick].mock.calls.length : null));

          expect(readsAsynchronously()).toBe(false);
          await readToHost(a!); // cpu reads synchronously: nothing to fetch
          for (const model of [0, 1]) for (const pick of ['variable', 'mask'] as const) expect(count(pick, model).every((c) => !c)).toBe(true);

          await onAsyncReadingBackend(async (backend) => {
            expect(readsAsynchronously()).toBe(true);
            expect(readsAsynchronously(backend)).toBe(true);
            expect(readsAsynchronously(tf.findBackend('cpu')), 'the cpu backend stays unmarked').toBe(false);
            await readToHost(a!);
          });
          expect(readsAsynchronously()).toBe(false);
          expect(count('mask', 0), "a's masks fetched").toEqual(maskedA.map((m) => (m ? 1 : null)));
          expect(count('mask', 1), "b's masks left alone").toEqual(maskedB.map((m) => (m ? 0 : null)));
          // Every live variable (the weights and any optimizer's slots a checkpoint saves), b's too.
          expect([...count('variable', 0), ...count('variable', 1)]).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
        } finally {
          vi.restoreAllMocks();
          a!.dispose();
          b!.dispose();
        }
      }),
      { numRuns: 8 },
    );
  });
});
