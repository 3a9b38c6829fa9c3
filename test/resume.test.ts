/**
 * Crash safety: a training process killed with SIGKILL at a random step and resumed from its last checkpoint ends
 * with exactly the metrics and weights of a run that was never interrupted, in the same MLflow run, with every
 * metric logged once. Also: checkpoints are complete or absent, and the NaN guard.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { latestCheckpoint, listCheckpoints, type PluginRegistry } from '../core';
import { runExperiment } from '../runtime';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

const here = path.dirname(fileURLToPath(import.meta.url));
const worker = path.join(here, 'fixtures', 'resume-worker.ts');
const nodeArgs = [path.join(here, 'fixtures', 'run-ts.mjs'), worker];
const env = process.env;

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-resume-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  runId: string;
  history: Record<string, number>[];
  test: Record<string, number>;
  weights: string;
}
const read = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as Outcome;

function runToEnd(name: string, resume?: string): Outcome {
  const out = path.join(dir, `${name}.json`);
  const r = spawnSync(process.execPath, [...nodeArgs, path.join(dir, `${name}-mlruns`), path.join(dir, `${name}-ckpt`), out, ...(resume ? [resume] : [])], {
    encoding: 'utf8',
    env,
    cwd: dir,
  });
  expect(r.status, r.stderr).toBe(0);
  return read(out);
}

/** Starts a run and SIGKILLs it once it has printed `step k`. */
function runAndKill(name: string, k: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, path.join(dir, `${name}-mlruns`), path.join(dir, `${name}-ckpt`), path.join(dir, `${name}.json`)], {
      env,
      cwd: dir,
    });
    let seen = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      seen += d.toString();
      if (seen.includes(`step ${k}\n`)) child.kill('SIGKILL');
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`worker ended before step ${k} (code ${code}): ${err}`))));
  });
}

describe('resume after SIGKILL', () => {
  it('ends with the same metrics and weights as an uninterrupted run, in the same MLflow run, each metric once', async () => {
    const reference = runToEnd('reference');
    let trial = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 25 }), async (k) => {
        // "step k" is printed after checkpoint k − 1 was written, so one exists whenever k ≥ 2. The name is new for
        // every trial: fast-check may draw the same k twice, and the first trial's resumed run leaves its JSON.
        const name = `killed-${k}-${trial++}`;
        await runAndKill(name, k);
        expect(fs.existsSync(path.join(dir, `${name}.json`))).toBe(false);
        const ckpt = latestCheckpoint(path.join(dir, `${name}-ckpt`));
        expect(ckpt, 'a checkpoint survived the kill').not.toBeNull();
        const resumed = runToEnd(name, path.join(dir, `${name}-ckpt`));
        expect(resumed.history).toEqual(reference.history);
        expect(resumed.test).toEqual(reference.test);
        expect(resumed.weights).toBe(reference.weights);
        // Same MLflow run: the store holds one run, with the id the killed process started.
        const root = path.join(dir, `${name}-mlruns`);
        const exp = fs.readdirSync(root).find((d) => d !== '0' && fs.statSync(path.join(root, d)).isDirectory())!;
        expect(fs.readdirSync(path.join(root, exp)).filter((d) => d !== 'meta.yaml')).toEqual([resumed.runId]);
        // The resume is tagged with the checkpoint's step (run records list it), and with the commit it ran.
        const tagDir = path.join(root, exp, resumed.runId, 'tags');
        const resumedTags = fs.readdirSync(tagDir).filter((t) => /^loom\.resumed\.\d+$/.test(t));
        expect(resumedTags).toHaveLength(1);
        expect(Number(resumedTags[0]!.split('.')[2])).toBeLessThan(k);
        expect(fs.readFileSync(path.join(tagDir, `${resumedTags[0]}.commit`), 'utf8')).toBe(fs.readFileSync(path.join(tagDir, 'git.commit'), 'utf8'));
        const metrics = path.join(root, exp, resumed.runId, 'metrics');
        for (const key of fs.readdirSync(metrics)) {
          const steps = fs
            .readFileSync(path.join(metrics, key), 'utf8')
            .trimEnd()
            .split('\n')
            .map((l) => l.split(' ')[2]);
          expect(new Set(steps).size, `${key} logged once per step`).toBe(steps.length);
        }
        expect(fs.readFileSync(path.join(metrics, 'loss'), 'utf8').trimEnd().split('\n')).toHaveLength(3);
      }),
      { numRuns: 2 },
    );
  });
});

