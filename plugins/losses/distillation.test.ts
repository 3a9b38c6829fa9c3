/** Knowledge distillation (Hinton et al. 2015): its definition against a float64 reference, its gradient, its teacher. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ConfigError, Rng, saveModel, Sequential, TOKENS, Trainer, type Loss, type Model, type PluginRegistry } from '../../core';
import { buildRunContainer, disposeRun, runExperiment } from '../../runtime';
import { gradCheck, randomNormal, testRegistry } from '../../test/harness';
import toyBlobs, { toyConfig } from '../../test/toy-data';

let registry: PluginRegistry;
let dir: string;
/** A saved teacher: dense 4 → 3 classes. */
let teacherDir: string;
/** The same teacher in memory, for the references. */
let teacherModel: Sequential;
beforeAll(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-distill-'));
  teacherDir = path.join(dir, 'teacher');
  teacherModel = new Sequential({ inputShape: [4], layers: [{ type: 'dense', units: 3 }] }, registry);
  teacherModel.build(undefined, new Rng(2));
  saveModel(teacherModel, teacherDir);
});
afterAll(() => {
  teacherModel.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});
const teacherLogits = (x: tf.Tensor) => teacherModel.apply(x, { training: false, rng: new Rng(0) });

/** float64 reference: α·CE(y, z) + (1 − α)·T²·mean_n(−Σ_k softmax(t_n/T)_k log softmax(z_n/T)_k). */
function reference(z: number[][], t: number[][], y: number[], T: number, alpha: number): number {
  const logSoftmax = (v: number[], s: number) => {
    const w = v.map((x) => x / s);
    const m = Math.max(...w);
    const lse = m + Math.log(w.reduce((a, x) => a + Math.exp(x - m), 0));
    return w.map((x) => x - lse);
  };
  let hard = 0;
  let soft = 0;
  z.forEach((row, n) => {
    hard -= logSoftmax(row, 1)[y[n]!]!;
    const p = logSoftmax(t[n]!, T).map(Math.exp);
    const lq = logSoftmax(row, T);
    soft -= p.reduce((a, pk, k) => a + pk * lq[k]!, 0);
  });
  return (alpha * hard) / z.length + ((1 - alpha) * T * T * soft) / z.length;
}

const rows = (n: number, k: number) =>
  fc.array(fc.array(fc.double({ min: -6, max: 6, noNaN: true }), { minLength: k, maxLength: k }), { minLength: n, maxLength: n });
const caseArb = fc.integer({ min: 1, max: 6 }).chain((n) =>
  fc.record({
    x: rows(n, 4),
    z: rows(n, 3),
    y: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: n, maxLength: n }),
    T: fc.double({ min: 0.5, max: 20, noNaN: true }),
    alpha: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
);

const make = (options: Record<string, unknown>): Loss => registry.create('loss', { type: 'distillation', teacher: teacherDir, ...options } as never);
const scalar = (f: () => tf.Tensor) => tf.tidy(() => f().dataSync()[0]!);

