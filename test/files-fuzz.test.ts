/**
 * Fuzzing the files a run leaves: checkpoints (state.json, tensors.bin) and saved models (model.json, weights.bin)
 * truncated or with a byte changed, and writes that fail as on a full disk. Every case ends in a clear error naming
 * the file (a LoomError: the CLI prints it and exits 2, without a stack) with the previous checkpoint or model
 * intact, or (where the change touched nothing that matters) in exactly the original contents.
 *
 * node:fs's write-like functions are wrapped so that a test can make the n-th call fail with an errno, as a full disk
 * does; until a test arms it, every call goes straight through.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Checkpointer,
  FileError,
  loadCheckpoint,
  loadModel,
  listCheckpoints,
  LoomError,
  readWeights,
  Rng,
  saveModel,
  Sequential,
  type Checkpoint,
  type Model,
  type PluginRegistry,
} from '../core';
import { runExperiment } from '../runtime';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

/**
 * The switch for simulated write failures: the `failAt`-th gated call throws an error with `code`. With `under`, only
 * calls on a path under it are gated (then calls on file descriptors are not). The gates replace the write-like
 * functions of node:fs for the whole process (syncBuiltinESMExports carries them to every `import * as fs`).
 */
const io = { calls: 0, failAt: Infinity, code: 'ENOSPC', under: '' };
const realFs = createRequire(import.meta.url)('node:fs') as Record<string, unknown>;
const originals = Object.fromEntries(
  ['openSync', 'writeFileSync', 'writeSync', 'fsyncSync', 'mkdirSync', 'renameSync', 'appendFileSync', 'copyFileSync'].map((k) => [
    k,
    realFs[k] as (...a: unknown[]) => unknown,
  ]),
);
function gate(name: string, f: (...a: unknown[]) => unknown) {
  return function gated(...a: unknown[]): unknown {
    if (name === 'openSync' && !(typeof a[1] === 'string' && /[wa+]/.test(a[1]))) return f(...a); // opened for reading
    if (io.under && !(typeof a[0] === 'string' && a[0].startsWith(io.under))) return f(...a);
    if (++io.calls === io.failAt) throw Object.assign(new Error(`${io.code}: simulated failure, ${name}`), { code: io.code, syscall: name });
    return f(...a);
  };
}
beforeAll(() => {
  for (const [k, f] of Object.entries(originals)) realFs[k] = gate(k, f);
  syncBuiltinESMExports();
});
afterAll(() => {
  Object.assign(realFs, originals);
  syncBuiltinESMExports();
});

/** Runs `f` with the `n`-th gated fs call failing with `code`; returns how many gated calls it made. */
function failing<T>(n: number, code: string, f: () => T): { result?: T; error?: unknown; calls: number } {
  Object.assign(io, { calls: 0, failAt: n, code });
  try {
    return { result: f(), calls: io.calls };
  } catch (error) {
    return { error, calls: io.calls };
  } finally {
    io.failAt = Infinity;
  }
}

const here = path.dirname(fileURLToPath(import.meta.url));
let registry: PluginRegistry;
let dir: string;
/** Checkpoints of one toy run (oldest first), and the run's checkpoint folder. */
let ckpts: string[];
let ckptDir: string;
beforeAll(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-files-'));
  ckptDir = path.join(dir, 'ckpt');
  await runExperiment({
    registry,
    config: toyConfig(path.join(dir, 'mlruns'), { trainer: { epochs: 2, batchSize: 16, checkpoint: { everySteps: 2, keep: 3, dir: ckptDir } } }),
    log: () => undefined,
  });
  ckpts = listCheckpoints(ckptDir);
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A change to one file: cut it to `length` bytes, or set the byte at `at` (modulo the size) to `value`. */
type Damage = { kind: 'truncate'; length: number } | { kind: 'byte'; at: number; value: number };
const damage: fc.Arbitrary<Damage> = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), length: fc.nat() }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
);
/** Applies `d` to `file`; false when it would change nothing (the same byte value). */
function apply(file: string, d: Damage): boolean {
  const bytes = fs.readFileSync(file);
  if (d.kind === 'truncate') {
    fs.writeFileSync(file, bytes.subarray(0, d.length % bytes.length));
    return true;
  }
  const i = d.at % bytes.length;
  if (bytes[i] === d.value) return false;
  bytes[i] = d.value;
  fs.writeFileSync(file, bytes);
  return true;
}
const copy = (from: string, to: string) => fs.cpSync(from, to, { recursive: true });
const comparable = (c: Checkpoint) => ({
  ...c,
  weights: [...c.weights].map(([k, v]) => [k, v.shape, Array.from(v.values)]),
  optimizer: JSON.stringify(c.optimizer, (_, v) => (v instanceof Float32Array ? Array.from(v) : v)),
});