describe('checkpoints and the NaN guard', () => {
  let registry: PluginRegistry;
  beforeEach(async () => {
    registry = (await testRegistry()).register(toyBlobs);
  });

  it('orders checkpoints by step, epoch and batch as numbers (e10b0 after e9b6 at the same step)', () => {
    // Before, the names sorted as text: a stop after epoch 10's last batch (e9b6, 0-based) and the resumed run's end of
    // that epoch (e10b0) share a step, and retention deleted the newer one; --resume took the older.
    const ckptDir = path.join(dir, 'order');
    const names = ['ckpt-000000060-e10b0', 'ckpt-000000059-e9b5', 'ckpt-000000100-e12b0', 'ckpt-000000060-e9b6', 'ckpt-000000009-e1b3'];
    for (const n of names) {
      fs.mkdirSync(path.join(ckptDir, n), { recursive: true });
      fs.writeFileSync(path.join(ckptDir, n, 'state.json'), '{}');
    }
    fs.mkdirSync(path.join(ckptDir, '.ckpt-000000200-e13b0.1.tmp')); // an interrupted write: ignored
    expect(listCheckpoints(ckptDir).map((c) => path.basename(c))).toEqual([
      'ckpt-000000009-e1b3',
      'ckpt-000000059-e9b5',
      'ckpt-000000060-e9b6',
      'ckpt-000000060-e10b0',
      'ckpt-000000100-e12b0',
    ]);
    fs.rmSync(path.join(ckptDir, 'ckpt-000000100-e12b0'), { recursive: true });
    expect(path.basename(latestCheckpoint(ckptDir)!)).toBe('ckpt-000000060-e10b0');
  });

  it('keeps the last K complete checkpoints and ignores an interrupted write', async () => {
    const ckptDir = path.join(dir, 'ckpt');
    await runExperiment({
      registry,
      config: toyConfig(path.join(dir, 'mlruns'), { trainer: { epochs: 2, batchSize: 16, checkpoint: { everySteps: 2, keep: 3, dir: ckptDir } } }),
      log: () => undefined,
    });
    const all = listCheckpoints(ckptDir);
    expect(all).toHaveLength(3);
    expect(path.basename(all.at(-1)!)).toMatch(/^ckpt-0+12-e2b0$/); // 2 epochs of 6 steps, the last at the end of epoch 2
    fs.mkdirSync(path.join(ckptDir, '.ckpt-000000099-e9b9.123.tmp')); // what a crash mid-write leaves
    fs.mkdirSync(path.join(ckptDir, 'ckpt-000000100-e9b9')); // no state.json: never completed
    expect(latestCheckpoint(ckptDir)).toBe(all.at(-1));
  });

  it('stops on a non-finite gradient naming the layers and the last finite loss, keeping the last good checkpoint', async () => {
    const ckptDir = path.join(dir, 'ckpt');
    // ReLU of a huge pre-activation: the loss overflows to Infinity during the second epoch at this learning rate.
    const config = toyConfig(path.join(dir, 'mlruns'), {
      optimizer: { type: 'sgd', lr: 1e18 },
      trainer: { epochs: 3, batchSize: 16, checkpoint: { dir: ckptDir } },
    });
    await expect(runExperiment({ registry, config, log: () => undefined })).rejects.toThrow(
      /non-finite (loss|gradient).* at step \d+ \(epoch \d\); layers with non-finite gradients: .*; last finite loss: /,
    );
    for (const c of listCheckpoints(ckptDir))
      expect(JSON.parse(fs.readFileSync(path.join(c, 'state.json'), 'utf8')).trainer.history.every((h: { loss: number }) => Number.isFinite(h.loss))).toBe(
        true,
      );
  });

  it("with onNonFinite 'skip' skips the bad batch and carries on, counting it", async () => {
    const nanOnce = {
      kind: 'loss' as const,
      name: 'nan-once',
      description: 'test: NaN on the third batch',
      schema: (await import('zod')).z.object({}),
      create: () => {
        let calls = 0;
        const ce = registry.create('loss', 'sparse-categorical-crossentropy');
        return { compute: (y: tf.Tensor, p: tf.Tensor) => (++calls === 3 ? (tf.mul(ce.compute(y, p), NaN) as tf.Scalar) : ce.compute(y, p)) };
      },
    };
    registry.register(nanOnce);
    const r = await runExperiment({
      registry,
      config: toyConfig(path.join(dir, 'mlruns'), { loss: 'nan-once', trainer: { epochs: 2, batchSize: 16, onNonFinite: 'skip' } }),
      log: () => undefined,
    });
    expect(r.history).toHaveLength(2);
    const exp = fs.readdirSync(path.join(dir, 'mlruns')).find((d) => d !== '0' && d !== 'meta.yaml')!;
    expect(fs.readFileSync(path.join(dir, 'mlruns', exp, r.run.runId, 'metrics', 'skipped_batches'), 'utf8')).toMatch(/^\d+ 1 \d+\n$/);
    // Every batch non-finite: the epoch has no loss (it logged 0 before) and the run stops, saying so.
    registry.register({
      ...nanOnce,
      name: 'nan-always',
      create: () => ({ compute: (_y: tf.Tensor, p: tf.Tensor) => tf.mul(tf.sum(tf.sub(p, p)), NaN) as tf.Scalar }),
    });
    await expect(
      runExperiment({
        registry,
        config: toyConfig(path.join(dir, 'mlruns2'), { loss: 'nan-always', trainer: { epochs: 2, batchSize: 16, onNonFinite: 'skip' } }),
        log: () => undefined,
      }),
    ).rejects.toThrow(/every batch of epoch 1 had a non-finite loss or gradient and was skipped/);
  });
});
