/** Gradual magnitude pruning (Zhu & Gupta 2017): the schedule, the masks, and pruned weights through training and saving. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Checkpoint, ConfigError, loadModel, readWeights, saveModel, setMask, TOKENS, Trainer, type PluginRegistry } from '../../core';
import { buildRunContainer, disposeRun, runExperiment } from '../../runtime';
import { testRegistry } from '../../test/harness';
import toyBlobs, { toyConfig } from '../../test/toy-data';
import { gradualSparsity, magnitudeMasks } from './magnitude-pruning';

let registry: PluginRegistry;
let dir: string;
beforeAll(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-prune-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const scheduleArb = fc
  .record({
    initialSparsity: fc.double({ min: 0, max: 0.9, noNaN: true }),
    extra: fc.double({ min: 0, max: 0.09, noNaN: true }),
    beginStep: fc.integer({ min: 0, max: 50 }),
    frequency: fc.integer({ min: 1, max: 20 }),
    prunings: fc.integer({ min: 1, max: 20 }),
  })
  .map(({ extra, ...o }) => ({ ...o, finalSparsity: o.initialSparsity + extra + 0.0001 }));

describe('magnitude-pruning', () => {
  it("follows Zhu & Gupta's eq. 1: s_i until t0, s_f from t0 + nΔt, rising with a non-increasing step at each pruning", () => {
    fc.assert(
      fc.property(scheduleArb, (o) => {
        const end = o.beginStep + o.prunings * o.frequency;
        expect(gradualSparsity(0, o)).toBeCloseTo(o.initialSparsity, 12);
        expect(gradualSparsity(o.beginStep, o)).toBeCloseTo(o.initialSparsity, 12);
        expect(gradualSparsity(end, o)).toBeCloseTo(o.finalSparsity, 12);
        expect(gradualSparsity(end + 1000, o)).toBeCloseTo(o.finalSparsity, 12);
        const at = Array.from({ length: o.prunings + 1 }, (_, j) => gradualSparsity(o.beginStep + j * o.frequency, o));
        for (let j = 1; j < at.length; j++) {
          expect(at[j]!).toBeGreaterThanOrEqual(at[j - 1]! - 1e-12);
          if (j > 1) expect(at[j]! - at[j - 1]!).toBeLessThanOrEqual(at[j - 1]! - at[j - 2]! + 1e-12);
        }
        // The midpoint of the schedule: 1 − (1/2)³ = 7/8 of the way from s_i to s_f.
        const mid = gradualSparsity(o.beginStep + (o.prunings * o.frequency) / 2, o);
        expect(mid).toBeCloseTo(o.initialSparsity + (7 / 8) * (o.finalSparsity - o.initialSparsity), 10);
      }),
      { numRuns: 100 },
    );
  });

  it('masks exactly ⌊s·n⌋ weights, none larger in magnitude than a kept one (per layer or globally), and masks only grow', () => {
    const tensorsArb = fc.array(fc.array(fc.float({ min: -4, max: 4, noNaN: true }), { minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 4 });
    fc.assert(
      fc.property(
        tensorsArb,
        fc.double({ min: 0, max: 0.99, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.boolean(),
        (ws, s, grow, global) => {
          const values = ws.map((w) => Float32Array.from(w));
          const scope = global ? 'global' : 'layer';
          const masks = magnitudeMasks(values, s, scope);
          const groups = global ? [values.map((_, t) => t)] : values.map((_, t) => [t]);
          for (const g of groups) {
            const pruned = g.flatMap((t) => Array.from(values[t]!).filter((_, i) => masks[t]![i] === 0));
            const kept = g.flatMap((t) => Array.from(values[t]!).filter((_, i) => masks[t]![i] === 1));
            expect(pruned.length).toBe(Math.floor(s * (pruned.length + kept.length)));
            if (pruned.length && kept.length) expect(Math.max(...pruned.map(Math.abs))).toBeLessThanOrEqual(Math.min(...kept.map(Math.abs)));
          }
          // A later, higher sparsity keeps every earlier pruning, even where the weights have moved since.
          const later = magnitudeMasks(
            values.map((v) => v.map((x) => -x * 2)),
            s + (0.99 - s) * grow,
            scope,
            masks,
          );
          masks.forEach((m, t) => m.forEach((v, i) => v === 0 && expect(later[t]![i]).toBe(0)));
          // And at a lower sparsity than the earlier pruning (a head pruned whole, a loaded pruned model): none comes back.
          const lower = magnitudeMasks(values, s * grow * 0.5, scope, masks);
          masks.forEach((m, t) => m.forEach((v, i) => v === 0 && expect(lower[t]![i]).toBe(0)));
        },
      ),
      { numRuns: 100 },
    );
  });

  it('prunes kernels (not biases) to the final sparsity in training; pruned weights stay 0 through saving, loading and more training', async () => {
    const config = toyConfig(dir, {
      trainer: { epochs: 2, batchSize: 8, validationSplit: 0.25, logEvery: 2 },
      callbacks: [{ type: 'magnitude-pruning', finalSparsity: 0.75, beginStep: 1, frequency: 2, prunings: 3 }],
    });
    const out = path.join(dir, 'pruned');
    const seen: number[] = [];
    await runExperiment({
      registry,
      config,
      log: () => undefined,
      handleSignals: false,
      evaluate: (trainer) => {
        for (const p of trainer.model.parameters()) {
          const v = p.variable.dataSync();
          if (p.role === 'bias') {
            expect(p.mask, `${p.name} is not pruned`).toBeUndefined();
            continue;
          }
          const zeros = Array.from(p.mask!.dataSync()).filter((m) => m === 0).length;
          expect(zeros, p.name).toBe(Math.floor(0.75 * v.length));
          p.mask!.dataSync().forEach((m, i) => m === 0 && expect(v[i] === 0, `${p.name}[${i}] is 0`).toBe(true));
          seen.push(zeros);
        }
        saveModel(trainer.model, out, { maskStorage: 'sparse' });
        return {};
      },
    });
    expect(seen).toHaveLength(2);
    // The saved model: the same masks, the pruned weights 0, and training it further (no callback) keeps them 0.
    const loaded = loadModel(out, registry);
    const c = await buildRunContainer({ registry, config: toyConfig(dir), log: () => undefined });
    const trainer = c.resolve(Trainer);
    trainer.model.weights().forEach((p, i) => {
      p.variable.assign(loaded.weights()[i]!.variable);
      if (loaded.weights()[i]!.mask) setMask(p, loaded.weights()[i]!.mask!.clone());
    });
    const data = c.resolve(TOKENS.TrainData);
    for (let s = 0; s < 4; s++) {
      const b = data.batch([0, 1, 2, 3, 4, 5, 6, 7]);
      await trainer.trainStep(b, { step: s, epoch: 0 });
      tf.dispose([b.x, b.y]);
    }
    for (const p of trainer.model.parameters().filter((q) => q.mask)) {
      const v = p.variable.dataSync();
      p.mask!.dataSync().forEach((m, i) => m === 0 && expect(v[i] === 0).toBe(true));
    }
    loaded.dispose();
    disposeRun(c);
  });

  it('a run stopped mid-pruning and resumed from its checkpoint ends with the weights of one that never stopped', async () => {
    const config = toyConfig(dir, {
      trainer: { epochs: 3, batchSize: 8, validationSplit: 0.25, logEvery: 2 },
      callbacks: [{ type: 'magnitude-pruning', finalSparsity: 0.8, beginStep: 2, frequency: 3, prunings: 4, scope: 'global' }],
      trackers: [],
    });
    const weightsAfter = async (stopAt: number | null, resume?: Checkpoint): Promise<{ weights: number[]; checkpoint: Checkpoint | null }> => {
      const c = await buildRunContainer({ registry, config, log: () => undefined });
      const trainer = c.resolve(Trainer);
      let checkpoint: Checkpoint | null = null;
      let steps = 0;
      trainer.callbacks.push({ spec: { type: 'count' }, onBatchEnd: () => void steps++ });
      await trainer.fit(c.resolve(TOKENS.TrainData), null, {
        resume,
        stop: stopAt === null ? undefined : () => steps >= stopAt,
        checkpointer: (snapshot) => {
          const run = { runId: 'r', experimentId: '0', experiment: 'toy', runName: 'toy' };
          checkpoint = { run, config: {}, trainer: snapshot, weights: readWeights(trainer.model.weights()), optimizer: trainer.optimizer.getState() };
        },
      });
      const weights = trainer.model.weights().flatMap((p) => Array.from(p.variable.dataSync()));
      disposeRun(c);
      return { weights, checkpoint };
    };
    const reference = await weightsAfter(null);
    // 9 steps per epoch: stopped at step 7 (after the pruning of step 5, before that of step 8) and at 11 (the next epoch).
    for (const k of [7, 11]) {
      const { checkpoint } = await weightsAfter(k);
      expect(checkpoint!.trainer.step).toBe(k);
      const resumed = await weightsAfter(null, checkpoint!);
      expect(resumed.weights).toEqual(reference.weights);
    }
  });

  it('rejects an initial sparsity above the final one, a bad pattern, and a model with nothing to prune', async () => {
    expect(() => registry.create('callback', { type: 'magnitude-pruning', finalSparsity: 0.5, initialSparsity: 0.6 })).toThrow(ConfigError);
    expect(() => registry.create('callback', { type: 'magnitude-pruning', finalSparsity: 0.5, match: '(' })).toThrow(/match/);
    const config = toyConfig(dir, { callbacks: [{ type: 'magnitude-pruning', finalSparsity: 0.5, frequency: 1, match: 'nothing-has-this-name' }] });
    await expect(runExperiment({ registry, config, log: () => undefined, handleSignals: false })).rejects.toThrow(/no parameter of the model/);
  });
});