describe('a damaged checkpoint', () => {
  it('is refused with a FileError naming the damaged file, or (a change that alters nothing) loads unchanged', () => {
    const original = comparable(loadCheckpoint(ckpts.at(-1)!));
    let trial = 0;
    // 300 cases: either file, truncated to any length or with any one byte changed.
    fc.assert(
      fc.property(fc.constantFrom('state.json', 'tensors.bin'), damage, (name, d) => {
        const c = path.join(dir, `damaged-${trial++}`);
        copy(ckpts.at(-1)!, c);
        const file = path.join(c, name);
        if (!apply(file, d)) return;
        let loaded: Checkpoint | null = null;
        try {
          loaded = loadCheckpoint(c);
        } catch (e) {
          expect(e).toBeInstanceOf(FileError);
          expect((e as FileError).file).toBe(file);
          expect((e as Error).message).toContain(`${file} is corrupt: `);
          return;
        } finally {
          fs.rmSync(c, { recursive: true });
        }
        expect(comparable(loaded)).toEqual(original); // e.g. a changed letter in the "sha256" key itself
      }),
      { numRuns: 300 },
    );
  });

  it('stops a resume before anything runs, naming the file and the intact earlier checkpoint; the CLI exits 2 without a stack', async () => {
    const run = path.join(dir, 'resume-damaged');
    copy(ckptDir, run);
    const [earlier, newest] = listCheckpoints(run).slice(-2) as [string, string];
    apply(path.join(newest, 'tensors.bin'), { kind: 'truncate', length: 100 });
    const config = toyConfig(path.join(dir, 'mlruns'), { trainer: { epochs: 2, batchSize: 16, checkpoint: { everySteps: 2, keep: 3, dir: ckptDir } } });
    const store = fs.readdirSync(path.join(dir, 'mlruns'), { recursive: true }).length;
    const attempt = runExperiment({ registry, config, resume: run, log: () => undefined });
    await expect(attempt).rejects.toThrow(FileError);
    await expect(runExperiment({ registry, config, resume: run, log: () => undefined })).rejects.toThrow(
      `checkpoint file ${path.join(newest, 'tensors.bin')} is corrupt: its checksum differs from the one state.json recorded (truncated or altered since it was written). An earlier checkpoint of the run is intact: resume from it with --resume ${earlier} (or delete ${newest})`,
    );
    expect(fs.readdirSync(path.join(dir, 'mlruns'), { recursive: true }).length).toBe(store); // nothing logged
    expect(() => loadCheckpoint(earlier)).not.toThrow();

    const cli = spawnSync(process.execPath, [path.join(here, '..', 'cli', 'bin.mjs'), 'paper', 'mnist-cnn', '--resume', newest], {
      encoding: 'utf8',
      cwd: dir,
    });
    expect(cli.status, cli.stderr).toBe(2);
    expect(cli.stderr).toContain(`loom: checkpoint file ${path.join(newest, 'tensors.bin')} is corrupt`);
    expect(cli.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('a damaged saved model', () => {
  it('is refused with a LoomError naming the file (or its folder, for a config that no longer fits), or loads the same weights', () => {
    const model = new Sequential(
      { inputShape: [4], layers: [{ type: 'dense', units: 5, activation: 'relu' }, { type: 'batch-norm' }, { type: 'dense', units: 3 }] },
      registry,
    );
    model.build(undefined, new Rng(3));
    const saved = path.join(dir, 'model');
    saveModel(model, saved);
    const weights = [...readWeights(model.weights())].map(([k, v]) => [k, Array.from(v.values)]);
    model.dispose();
    let trial = 0;
    // 300 cases: either file, truncated to any length or with any one byte changed.
    fc.assert(
      fc.property(fc.constantFrom('model.json', 'weights.bin'), damage, (name, d) => {
        const m = path.join(dir, `model-${trial++}`);
        copy(saved, m);
        const file = path.join(m, name);
        if (!apply(file, d)) return;
        let loaded: Model | null = null;
        try {
          loaded = loadModel(m, registry);
        } catch (e) {
          expect(e).toBeInstanceOf(LoomError);
          if (name === 'weights.bin') expect(e).toMatchObject({ file });
          expect((e as Error).message).toContain(m);
          return;
        } finally {
          fs.rmSync(m, { recursive: true });
        }
        // model.json's config may be edited by hand (a changed activation loads); its weights may not change.
        expect([...readWeights(loaded.weights())].map(([k, v]) => [k, Array.from(v.values)])).toEqual(weights);
        loaded.dispose();
      }),
      { numRuns: 300 },
    );
  });
});

describe('a full disk', () => {
  const errnos = fc.constantFrom('ENOSPC', 'EDQUOT', 'EIO');

  it('fails a checkpoint write with a FileError naming it and its cause, leaving the previous checkpoints intact', () => {
    const scratch = path.join(dir, 'full');
    copy(ckptDir, scratch);
    const next = loadCheckpoint(ckpts.at(-1)!);
    const save = () => new Checkpointer(scratch, 3).save({ ...next, trainer: { ...next.trainer, step: next.trainer.step + 1 } });
    const before = listCheckpoints(scratch);
    const contents = before.map((c) => comparable(loadCheckpoint(c)));
    const probe = path.join(dir, 'probe');
    copy(ckptDir, probe);
    const total = failing(Infinity, 'ENOSPC', () =>
      new Checkpointer(probe, 3).save({ ...next, trainer: { ...next.trainer, step: next.trainer.step + 1 } }),
    ).calls;
    expect(total).toBeGreaterThan(4);
    // 60 cases: the n-th write-like call of a checkpoint save fails (n over all of them), with one of three errnos.
    fc.assert(
      fc.property(fc.integer({ min: 1, max: total }), errnos, (n, code) => {
        const r = failing(n, code, save);
        const after = listCheckpoints(scratch);
        expect(fs.readdirSync(scratch).filter((d) => d.endsWith('.tmp'))).toEqual([]);
        if (r.error === undefined) {
          // The failed call was one whose failure is harmless (fsync of a directory): the checkpoint was written.
          expect(after.at(-1)).toBe(r.result);
          expect(() => loadCheckpoint(r.result!)).not.toThrow();
          fs.rmSync(r.result!, { recursive: true });
          for (const c of before) if (!fs.existsSync(c)) copy(path.join(ckptDir, path.basename(c)), c); // pruned: put back
          return;
        }
        expect(r.error).toBeInstanceOf(FileError);
        const message = (r.error as Error).message;
        expect(message).toMatch(
          new RegExp(`^cannot write checkpoint ${scratch}/ckpt-\\d+-e\\d+b\\d+: .*\\(${code}\\).*; the previous checkpoint ${before.at(-1)} is intact$`),
        );
        expect(after).toEqual(before);
        expect(after.map((c) => comparable(loadCheckpoint(c)))).toEqual(contents);
      }),
      { numRuns: 60 },
    );
  });

  it('fails a model save with a FileError naming the file, leaving the saved model as it was', () => {
    const model = new Sequential({ inputShape: [4], layers: [{ type: 'dense', units: 3 }] }, registry);
    model.build(undefined, new Rng(1));
    const target = path.join(dir, 'saved-model');
    saveModel(model, target);
    model.dispose();
    const before = Object.fromEntries(['model.json', 'weights.bin'].map((f) => [f, fs.readFileSync(path.join(target, f))]));
    const other = new Sequential({ inputShape: [4], layers: [{ type: 'dense', units: 3 }] }, registry);
    other.build(undefined, new Rng(2)); // other weights, to be saved over the first
    const total = failing(Infinity, 'ENOSPC', () => saveModel(other, path.join(dir, 'probe-model'))).calls;
    // 40 cases: the n-th write-like call of a model save fails, with one of three errnos.
    fc.assert(
      fc.property(fc.integer({ min: 1, max: total }), errnos, (n, code) => {
        const r = failing(n, code, () => saveModel(other, target));
        expect(fs.readdirSync(target).filter((f) => f.endsWith('.tmp'))).toEqual([]);
        if (r.error === undefined) {
          // A harmless failure (fsync of a directory): saved. Put the first model back for the next case.
          for (const [f, b] of Object.entries(before)) fs.writeFileSync(path.join(target, f), b);
          return;
        }
        expect(r.error).toBeInstanceOf(FileError);
        expect((r.error as Error).message).toMatch(new RegExp(`^cannot write ${target}/(weights\\.bin|model\\.json): .*\\(${code}\\)`));
        const changed = ['model.json', 'weights.bin'].filter((f) => !fs.readFileSync(path.join(target, f)).equals(before[f]!));
        // weights.bin is written first: a failure there leaves both files as they were; one while writing model.json
        // leaves the new weights beside the old model.json, and loading says they do not match rather than mixing them.
        if (changed.length === 0) expect(() => loadModel(target, registry).dispose()).not.toThrow();
        else {
          expect(changed).toEqual(['weights.bin']);
          expect(() => loadModel(target, registry)).toThrow(/weights\.bin is corrupt: its checksum differs/);
        }
        for (const [f, b] of Object.entries(before)) fs.writeFileSync(path.join(target, f), b);
      }),
      { numRuns: 40 },
    );
    other.dispose();
  });

  it('stops a run whose checkpoint cannot be written: FAILED with the reason, the previous checkpoint resumable', async () => {
    const ck = path.join(dir, 'run-full');
    const store = path.join(dir, 'run-full-mlruns');
    const config = toyConfig(store, { callbacks: ['fill-disk'], trainer: { epochs: 2, batchSize: 16, checkpoint: { everySteps: 2, keep: 3, dir: ck } } });
    // After step 5 the checkpoint folder's disk is full: the checkpoint that ends epoch 1 (step 6) cannot be written.
    const stopper = {
      kind: 'callback' as const,
      name: 'fill-disk',
      description: 'test: the disk fills after step 5',
      schema: (await import('zod')).z.object({}),
      create: () => ({
        onBatchEnd: (s: { step: number }) => {
          if (s.step !== 5 || filled) return;
          filled = true; // once: the resumed run has room again
          Object.assign(io, { calls: 0, failAt: 1, code: 'ENOSPC', under: ck + path.sep });
        },
      }),
    };
    let filled = false;
    registry.register(stopper);
    try {
      await expect(runExperiment({ registry, config, log: () => undefined })).rejects.toThrow(/no space left on device \(ENOSPC\)/);
    } finally {
      Object.assign(io, { failAt: Infinity, under: '' });
    }
    const left = listCheckpoints(ck);
    expect(left.map((c) => path.basename(c))).toEqual(['ckpt-000000002-e0b2', 'ckpt-000000004-e0b4']);
    const exp = fs.readdirSync(store).find((d) => d !== '0' && d !== 'meta.yaml')!;
    const runDir = path.join(store, exp, fs.readdirSync(path.join(store, exp)).find((d) => d !== 'meta.yaml')!);
    expect(fs.readFileSync(path.join(runDir, 'meta.yaml'), 'utf8')).toMatch(/^status: 4$/m);
    expect(fs.readFileSync(path.join(runDir, 'tags', 'loom.status_reason'), 'utf8')).toMatch(
      /^cannot write checkpoint .*ckpt-000000006-e1b0: .*ENOSPC.*; the previous checkpoint .*ckpt-000000004-e0b4 is intact$/,
    );
    const resumed = await runExperiment({ registry, config, resume: ck, log: () => undefined });
    expect(resumed.history).toHaveLength(2);
  });
});
