/**
 * The hybrid strategy in one process: the layout (Megatron's order, tensor fastest) as a bijection with tensor groups
 * on neighbouring ranks, the user errors that name the field (in-process and through the CLI: exit code 2, no stack
 * trace; a resume whose config changes the layout), and a layout of one rank that trains exactly as single-process
 * training. Under mpirun (several ranks) it
 * is tested by mpi.test.ts (test/fixtures/mpi-hybrid-worker.ts).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, TOKENS, Trainer } from '../../core';
import { buildRunContainer, disposeRun } from '../../runtime';
import { testRegistry } from '../../test/harness';
import toyBlobs, { toyConfig } from '../../test/toy-data';
import { checkLayout, coordinatesOf, rankOf } from './hybrid';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The CLI on `paper mnist-cnn` with 40 training and 20 test examples, tracking into `mlruns`, plus `args`. */
const loom = (mlruns: string, ...args: string[]) =>
  spawnSync(process.execPath, [path.join(repo, 'cli/bin.mjs'), 'paper', 'mnist-cnn', '--set', 'data.trainLimit=40', '--set', 'data.testLimit=20', ...args], {
    encoding: 'utf8',
    cwd: repo,
    env: { ...process.env, MLFLOW_TRACKING_URI: mlruns },
  });

describe('hybrid layout', () => {
  it('world rank ↔ (d, p, t) is a bijection onto D × P × T, tensor fastest and pipeline slowest', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), (data, pipeline, tensor) => {
        const o = { data, pipeline, tensor };
        const seen = new Set<string>();
        for (let r = 0; r < data * pipeline * tensor; r++) {
          const c = coordinatesOf(r, o);
          expect(c.d).toBeLessThan(data);
          expect(c.p).toBeLessThan(pipeline);
          expect(c.t).toBeLessThan(tensor);
          expect(rankOf(c, o)).toBe(r);
          seen.add(`${c.d},${c.p},${c.t}`);
          // A tensor group is T consecutive ranks (one node's GPUs); a pipeline's stages are T·D ranks apart.
          expect(rankOf({ ...c, t: 0 }, o)).toBe(r - c.t);
          if (c.p > 0) expect(r - rankOf({ ...c, p: c.p - 1 }, o)).toBe(tensor * data);
        }
        expect(seen.size).toBe(data * pipeline * tensor);
      }),
    );
  });

  it('a layout whose product is not the world size is refused, naming the fields and the launch to use', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 64 }),
        (d, p, t, world) => {
          const o = { data: d, pipeline: p, tensor: t };
          if (d * p * t === world) expect(() => checkLayout(world, o)).not.toThrow();
          else {
            const e = (() => {
              try {
                checkLayout(world, o);
              } catch (x) {
                return x;
              }
            })();
            expect(e).toBeInstanceOf(ConfigError);
            expect((e as ConfigError).path).toBe('parallelism');
            expect((e as ConfigError).message).toContain(`= ${d * p * t} ranks, but this job has ${world}`);
            expect((e as ConfigError).message).toContain(`mpirun -np ${d * p * t}`);
          }
        },
      ),
    );
  });
});

describe('hybrid strategy in one process', () => {
  it('data 1 × pipeline 1 × tensor 1 trains exactly as single-process, leaving no tensor behind', async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const run = async (parallelism: unknown) => {
      const c = await buildRunContainer({
        registry,
        config: { ...toyConfig('unused'), trackers: [], parallelism, trainer: { epochs: 2, batchSize: 8, checkpoint: { enabled: false } } },
        log: () => undefined,
      });
      await c.resolve(Trainer).fit(c.resolve(TOKENS.TrainData));
      const w = c
        .resolve(TOKENS.Model)
        .parameters()
        .flatMap((p) => Array.from(p.variable.dataSync()));
      disposeRun(c);
      return w;
    };
    const single = await run('single-process');
    const before = tf.memory().numTensors;
    const hybrid = await run({ type: 'hybrid' });
    expect(hybrid).toEqual(single);
    const zero = await run({ type: 'hybrid', zero: 1 }); // ZeRO-1 over one rank: the whole state, same steps
    expect(zero).toEqual(single);
    // disposeRun leaves what a run of single-process leaves: measure it once more against a hybrid run.
    const mid = tf.memory().numTensors;
    await run('single-process');
    const leftBySingle = tf.memory().numTensors - mid;
    expect(mid - before).toBe(2 * leftBySingle);
  });

  it('refuses, naming the field: a layout of more ranks than the job has, boundaries without stages, an unknown option', async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const refused = async (parallelism: unknown) => {
      try {
        const c = await buildRunContainer({
          registry,
          config: { ...toyConfig('unused'), trackers: [], parallelism, trainer: { epochs: 1, batchSize: 8, checkpoint: { enabled: false } } },
          log: () => undefined,
        });
        try {
          await c.resolve(Trainer).fit(c.resolve(TOKENS.TrainData));
        } finally {
          disposeRun(c);
        }
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('not refused');
    };
    const many = await refused({ type: 'hybrid', data: 2, pipeline: 2 });
    expect(many).toBeInstanceOf(ConfigError);
    expect(many.message).toMatch(/^parallelism: data × pipeline × tensor = 2 × 2 × 1 = 4 ranks, but this job has 1 \(it was not started by an MPI launcher\)/);
    const b = await refused({ type: 'hybrid', boundaries: [1] });
    expect(b.message).toMatch(/^parallelism\.boundaries: cuts pipeline stages: it needs parallelism\.pipeline > 1/);
    const unknown = await refused({ type: 'hybrid', data: 1, dta: 2 });
    expect(unknown.message).toMatch(/dta/);
  });

  it('through the CLI: exit code 2, one line naming the field, no stack trace', () => {
    const r = loom(path.join(repo, 'node_modules/.cache/loom-hybrid-test-mlruns'), '--set', 'parallelism={"type":"hybrid","data":2,"pipeline":2,"tensor":1}');
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain('parallelism: data × pipeline × tensor = 2 × 2 × 1 = 4 ranks, but this job has 1');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  }, 60_000);

  it('resuming a checkpoint with another layout in the config is refused by the resume check, naming the field (exit code 2)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-hybrid-resume-'));
    const run = (...args: string[]) => loom(path.join(dir, 'mlruns'), '--set', `trainer.checkpoint.dir=${dir}`, ...args);
    try {
      // A hybrid layout of one rank (data 1 × pipeline 1) writes a checkpoint; resumed as 2 pipeline stages, it is refused
      // before anything is built (a whole checkpoint could be cut into stages, but the resumed run would not be the one
      // the checkpoint's config describes).
      const first = run('--set', 'parallelism={"type":"hybrid","data":1,"pipeline":1}');
      expect(first.status, first.stderr).toBe(0);
      const r = run('--set', 'parallelism={"type":"hybrid","data":1,"pipeline":2}', '--resume', dir);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/--resume: the config differs from the checkpoint's in parallelism\.pipeline \(was 1, now 2\)/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
