/**
 * Conformance of what training consults besides the model, generated from the registry (see conformance.test.ts):
 * one test per plugin per property, on the examples each definition declares.
 * Metrics (per CPU backend): accumulated over any split of a batch they equal the metric of the whole batch, reset
 * forgets, and a state taken mid-stream continues identically in a fresh metric (a resumed evaluation).
 * Schedules: the rate is finite and positive over a run and depends on nothing but (step, epoch, run length), so a
 * resumed run gets the rates of one that never stopped. Callbacks: a state taken after any epoch (through JSON, as
 * checkpoints store it) makes a fresh callback continue exactly as the original (stop, learning rate, state, saved
 * files, final weights). Schedules and callbacks compute no tensor maths of their own, so they run once.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildModel,
  Rng,
  Sequential,
  type Callback,
  type JsonObject,
  type Model,
  type ModelConfig,
  type Logs,
  type Metric,
  type PluginExample,
  type PluginKind,
  type TrainingState,
} from '../core';
import { conformanceRegistry, eachPlugin, exampleTargets, expectSpecRoundTrip, onEachBackend, randomNormal } from './harness';

const { registry, backends } = await conformanceRegistry();
const seeds = fc.integer({ min: 0, max: 2 ** 30 });
/** A fraction in [0, 1), to pick a position in something whose size is drawn separately. */
const fraction = fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true });

/** The declared examples, or default options. */
const examplesOf = (kind: PluginKind, name: string): PluginExample[] => registry.get(kind, name).examples ?? [{}];

/** Temporary directories made for plugins that write files, removed at the end. */
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** Options with every file-writing option (`dir`) pointed at a fresh temporary directory: conformance writes nowhere else. */
function sandboxed(kind: PluginKind, name: string, options: JsonObject = {}): JsonObject {
  if (!('dir' in registry.normalize(kind, { type: name, ...options }))) return options;
  dirs.push(fs.mkdtempSync(path.join(os.tmpdir(), 'loom-conformance-')));
  return { ...options, dir: dirs.at(-1)! };
}