describe('distillation', () => {
  it('equals α·hard + (1 − α)·T²·CE to the softened teacher (float64 reference); the hard loss alone at α = 1', () => {
    const hard = registry.create('loss', 'sparse-categorical-crossentropy');
    fc.assert(
      fc.property(caseArb, ({ x, z, y, T, alpha }) => {
        const loss = make({ temperature: T, alpha });
        const one = make({ temperature: T, alpha: 1 });
        const [xt, zt, yt] = [tf.tensor2d(x), tf.tensor2d(z), tf.tensor1d(y, 'int32')];
        // The teacher's logits as the loss sees them: the saved dense layer applied to x.
        const t = tf.tidy(() => teacherLogits(xt).arraySync() as number[][]);
        expect(scalar(() => loss.compute(yt, zt, xt))).toBeCloseTo(reference(z, t, y, T, alpha), 3);
        expect(scalar(() => one.compute(yt, zt, xt))).toBe(scalar(() => hard.compute(yt, zt)));
        tf.dispose([xt, zt, yt]);
        loss.dispose!();
        one.dispose!();
      }),
      { numRuns: 25 },
    );
  });

  it('ignoreIndex: the soft term averages over the rows of other labels only (padding left out), float64 reference', () => {
    fc.assert(
      fc.property(caseArb, fc.integer({ min: 0, max: 2 }), ({ x, z, y, T }, pad) => {
        const loss = make({ temperature: T, alpha: 0, ignoreIndex: pad });
        const [xt, zt, yt] = [tf.tensor2d(x), tf.tensor2d(z), tf.tensor1d(y, 'int32')];
        const t = tf.tidy(() => teacherLogits(xt).arraySync() as number[][]);
        const keep = y.map((v, i) => (v === pad ? -1 : i)).filter((i) => i >= 0);
        // The mean over kept rows; no kept row gives 0.
        const expected =
          keep.length === 0
            ? 0
            : reference(
                keep.map((i) => z[i]!),
                keep.map((i) => t[i]!),
                keep.map((i) => y[i]!),
                T,
                0,
              );
        expect(scalar(() => loss.compute(yt, zt, xt))).toBeCloseTo(expected, 3);
        tf.dispose([xt, zt, yt]);
        loss.dispose!();
      }),
      { numRuns: 25 },
    );
  });

  it('its gradient in the student logits matches finite differences', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e6 }),
        fc.double({ min: 0.5, max: 10, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (seed, T, alpha) => {
          const rng = new Rng(seed);
          const loss = make({ temperature: T, alpha });
          const x = randomNormal([5, 4], rng);
          const z = tf.variable(randomNormal([5, 3], rng, 2));
          const y = tf.tensor1d([0, 1, 2, 1, 0], 'int32');
          try {
            gradCheck(`distillation T=${T} α=${alpha}`, () => loss.compute(y, z, x), [z], rng);
          } finally {
            tf.dispose([x, z, y]);
            loss.dispose!();
          }
        },
      ),
      { numRuns: 8 },
    );
  });

  it('at high temperature the soft gradient tends to (z − t)/(N·K) for zero-mean logits (Hinton et al. 2015, eq. 3, times T²)', () => {
    const loss = make({ temperature: 200, alpha: 0 });
    const x = randomNormal([6, 4], new Rng(3));
    const z = tf.tidy(() => {
      const r = randomNormal([6, 3], new Rng(4));
      return tf.sub(r, tf.mean(r, 1, true));
    });
    const y = tf.zeros([6], 'int32');
    const g = tf.grad((v: tf.Tensor) => loss.compute(y, v, x))(z);
    const t = tf.tidy(() => {
      const out = teacherLogits(x);
      return tf.sub(out, tf.mean(out, 1, true));
    });
    const expected = tf.tidy(() => tf.div(tf.sub(z, t), 6 * 3));
    const [gv, ev] = [g.dataSync(), expected.dataSync()];
    gv.forEach((v, i) => expect(v).toBeCloseTo(ev[i]!, 3));
    tf.dispose([x, z, y, g, t, expected]);
    loss.dispose!();
  });

  it('runs the teacher in inference mode: a teacher with dropout gives the same loss every step, that of its inference outputs', () => {
    const tdir = path.join(dir, 'dropout-teacher');
    const t = new Sequential(
      {
        inputShape: [4],
        layers: [
          { type: 'dropout', rate: 0.5 },
          { type: 'dense', units: 3 },
        ],
      },
      registry,
    );
    t.build(undefined, new Rng(6));
    saveModel(t, tdir);
    const loss = registry.create('loss', { type: 'distillation', teacher: tdir, temperature: 3, alpha: 0 });
    const [x, z, y] = [randomNormal([5, 4], new Rng(8)), randomNormal([5, 3], new Rng(9)), tf.tensor1d([0, 1, 2, 0, 1], 'int32')];
    const values = [0, 1, 2].map(() => scalar(() => loss.compute(y, z, x)));
    const expected = tf.tidy(() => {
      const tz = t.apply(x, { training: false, rng: new Rng(0) }).arraySync() as number[][];
      return reference(z.arraySync() as number[][], tz, [0, 1, 2, 0, 1], 3, 0);
    });
    expect(values[1]).toBe(values[0]);
    expect(values[2]).toBe(values[0]);
    expect(values[0]).toBeCloseTo(expected, 4);
    tf.dispose([x, z, y]);
    loss.dispose!();
    t.dispose();
  });

  it('a missing teacher, or one whose outputs do not fit, is a ConfigError naming loss.teacher', () => {
    expect(() => registry.create('loss', { type: 'distillation', teacher: path.join(dir, 'nowhere') }, 'loss')).toThrow(ConfigError);
    expect(() => registry.create('loss', { type: 'distillation', teacher: path.join(dir, 'nowhere') }, 'loss')).toThrow(/loss\.teacher.*no saved teacher/);
    const loss = make({});
    const [x, z, y] = [tf.zeros([2, 4]), tf.zeros([2, 5]), tf.zeros([2], 'int32')];
    expect(() => loss.compute(y, z, x)).toThrow(/teacher.*\[2,5\]|teacher.*2, 5/);
    expect(() => loss.compute(y, tf.zeros([2, 3]))).toThrow(/needs the batch inputs/);
    tf.dispose([x, z, y]);
    loss.dispose!();
  });

  /** The loss `loss` gives on (x, y, z) and its gradient in the student logits z, as one array of float32 values. */
  const lossAndGrad = (loss: Loss, x: tf.Tensor, y: tf.Tensor, z: tf.Tensor): number[] =>
    tf.tidy(() => {
      const { value, grad } = tf.valueAndGrad((v: tf.Tensor) => loss.compute(y, v, x))(z);
      return [...value.dataSync(), ...grad.dataSync()];
    });

  it('cache (a dense teacher): the loss and its gradient equal the uncached ones bit for bit over batches of seen and unseen rows; the teacher runs on unseen rows only', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e6 }),
        fc.array(fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 5 }),
        fc.double({ min: 0.5, max: 8, noNaN: true }),
        fc.constantFrom(1e-9, 64),
        (seed, batches, T, cacheMB) => {
          const rng = new Rng(seed);
          const pool = randomNormal([8, 4], rng); // 8 examples; a batch takes rows of it, repeats allowed
          const plain = make({ temperature: T, alpha: 0.3 });
          const cached = make({ temperature: T, alpha: 0.3, cache: true, cacheMB });
          const applied: number[] = [];
          const apply = Sequential.prototype.apply;
          const spy = vi.spyOn(Sequential.prototype, 'apply').mockImplementation(function (this: Sequential, x, ctx) {
            applied.push(x.shape[0]!);
            return apply.call(this, x, ctx);
          });
          const seen = new Set<number>();
          try {
            for (const rows of batches) {
              const x = tf.gather(pool, rows);
              const y = tf.tensor1d(
                rows.map((r) => r % 3),
                'int32',
              );
              const z = randomNormal([rows.length, 3], rng, 2);
              const expected = lossAndGrad(plain, x, y, z);
              applied.length = 0;
              const got = lossAndGrad(cached, x, y, z);
              expect(got).toEqual(expected);
              // The teacher ran on this batch's rows of unseen examples only (on every row when the cache keeps nothing).
              expect(applied.reduce((a, b) => a + b, 0)).toBe(rows.filter((r) => !seen.has(r)).length);
              if (cacheMB >= 1) for (const r of rows) seen.add(r);
              tf.dispose([x, y, z]);
            }
          } finally {
            spy.mockRestore();
            tf.dispose(pool);
            plain.dispose!();
            cached.dispose!();
          }
        },
      ),
      { numRuns: 25 },
    );
  });

  it('cache on a G2P Transformer teacher (trims each batch to its longest word): every word computed at its own length, so its cached outputs are the same bits whatever batches brought it, and the loss is the uncached one within rounding', () => {
    // Lengths up to 20 cross the SIMD widths of the attention's softmax, where trimming to other lengths changes bits.
    const o = { srcVocab: 9, tgtVocab: 7, srcLen: 20, tgtLen: 20, dModel: 16, numHeads: 2, ff: 32, layers: 2, dropout: 0.1 };
    const tdir = path.join(dir, 'seq2seq-teacher');
    const teacher = registry.create('model', { type: 'transformer-seq2seq', ...o }) as Model;
    teacher.build(teacher.inputShape, new Rng(11));
    saveModel(teacher, tdir);
    teacher.dispose();
    const options = {
      teacher: tdir,
      temperature: 1,
      alpha: 0.5,
      ignoreIndex: 0,
      hard: { type: 'sparse-categorical-crossentropy', labelSmoothing: 0.1, ignoreIndex: 0 },
    };
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e6 }),
        fc.array(fc.array(fc.integer({ min: 0, max: 11 }), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }),
        (seed, batches) => {
          const rng = new Rng(seed);
          // 12 words of random lengths: source letters then padding (0); decoder input BOS (1) + phonemes; labels the
          // phonemes + EOS (2), padding 0 after.
          const words = Array.from({ length: 12 }, () => {
            const ls = 1 + rng.int(o.srcLen);
            const lt = 1 + rng.int(o.tgtLen - 1);
            const src = Array.from({ length: o.srcLen }, (_, i) => (i < ls ? 1 + rng.int(o.srcVocab - 1) : 0));
            const ph = Array.from({ length: lt }, () => 3 + rng.int(o.tgtVocab - 3));
            const dec = Array.from({ length: o.tgtLen }, (_, i) => (i === 0 ? 1 : i <= lt ? ph[i - 1]! : 0));
            const lab = Array.from({ length: o.tgtLen }, (_, i) => (i < lt ? ph[i]! : i === lt ? 2 : 0));
            return { row: [...src, ...dec], lab };
          });
          const tensors = (rows: number[]) => ({
            x: tf.tensor2d(
              rows.map((r) => words[r]!.row),
              undefined,
              'int32',
            ),
            y: tf.tensor2d(
              rows.map((r) => words[r]!.lab),
              undefined,
              'int32',
            ),
          });
          const plain = registry.create('loss', { type: 'distillation', ...options } as never) as Loss;
          const cached = registry.create('loss', { type: 'distillation', ...options, cache: true } as never) as Loss;
          const alone = registry.create('loss', { type: 'distillation', ...options, cache: true } as never) as Loss;
          try {
            // `cached` sees the words in the drawn batches; `alone` sees each word by itself first.
            for (const rows of batches) {
              const { x, y } = tensors(rows);
              const z = randomNormal([rows.length, o.tgtLen, o.tgtVocab], rng, 2);
              const [got, want] = [lossAndGrad(cached, x, y, z), lossAndGrad(plain, x, y, z)];
              got.forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want[i]!))));
              tf.dispose([x, y, z]);
            }
            const all = [...new Set(batches.flat())];
            for (const r of all) {
              const { x, y } = tensors([r]);
              const z = randomNormal([1, o.tgtLen, o.tgtVocab], rng);
              lossAndGrad(alone, x, y, z);
              tf.dispose([x, y, z]);
            }
            // A batch of every word seen, served from both caches: the same bits.
            const { x, y } = tensors(all);
            const z = randomNormal([all.length, o.tgtLen, o.tgtVocab], rng, 2);
            expect(lossAndGrad(cached, x, y, z)).toEqual(lossAndGrad(alone, x, y, z));
            tf.dispose([x, y, z]);
          } finally {
            plain.dispose!();
            cached.dispose!();
            alone.dispose!();
          }
        },
      ),
      { numRuns: 15 },
    );
  });

  it('trains a student from a config: tensors stay flat across steps and the run releases the teacher', async () => {
    // The teacher: the toy model trained a few epochs, saved as a run would save it.
    const tdir = path.join(dir, 'toy-teacher');
    await runExperiment({
      registry,
      config: toyConfig(dir),
      log: () => undefined,
      handleSignals: false,
      evaluate: (trainer) => {
        saveModel(trainer.model, tdir);
        return {};
      },
    });
    const config = toyConfig(dir, {
      model: {
        inputShape: [2],
        layers: [
          { type: 'dense', units: 4, activation: 'relu' },
          { type: 'dense', units: 3 },
        ],
      },
      loss: { type: 'distillation', teacher: tdir, temperature: 2, alpha: 0.5 },
    });
    const c = await buildRunContainer({ registry, config, log: () => undefined });
    const trainer = c.resolve(Trainer);
    const data = c.resolve(TOKENS.TrainData);
    const step = async (s: number) => {
      const b = data.batch([0, 1, 2, 3, 4, 5]);
      await trainer.trainStep(b, { step: s, epoch: 0 });
      tf.dispose([b.x, b.y]);
    };
    await step(0);
    const live = tf.memory().numTensors;
    for (let s = 1; s <= 4; s++) await step(s);
    expect(tf.memory().numTensors, 'live tensors after repeated distillation steps').toBe(live);
    // disposeRun releases the loss, and with it the teacher's 4 weights (two dense layers).
    const loss = c.resolve(TOKENS.Loss);
    const release = vi.spyOn(loss, 'dispose');
    const before = tf.memory().numTensors;
    loss.dispose!();
    expect(tf.memory().numTensors).toBe(before - 4);
    disposeRun(c);
    expect(release).toHaveBeenCalledTimes(2);
    // And end to end: runExperiment from the config trains and tests.
    const run = await runExperiment({ registry, config, log: () => undefined, handleSignals: false });
    expect(run.test!.accuracy).toBeGreaterThan(0.5);
  });
});