describe('conformance', () => {
  eachPlugin(registry, 'metric', (name) => {
    /** Predictions of the example's shape and targets for them: class ids (one per row) or reals of the same shape. */
    const batch = (ex: PluginExample, rng: Rng) => {
      const shape = ex.inputShape ?? [8, 4];
      return { yTrue: exampleTargets(ex, shape, rng), yPred: randomNormal(shape, rng, 2) };
    };
    /** Rows [from, to) of the batch (along its first axis). */
    const rows = (t: tf.Tensor, from: number, to: number) => tf.slice(t, [from], [to - from]);
    /** Cut points 0 < c_1 < ... < n drawn from `cuts` (fractions), giving the chunks a stream delivers. */
    const chunks = (n: number, cuts: number[]) => [...new Set([0, ...cuts.map((c) => Math.floor(c * n)), n])].sort((a, b) => a - b);
    const feed = async (m: Metric, yTrue: tf.Tensor, yPred: tf.Tensor, bounds: number[]) => {
      for (let i = 1; i < bounds.length; i++) {
        const [t, p] = [rows(yTrue, bounds[i - 1]!, bounds[i]!), rows(yPred, bounds[i - 1]!, bounds[i]!)];
        await m.update(t, p);
        tf.dispose([t, p]);
      }
    };
    const cutsArb = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 4 });
    /** Equal up to the rounding of sums accumulated in another order (float32 per chunk, float64 across chunks). */
    const expectSame = (got: number, want: number, label: string) =>
      expect(Math.abs(got - want), `${label}: ${got} vs ${want}`).toBeLessThanOrEqual(1e-5 * Math.abs(want) + 1e-9);

    it('config round-trips', () => {
      for (const ex of examplesOf('metric', name)) expectSpecRoundTrip(registry, 'metric', name, ex.options ?? {});
    });

    onEachBackend(registry, backends, 'streaming over any split equals the whole batch', async () => {
      for (const ex of examplesOf('metric', name)) {
        await fc.assert(
          fc.asyncProperty(seeds, cutsArb, async (seed, cuts) => {
            const { yTrue, yPred } = batch(ex, new Rng(seed));
            const [whole, stream] = [registry.create('metric', { type: name, ...ex.options }), registry.create('metric', { type: name, ...ex.options })];
            whole.reset();
            await whole.update(yTrue, yPred);
            stream.reset();
            await feed(stream, yTrue, yPred, chunks(yTrue.shape[0]!, cuts));
            expectSame(stream.result(), whole.result(), `metric ${name} ${JSON.stringify(ex.options ?? {})} over chunks`);
            // reset forgets: a second pass from reset gives the same value again.
            stream.reset();
            await feed(stream, yTrue, yPred, chunks(yTrue.shape[0]!, cuts.slice(1)));
            expectSame(stream.result(), whole.result(), `metric ${name} after reset`);
            tf.dispose([yTrue, yPred]);
          }),
          { numRuns: 10 },
        );
      }
    });

    onEachBackend(registry, backends, 'state round-trips and continues identically', async () => {
      for (const ex of examplesOf('metric', name)) {
        await fc.assert(
          fc.asyncProperty(seeds, cutsArb, fc.double({ min: 0, max: 1, noNaN: true }), async (seed, cuts, at) => {
            const { yTrue, yPred } = batch(ex, new Rng(seed));
            const bounds = chunks(yTrue.shape[0]!, cuts);
            const k = Math.floor(at * bounds.length); // chunks seen before the state is taken
            const original = registry.create('metric', { type: name, ...ex.options });
            original.reset();
            await feed(original, yTrue, yPred, bounds.slice(0, k + 1));
            expect(original.getState, `metric ${name} has getState/setState (evaluation state is checkpointed)`).toBeTypeOf('function');
            const twin = registry.create('metric', { type: name, ...ex.options });
            twin.reset();
            twin.setState!(JSON.parse(JSON.stringify(original.getState!())));
            for (const m of [original, twin]) await feed(m, yTrue, yPred, bounds.slice(k));
            expect(twin.result()).toBe(original.result());
            tf.dispose([yTrue, yPred]);
          }),
          { numRuns: 10 },
        );
      }
    });
  });

  eachPlugin(registry, 'schedule', (name) => {
    /** A planned run: steps per epoch and epochs; each step's epoch is ⌊step / stepsPerEpoch⌋. */
    const runArb = fc.record({ stepsPerEpoch: fc.integer({ min: 2, max: 50 }), epochs: fc.integer({ min: 3, max: 40 }) });

    it('declares examples', () => expect(registry.get('schedule', name).examples?.length, `schedule ${name} declares examples`).toBeGreaterThan(0));

    it('config round-trips', () => {
      for (const ex of examplesOf('schedule', name)) expectSpecRoundTrip(registry, 'schedule', name, ex.options ?? {});
    });

    it('is finite and positive at every step of a run, and finite and non-negative after it', () => {
      for (const ex of examplesOf('schedule', name)) {
        fc.assert(
          fc.property(runArb, fc.array(fraction, { minLength: 1, maxLength: 20 }), ({ stepsPerEpoch, epochs }, at) => {
            const schedule = registry.create('schedule', { type: name, ...ex.options });
            const total = stepsPerEpoch * epochs;
            for (const step of [0, total - 1, ...at.map((a) => Math.floor(a * total))]) {
              const lr = schedule.rate(step, Math.floor(step / stepsPerEpoch), total);
              expect(Number.isFinite(lr) && lr > 0, `schedule ${name} ${JSON.stringify(ex.options)} at step ${step} of ${total}: ${lr}`).toBe(true);
            }
            for (const step of [total, total + 1, 2 * total]) {
              const lr = schedule.rate(step, Math.floor(step / stepsPerEpoch), total);
              expect(Number.isFinite(lr) && lr >= 0, `schedule ${name} after the run, step ${step}: ${lr}`).toBe(true);
            }
          }),
          { numRuns: 30 },
        );
      }
    });

    it('depends only on step, epoch and run length (a resumed run gets the same rates)', () => {
      for (const ex of examplesOf('schedule', name)) {
        fc.assert(
          fc.property(runArb, fc.array(fc.nat(), { minLength: 1, maxLength: 30 }), ({ stepsPerEpoch, epochs }, picks) => {
            const total = stepsPerEpoch * epochs;
            const steps = picks.map((p) => p % total);
            const original = registry.create('schedule', { type: name, ...ex.options });
            const rebuilt = registry.create('schedule', original.spec); // as a resumed run builds it, asked in another order
            const ask = (s: typeof original, step: number) => s.rate(step, Math.floor(step / stepsPerEpoch), total);
            const inOrder = steps.map((step) => ask(original, step));
            const reversed = [...steps]
              .reverse()
              .map((step) => ask(rebuilt, step))
              .reverse();
            expect(reversed).toEqual(inOrder);
          }),
          { numRuns: 20 },
        );
      }
    });
  });

  /**
   * Callbacks that keep no state, with the reason. The property does not apply to them; their test checks that the
   * reason still holds (a callback that gains state loses its exemption).
   */
  const STATELESS_CALLBACKS: Record<string, string> = {
    progress: 'it only prints; a resumed run starts a new bar',
  };

  eachPlugin(registry, 'callback', (name) => {
    it('config round-trips', () => {
      for (const ex of examplesOf('callback', name)) expectSpecRoundTrip(registry, 'callback', name, ex.options ?? {});
    });

    if (name in STATELESS_CALLBACKS) {
      it(`keeps no state (exempt from the state round trip: ${STATELESS_CALLBACKS[name]})`, () => {
        const cb = registry.create('callback', { type: name, ...sandboxed('callback', name, examplesOf('callback', name)[0]!.options) });
        expect(cb.getState).toBeUndefined();
        expect(cb.setState).toBeUndefined();
      });
      return;
    }

    it('declares examples', () => expect(registry.get('callback', name).examples?.length, `callback ${name} declares examples`).toBeGreaterThan(0));

    /**
     * One training as a callback sees it: a two-weight model whose weights each epoch are new values (as training
     * leaves them), an optimizer's learning rate, the hooks in the trainer's order, and the epochs' metrics.
     */
    class Play {
      readonly model: Model;
      readonly state: TrainingState;
      readonly trace: string[] = [];
      constructor(
        readonly cb: Callback,
        epochs: number,
        model?: JsonObject,
      ) {
        this.model = model
          ? buildModel(model as unknown as ModelConfig, registry)
          : new Sequential({ inputShape: [2], layers: [{ type: 'dense', units: 1 }] }, registry);
        this.model.build(this.model.inputShape, new Rng(0));
        const optimizer = { learningRate: 1 };
        const loop = { epoch: 0, step: 0, epochs, stepsPerEpoch: 1, stopTraining: false, isGlobalZero: true };
        this.state = { model: this.model, optimizer, ...loop } as unknown as TrainingState;
      }
      async epoch(e: number, logs: Logs): Promise<void> {
        Object.assign(this.state, { epoch: e, step: e + 1 });
        for (const p of this.model.parameters()) p.variable.assign(tf.tidy(() => tf.add(tf.reshape(tf.range(0, p.variable.size), p.variable.shape), e + 1)));
        await this.cb.onEpochBegin?.(this.state);
        await this.cb.onBatchEnd?.(this.state, { loss: logs.loss! });
        await this.cb.onEpochMetrics?.(this.state, logs);
        await this.cb.onEpochEnd?.(this.state, logs);
        this.trace.push(JSON.stringify({ e, stop: this.state.stopTraining, lr: this.state.optimizer.learningRate, state: this.cb.getState?.() }));
      }
      async end(logs: Logs): Promise<number[]> {
        await this.cb.onTrainEnd?.(this.state, logs);
        const weights = this.model.parameters().flatMap((p) => Array.from(p.variable.dataSync()));
        this.model.dispose();
        return weights;
      }
    }
    const [lossArb, accuracyArb] = [fc.double({ min: 0, max: 5, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true })];
    const logsArb = fc.record({ loss: lossArb, accuracy: accuracyArb, val_loss: lossArb, val_accuracy: accuracyArb });

    it('state round-trips: a fresh callback given the state after any epoch continues identically', async () => {
      for (const ex of examplesOf('callback', name)) {
        await fc.assert(
          fc.asyncProperty(fc.array(logsArb, { minLength: 1, maxLength: 7 }), fraction, async (epochs, at) => {
            const options = sandboxed('callback', name, ex.options);
            const cut = Math.floor(at * epochs.length); // epochs played before the state is taken
            const original = new Play(registry.create('callback', { type: name, ...options }), epochs.length, ex.model);
            await original.cb.onTrainBegin?.(original.state);
            let saved: unknown = null;
            let e = 0;
            for (; e < epochs.length && !original.state.stopTraining; e++) {
              if (e === cut) saved = JSON.parse(JSON.stringify(original.cb.getState!()));
              await original.epoch(e, epochs[e]!);
            }
            if (cut >= e) return; // stopped before the cut: nothing to resume
            const finalWeights = await original.end(epochs.at(-1)!);
            // The resumed run: a new callback from the same spec, onTrainBegin, then the checkpoint's state (the trainer's order).
            const resumed = new Play(registry.create('callback', { type: name, ...options }), epochs.length, ex.model);
            await resumed.cb.onTrainBegin?.(resumed.state);
            resumed.cb.setState!(saved as never);
            resumed.state.optimizer.learningRate = JSON.parse(original.trace[cut - 1] ?? '{"lr":1}').lr;
            for (let r = cut; r < e; r++) await resumed.epoch(r, epochs[r]!);
            expect(resumed.trace, `callback ${name} ${JSON.stringify(ex.options)} resumed after epoch ${cut}`).toEqual(original.trace.slice(cut));
            expect(await resumed.end(epochs.at(-1)!)).toEqual(finalWeights);
          }),
          { numRuns: 15 },
        );
      }
    });
  });
});
