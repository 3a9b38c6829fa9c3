/**
 * Interrupting and resuming runs, for real: training processes get SIGINT or SIGTERM mid-run and must finish the
 * step, write a checkpoint, end the MLflow run as KILLED (status 5, end time set), say how to resume and exit with
 * 130 / 143; a second signal ends the process at once. Resuming ends with the weights of an uninterrupted run;
 * resuming a FINISHED run changes nothing unless asked to train further. `--resume latest` skips what is not a
 * run under ./checkpoints (a trained tokenizer once sat there and crashed it with ENOTDIR).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { Checkpointer, finalEpochLogs, latestCheckpoint, listCheckpoints, loadCheckpoint } from '../core';
import { describeMachine, findLatestCheckpoint, machineTags, runExperiment } from '../runtime';
import { testRegistry } from './harness';
import toyBlobs, { toyConfig } from './toy-data';

const here = path.dirname(fileURLToPath(import.meta.url));
const worker = [path.join(here, 'fixtures', 'run-ts.mjs'), path.join(here, 'fixtures', 'resume-worker.ts')];
const cli = path.join(here, '..', 'cli', 'bin.mjs');

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-interrupt-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Outcome {
  runId: string;
  history: Record<string, number>[];
  test: Record<string, number>;
  weights: string;
}

/** The worker's arguments for run `name`: its MLflow store, checkpoint folder and result file. */
const args = (name: string, resume?: string) => [
  ...worker,
  path.join(dir, `${name}-mlruns`),
  path.join(dir, `${name}-ckpt`),
  path.join(dir, `${name}.json`),
  ...(resume ? [resume] : []),
];

function runToEnd(name: string, opts: { resume?: string; env?: Record<string, string> } = {}): { out: Outcome | null; stdout: string } {
  const r = spawnSync(process.execPath, args(name, opts.resume), { encoding: 'utf8', env: { ...process.env, ...opts.env }, cwd: dir });
  expect(r.status, r.stderr).toBe(0);
  const file = path.join(dir, `${name}.json`);
  return { out: fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as Outcome) : null, stdout: r.stdout };
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `argv`; `on(text, act)` runs `act` once, when stdout first contains `text`. */
function start(argv: string[], env: Record<string, string> = {}, cwd = dir) {
  const child: ChildProcess = spawn(process.execPath, argv, { env: { ...process.env, ...env }, cwd });
  let stdout = '';
  let stderr = '';
  const waiting: { text: string; act: () => void }[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const w of waiting.splice(0)) {
      if (stdout.includes(w.text)) w.act();
      else waiting.push(w);
    }
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const ended = new Promise<Ended>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, ended, on: (text: string, act: () => void) => waiting.push({ text, act }) };
}

/** The one run in an MLflow file store: its meta.yaml and metric files (lines of "<ms> <value> <step>"). */
function onlyRun(root: string) {
  const exp = fs.readdirSync(root).find((d) => d !== '0' && fs.statSync(path.join(root, d)).isDirectory())!;
  const runs = fs.readdirSync(path.join(root, exp)).filter((d) => d !== 'meta.yaml');
  expect(runs).toHaveLength(1);
  const runDir = path.join(root, exp, runs[0]!);
  const meta = YAML.parse(fs.readFileSync(path.join(runDir, 'meta.yaml'), 'utf8')) as { status: number; start_time: number; end_time: number | null };
  const metric = (key: string) =>
    fs
      .readFileSync(path.join(runDir, 'metrics', key), 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => l.split(' ').map(Number) as [number, number, number]);
  return { runDir, runId: runs[0]!, meta, metric, metrics: () => fs.readdirSync(path.join(runDir, 'metrics')) };
}

describe('the first SIGINT or SIGTERM', () => {
  it('finishes the step, checkpoints, marks the run KILLED, says how to resume, exits 130 / 143; resuming gives the uninterrupted weights', async () => {
    const reference = runToEnd('reference').out!;
    let trial = 0;
    // 3 cases: a step k in 2..20 of the 27 and a signal; each case runs two training processes (~4 s).
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 2, max: 20 }), fc.constantFrom('SIGINT' as const, 'SIGTERM' as const), async (k, signal) => {
        const name = `stopped-${trial++}`;
        const p = start(args(name));
        p.on(`step ${k}\n`, () => p.child.kill(signal));
        const end = await p.ended;
        expect({ code: end.code, signal: end.signal }, end.stderr).toEqual({ code: signal === 'SIGINT' ? 130 : 143, signal: null });
        expect(end.stdout).toContain(`loom: ${signal} received: stopping after the current step`);
        const said = new RegExp(
          `^loom: interrupted by ${signal} after step (\\d+): checkpoint (\\S+) \\(step \\d+\\); MLflow run (\\w+) marked KILLED\\nTo continue it, run the same command with --resume latest \\(the same preset, seed and --set values\\), or with --resume (\\S+)\\n$`,
        ).exec(end.stderr);
        expect(said, end.stderr).not.toBeNull();
        const [, step, ckpt, runId, again] = said!;
        expect(Number(step)).toBeGreaterThanOrEqual(k); // the step in progress when the signal came was finished
        expect(again).toBe(ckpt);
        expect(latestCheckpoint(path.join(dir, `${name}-ckpt`))).toBe(ckpt);
        expect(loadCheckpoint(ckpt!).trainer.step).toBe(Number(step));
        const killed = onlyRun(path.join(dir, `${name}-mlruns`));
        expect(killed.runId).toBe(runId);
        expect(killed.meta.status).toBe(5); // KILLED
        expect(killed.meta.end_time).toBeGreaterThanOrEqual(killed.meta.start_time);
        expect(fs.existsSync(path.join(dir, `${name}.json`))).toBe(false);

        const resumed = runToEnd(name, { resume: path.join(dir, `${name}-ckpt`) });
        expect(resumed.stdout).toContain(`loom: resuming run ${runId} from ${ckpt}: step ${step}, `);
        expect(resumed.out!.history).toEqual(reference.history);
        expect(resumed.out!.test).toEqual(reference.test);
        expect(resumed.out!.weights).toBe(reference.weights);
        const done = onlyRun(path.join(dir, `${name}-mlruns`));
        expect(done.meta.status).toBe(3); // FINISHED, the same run
        for (const key of done.metrics()) {
          const steps = done.metric(key).map((l) => l[2]);
          expect(new Set(steps).size, `${key} logged once per step`).toBe(steps.length);
        }
      }),
      { numRuns: 3 },
    );
  });

  it('a second signal ends the process at once, even while it is busy, and leaves only complete checkpoints', async () => {
    // The worker stays busy for 20 s right after acknowledging the first signal; the second must not wait for it.
    const p = start(args('twice'), { LOOM_TEST_HOLD_MS: '20000' });
    let second = 0;
    p.on('step 3\n', () => p.child.kill('SIGINT'));
    p.on('SIGINT received: ', () => {
      second = Date.now();
      p.child.kill('SIGINT');
    });
    const end = await p.ended;
    expect(end.signal, end.stderr).toBe('SIGINT');
    expect(Date.now() - second).toBeLessThan(5000);
    const ckdir = path.join(dir, 'twice-ckpt');
    expect(listCheckpoints(ckdir).length).toBeGreaterThan(0);
    for (const c of listCheckpoints(ckdir)) expect(() => loadCheckpoint(c)).not.toThrow();
    expect(fs.readdirSync(ckdir).filter((d) => d.endsWith('.tmp'))).toEqual([]);
  });
});

describe('resuming a FINISHED run', () => {
  it('says so and changes nothing; with a larger trainer.epochs it trains on and logs the new results', async () => {
    const first = runToEnd('done').out!;
    const store = path.join(dir, 'done-mlruns');
    const ckdir = path.join(dir, 'done-ckpt');
    const before = onlyRun(store);
    const files = (d: string) =>
      fs
        .readdirSync(d, { recursive: true, withFileTypes: true })
        .filter((f) => f.isFile())
        .map((f) => [path.join(f.parentPath, f.name), fs.readFileSync(path.join(f.parentPath, f.name), 'utf8')]);
    const snapshot = [...files(store), ...files(ckdir)];

    const again = runToEnd('done', { resume: ckdir });
    expect(again.stdout).toMatch(new RegExp(`loom: run ${first.runId} already FINISHED at step 27 \\(3 epochs\\); nothing to resume, nothing changed`));
    expect([...files(store), ...files(ckdir)]).toEqual(snapshot); // not a byte written: no second test_accuracy or wall_time_s
    expect(before.metric('test_accuracy')).toHaveLength(1);

    // Asked for a fourth epoch: the same run continues from its last checkpoint and ends as a 4-epoch run would.
    const longer = runToEnd('done', { resume: ckdir, env: { LOOM_TEST_EPOCHS: '4' } });
    expect(longer.stdout).toContain('training further: trainer.epochs=4 (was 3)');
    const straight = runToEnd('straight4', { env: { LOOM_TEST_EPOCHS: '4' } }).out!;
    expect(longer.out!.weights).toBe(straight.weights);
    expect(longer.out!.test).toEqual(straight.test);
    const after = onlyRun(store);
    expect(after.meta.status).toBe(3);
    expect(after.metric('test_accuracy').map((l) => l[2])).toEqual([27, 36]); // the old result and the new one
    expect(after.metric('wall_time_s').map((l) => l[2])).toEqual([27, 36]);
    expect(fs.readFileSync(path.join(after.runDir, 'params', 'trainer.epochs'), 'utf8')).toBe('3'); // params are immutable
    expect(fs.readFileSync(path.join(after.runDir, 'tags', 'loom.extended.trainer.epochs'), 'utf8')).toBe('trainer.epochs=4 (was 3) at step 27');

    // Fewer epochs than the checkpoint's is refused (exit 2, the field named).
    const shorter = spawnSync(process.execPath, args('done', ckdir), { encoding: 'utf8', env: { ...process.env, LOOM_TEST_EPOCHS: '2' }, cwd: dir });
    expect(shorter.status).toBe(2);
    expect(shorter.stderr).toMatch(/--resume: trainer\.epochs is 2, less than the checkpoint's 4/);
  });
});

describe('resuming with callbacks added', () => {
  it("adds callbacks after the checkpoint's and changes the checkpoint cadence, training what a straight run trains; changing a callback is refused", async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const store = path.join(dir, 'mlruns');
    const ckdir = path.join(dir, 'ck');
    const quiet = () => undefined;
    const base = (epochs: number, extra: Record<string, unknown> = {}) =>
      toyConfig(store, {
        trainer: { epochs, batchSize: 16, validationSplit: 0.25, logEvery: 2, checkpoint: { dir: ckdir, everySteps: 3, keep: 2 } },
        callbacks: ['progress'],
        ...extra,
      });
    const first = await runExperiment({ registry, config: base(2), log: quiet });
    // Trained on to 4 epochs with early stopping added (patient enough never to stop) and another checkpoint cadence.
    const later = { callbacks: ['progress', { type: 'early-stopping', monitor: 'val_loss', patience: 100 }] };
    const cfg = base(4, later) as unknown as { trainer: { checkpoint: Record<string, unknown> } };
    cfg.trainer.checkpoint = { dir: ckdir, everySteps: 5, keep: 3 };
    const said: string[] = [];
    const resumed = await runExperiment({ registry, config: cfg, resume: ckdir, log: (m: string) => said.push(m) });
    expect(resumed.run.runId).toBe(first.run.runId);
    expect(said.join('\n')).toMatch(/training further: .*trainer\.epochs=4 \(was 2\).*callbacks\.1 added: \{"type":"early-stopping"/);
    const straight = await runExperiment({
      registry,
      config: toyConfig(path.join(dir, 'other'), {
        trainer: { epochs: 4, batchSize: 16, validationSplit: 0.25, logEvery: 2, checkpoint: { dir: path.join(dir, 'ck2') } },
      }),
      log: quiet,
    });
    expect(resumed.test).toEqual(straight.test);
    expect(resumed.history.at(-1)).toEqual(straight.history.at(-1));
    const tags = path.join(store, resumed.run.experimentId, resumed.run.runId, 'tags');
    expect(fs.readFileSync(path.join(tags, 'loom.extended.callbacks.1'), 'utf8')).toMatch(/^callbacks\.1 added: .*early-stopping.* at step 10$/);
    expect(fs.readFileSync(path.join(tags, 'loom.extended.trainer.checkpoint.keep'), 'utf8')).toBe('trainer.checkpoint.keep=3 (was 2) at step 10');
    // The resume's commit beside its step (a run resumed on a later checkout spans commits; the report lists them).
    expect(fs.readFileSync(path.join(tags, 'loom.resumed.10.commit'), 'utf8')).toBe(fs.readFileSync(path.join(tags, 'git.commit'), 'utf8'));
    // Resumed again from a checkpoint of the extended run (epochs and cadence already changed once): trains on.
    const cfg5 = base(5, later) as unknown as { trainer: { checkpoint: Record<string, unknown> } };
    cfg5.trainer.checkpoint = { dir: ckdir, everySteps: 5, keep: 3 };
    const again = await runExperiment({ registry, config: cfg5, resume: ckdir, log: quiet });
    expect(again.run.runId).toBe(first.run.runId);
    expect(fs.readFileSync(path.join(store, again.run.experimentId, again.run.runId, 'params', 'trainer.checkpoint.everySteps'), 'utf8')).toBe('3');
    expect(fs.readFileSync(path.join(tags, 'loom.extended.trainer.epochs'), 'utf8')).toBe('trainer.epochs=5 (was 4) at step 20');
    // Early stopping's patience may be raised on a resume (a noisy monitor), never lowered; a tag records the change.
    const patient = (epochs: number, patience: number) => {
      const c = base(epochs, { callbacks: ['progress', { type: 'early-stopping', monitor: 'val_loss', patience }] }) as unknown as {
        trainer: { checkpoint: Record<string, unknown> };
      };
      c.trainer.checkpoint = { dir: ckdir, everySteps: 5, keep: 3 };
      return c;
    };
    const said2: string[] = [];
    const raised = await runExperiment({ registry, config: patient(6, 200), resume: ckdir, log: (m: string) => said2.push(m) });
    expect(raised.run.runId).toBe(first.run.runId);
    expect(said2.join('\n')).toMatch(/training further: .*callbacks\.1\.patience=200 \(was 100\)/);
    expect(fs.readFileSync(path.join(tags, 'loom.extended.callbacks.1.patience'), 'utf8')).toBe('callbacks.1.patience=200 (was 100) at step 25');
    await expect(runExperiment({ registry, config: patient(7, 50), resume: ckdir, log: quiet })).rejects.toThrow(
      /--resume: callbacks\.1\.patience is 50, less than the checkpoint's 200/,
    );
    // A callback the checkpoint already had may not change: it would no longer be the run it was.
    const changed = base(6, { callbacks: [{ type: 'early-stopping', monitor: 'val_loss', patience: 1 }] });
    await expect(runExperiment({ registry, config: changed, resume: ckdir, log: quiet })).rejects.toThrow(
      /--resume: the config differs from the checkpoint's in callbacks\.0 \(was progress, now undefined\)/,
    );
  });
});

describe("a resumed run's wall time and machine", () => {
  it("adds the checkpoint's carried time to its own; from a checkpoint without it, says its time is the last process's only; a resume on another machine or thread count warns", async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const store = path.join(dir, 'mlruns');
    const ckdir = path.join(dir, 'ck');
    const quiet = () => undefined;
    const cfg = (epochs: number) =>
      toyConfig(store, { trainer: { epochs, batchSize: 16, validationSplit: 0.25, logEvery: 2, checkpoint: { dir: ckdir, everySteps: 3, keep: 2 } } });
    const metric = (runDir: string, key: string) =>
      fs
        .readFileSync(path.join(runDir, 'metrics', key), 'utf8')
        .trim()
        .split('\n')
        .map((l) => Number(l.split(' ')[1]));
    const first = await runExperiment({ registry, config: cfg(2), log: quiet });
    const runDir = path.join(store, first.run.experimentId, first.run.runId);
    // Every checkpoint carries the time so far, growing; the last one (at the run's end) within the run's own time.
    const times = listCheckpoints(ckdir).map((c) => loadCheckpoint(c).elapsedSec!);
    expect(times.every((t, i) => t > 0 && (i === 0 || t >= times[i - 1]!))).toBe(true);
    expect(times.at(-1)!).toBeLessThanOrEqual(first.wallTimeSec);
    expect(fs.existsSync(path.join(runDir, 'tags', 'loom.wall_time'))).toBe(false); // not resumed: nothing to explain

    // Trained on (a larger trainer.epochs): the checkpoint's time plus this process's.
    const from = loadCheckpoint(latestCheckpoint(ckdir)!);
    const heard: string[] = [];
    const more = await runExperiment({ registry, config: cfg(3), resume: ckdir, log: (m: string) => heard.push(m) });
    expect(heard.join('\n')).not.toMatch(/warning/); // the same machine and thread count
    const own = metric(runDir, 'process_wall_time_s').at(-1)!;
    expect(more.wallTimeSec).toBeCloseTo(from.elapsedSec! + own, 6);
    expect(metric(runDir, 'wall_time_s').at(-1)).toBeCloseTo(more.wallTimeSec, 6);
    expect(more.wallTimeSec).toBeGreaterThan(own);
    expect(fs.readFileSync(path.join(runDir, 'tags', 'loom.wall_time'), 'utf8')).toContain(`${from.elapsedSec!.toFixed(1)} s before step ${from.trainer.step}`);
    expect(loadCheckpoint(latestCheckpoint(ckdir)!).elapsedSec!).toBeGreaterThan(from.elapsedSec!);

    // Checkpoints carry the writing process's machine; each resume tags its own (the report lists changes).
    const tagsDir = path.join(runDir, 'tags');
    const tag = (k: string) => fs.readFileSync(path.join(tagsDir, k), 'utf8');
    const runTags = Object.fromEntries(fs.readdirSync(tagsDir).map((k) => [k, tag(k)]));
    expect(from.machine).toEqual(machineTags(runTags));
    expect(from.machine!['backend.threads']).toMatch(/^\d+$/);
    expect(tag(`loom.resumed.${from.trainer.step}.machine`)).toBe(describeMachine(machineTags(runTags)));

    // A checkpoint written before checkpoints carried the time (rewritten here without it, and as if written with
    // another thread count): the time is this process's, and the resume warns that the bits will differ.
    const old = loadCheckpoint(latestCheckpoint(ckdir)!);
    delete old.elapsedSec;
    old.machine = { ...old.machine!, 'backend.threads': '99' };
    fs.rmSync(latestCheckpoint(ckdir)!, { recursive: true });
    new Checkpointer(ckdir, 2).save(old);
    const said: string[] = [];
    const again = await runExperiment({ registry, config: cfg(4), resume: ckdir, log: (m: string) => said.push(m) });
    expect(said.join('\n')).toMatch(
      /warning: this checkpoint was written on .*99 thread\(s\); this process runs on .*\(backend\.threads differ\): the run continues, but its results will not be bit for bit/,
    );
    expect(again.wallTimeSec).toBeCloseTo(metric(runDir, 'process_wall_time_s').at(-1)!, 6);
    expect(fs.readFileSync(path.join(runDir, 'tags', 'loom.wall_time'), 'utf8')).toMatch(/^the last process only \(resumed from step \d+/);
    expect(loadCheckpoint(latestCheckpoint(ckdir)!).elapsedSec).toBeUndefined(); // unknown stays unknown
  });
});

describe('resuming after early stopping', () => {
  it('a run interrupted while being tested, after early stopping ended its training, resumes to the test and trains no further epoch', async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const quiet = () => undefined;
    // minDelta 10: epoch 1 is the best, epoch 2 cannot improve on it, patience 1 stops after epoch 2 of 8.
    const config = (name: string) =>
      toyConfig(path.join(dir, `${name}-mlruns`), {
        trainer: { epochs: 8, batchSize: 16, validationSplit: 0.25, logEvery: 2, checkpoint: { dir: path.join(dir, `${name}-ck`), everySteps: 2 } },
        callbacks: [{ type: 'early-stopping', monitor: 'val_loss', patience: 1, minDelta: 10, restoreBest: true }],
      });
    const weightsOf = (t: { model: { weights(): { variable: { dataSync(): Float32Array } }[] } }) =>
      t.model.weights().map((w) => Array.from(w.variable.dataSync()).join(','));
    let straightWeights: string[] = [];
    const straight = await runExperiment({
      registry,
      config: config('straight'),
      log: quiet,
      evaluate: (trainer) => {
        straightWeights = weightsOf(trainer as never);
        return {};
      },
    });
    expect(straight.history).toHaveLength(2);
    // The same run, ended by an error in its test (as a signal there would end it), then resumed.
    await expect(
      runExperiment({
        registry,
        config: config('cut'),
        log: quiet,
        evaluate: () => {
          throw new Error('interrupted while testing');
        },
      }),
    ).rejects.toThrow(/interrupted while testing/);
    const ck = path.join(dir, 'cut-ck');
    expect(loadCheckpoint(latestCheckpoint(ck)!).trainer.stopped).toBe(true);
    let resumedWeights: string[] = [];
    const resumed = await runExperiment({
      registry,
      config: config('cut'),
      resume: ck,
      log: quiet,
      evaluate: (trainer) => {
        resumedWeights = weightsOf(trainer as never);
        return {};
      },
    });
    expect(resumed.history).toEqual(straight.history);
    expect(resumed.test).toEqual(straight.test);
    expect(resumedWeights).toEqual(straightWeights); // the best epoch's, restored by early stopping
    // Both say which epoch's weights they ended with, in the result and as a tag; the final logs are that epoch's.
    expect([straight.restoredEpoch, resumed.restoredEpoch]).toEqual([1, 1]);
    expect(fs.readFileSync(path.join(straight.run.location, 'tags', 'loom.restored_epoch'), 'utf8')).toBe('1');
    expect(finalEpochLogs(straight.history, straight.restoredEpoch)).toEqual(straight.history[0]);
    // Asked to resume once more, the FINISHED run answers from its record, with the same restored epoch.
    const again = await runExperiment({ registry, config: config('cut'), resume: ck, log: quiet });
    expect([again.restoredEpoch, again.test]).toEqual([1, straight.test]);
    // Cut the same way but resumed with more patience (training further): it trains on from that checkpoint.
    const fail = () => {
      throw new Error('interrupted while testing');
    };
    await expect(runExperiment({ registry, config: config('cut2'), log: quiet, evaluate: fail })).rejects.toThrow(/interrupted/);
    const patient = config('cut2') as unknown as { callbacks: Record<string, unknown>[] };
    patient.callbacks[0]!.patience = 2;
    const further = await runExperiment({ registry, config: patient, resume: path.join(dir, 'cut2-ck'), log: quiet });
    expect(further.history).toHaveLength(3);
    expect(further.history.slice(0, 2)).toEqual(straight.history);
  });

  it('a run stopped by trainer.maxSteps and interrupted while tested stays at its cap, even resumed with more epochs', async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const quiet = () => undefined;
    const ck = path.join(dir, 'cap-ck');
    const config = (epochs: number) =>
      toyConfig(path.join(dir, 'cap-mlruns'), {
        trainer: { epochs, maxSteps: 3, batchSize: 16, validationSplit: 0.25, logEvery: 2, checkpoint: { dir: ck, everySteps: 2 } },
      });
    const fail = () => {
      throw new Error('interrupted while testing');
    };
    await expect(runExperiment({ registry, config: config(2), log: quiet, evaluate: fail })).rejects.toThrow(/interrupted/);
    expect(loadCheckpoint(latestCheckpoint(ck)!).trainer).toMatchObject({ step: 3, stopped: true });
    await runExperiment({ registry, config: config(3), resume: ck, log: quiet });
    expect(loadCheckpoint(latestCheckpoint(ck)!).trainer.step).toBe(3);
  });
});

describe('--resume latest', () => {
  it('skips files and folders under ./checkpoints that are not runs', async () => {
    const registry = (await testRegistry()).register(toyBlobs);
    const root = path.join(dir, 'checkpoints');
    await runExperiment({
      registry,
      config: toyConfig(path.join(dir, 'mlruns'), { trainer: { epochs: 1, batchSize: 32, checkpoint: { dir: path.join(root, 'e1', 'r1') } } }),
      log: () => undefined,
    });
    // What a user or an older loom may leave there: a tokenizer (the crash of issue 18), stray files, empty folders.
    fs.mkdirSync(path.join(root, 'bert'), { recursive: true });
    fs.writeFileSync(path.join(root, 'bert', 'wordpiece-smoke-600.json'), '{}');
    fs.writeFileSync(path.join(root, 'notes.txt'), 'x');
    fs.mkdirSync(path.join(root, 'e1', 'empty'));
    fs.writeFileSync(path.join(root, 'e1', 'stray.json'), '{}');
    fs.mkdirSync(path.join(root, 'e2', 'r2', 'ckpt-000000001-e0b1'), { recursive: true }); // never completed
    fs.writeFileSync(path.join(root, 'e2', 'r2', 'ckpt-000000001-e0b1', 'state.json'), '{"truncat');
    const found = findLatestCheckpoint('toy', root);
    expect(found).toBe(latestCheckpoint(path.join(root, 'e1', 'r1')));
    expect(findLatestCheckpoint('other', root)).toBeNull();
    fs.rmSync(root, { recursive: true });
    fs.writeFileSync(root, 'not a folder');
    expect(findLatestCheckpoint('toy', root)).toBeNull();
  });
});

describe('the CLI', () => {
  it('stops a paper run on SIGINT with exit 130 and a resume command; --resume latest finishes it as if never stopped; --record keeps an unfinished record until then', async () => {
    const flags = [
      'paper',
      'mnist-cnn',
      '--preset',
      'smoke',
      '--seed',
      '3',
      '--set',
      'data.trainLimit=900',
      '--set',
      'data.testLimit=200',
      '--set',
      'trainer.epochs=3',
    ];
    const [ref, work] = [path.join(dir, 'ref'), path.join(dir, 'work')];
    for (const d of [ref, work]) fs.mkdirSync(d);
    const records = path.join(dir, 'records-root');
    const cliRun = (cwd: string, extra: string[]) =>
      spawnSync(process.execPath, [cli, ...flags, ...extra], { encoding: 'utf8', cwd, env: { ...process.env, LOOM_RECORDS_ROOT: records } });
    const results = path.join(records, 'papers', 'mnist-cnn', 'results');
    const reference = cliRun(ref, ['--json', 'out.json']);
    expect(reference.status, reference.stderr).toBe(0);
    // The BERT paper used to keep its tokenizer here, which made --resume latest crash with ENOTDIR.
    fs.mkdirSync(path.join(work, 'checkpoints', 'bert'), { recursive: true });
    fs.writeFileSync(path.join(work, 'checkpoints', 'bert', 'wordpiece-smoke-600.json'), '{}');

    const p = start([cli, ...flags, '--record'], { LOOM_RECORDS_ROOT: records }, work);
    p.on('epoch 1/3 done', () => p.child.kill('SIGINT'));
    const end = await p.ended;
    expect(end.code, end.stderr).toBe(130);
    expect(end.stderr).toMatch(
      /^loom: interrupted by SIGINT after step \d+: checkpoint \S+ \(step \d+\); MLflow run \w+ marked KILLED\nTo continue it, run the same command with --resume latest/,
    );
    expect(end.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const killed = onlyRun(path.join(work, 'mlruns'));
    expect(killed.meta.status).toBe(5);
    // --record: what the stopped run logged so far, as an unfinished record.
    expect(fs.readdirSync(results)).toEqual(['smoke-seed3.unfinished.json']);
    const unfinished = JSON.parse(fs.readFileSync(path.join(results, 'smoke-seed3.unfinished.json'), 'utf8'));
    const loggedSteps = (unfinished.run.metrics.loss as [number, number][]).map(([step]) => step);
    expect(unfinished).toMatchObject({
      paper: 'mnist-cnn',
      preset: 'smoke',
      seed: 3,
      summary: null,
      unfinished: { status: 'KILLED', lastStep: Math.max(...loggedSteps) },
    });
    expect(unfinished.run.metrics.val_accuracy).toHaveLength(1); // epoch 1's
    expect(unfinished.unfinished.reason).toMatch(/SIGINT/);

    const resumed = cliRun(work, ['--resume', 'latest', '--json', 'out.json', '--record']);
    expect(resumed.status, resumed.stderr).toBe(0);
    // The finished run's record replaced the unfinished one.
    expect(fs.readdirSync(results)).toEqual(['smoke-seed3.json']);
    const finished = JSON.parse(fs.readFileSync(path.join(results, 'smoke-seed3.json'), 'utf8'));
    expect(finished.resumedFrom).toHaveLength(1);
    expect(finished.resumedFrom[0]).toBeGreaterThanOrEqual(unfinished.unfinished.lastStep);
    expect(finished.unfinished).toBeUndefined();
    expect(resumed.stdout).toMatch(/loom: resuming run \w+ from \S+ckpt-\S+: step \d+, /);
    const read = (cwd: string) => JSON.parse(fs.readFileSync(path.join(cwd, 'out.json'), 'utf8')) as { metrics: Record<string, number>; mlflowRunDir: string };
    expect(read(work).metrics).toEqual(read(ref).metrics);
    const weights = (cwd: string) => fs.readFileSync(path.join(read(cwd).mlflowRunDir, 'artifacts', 'model', 'weights.bin'));
    expect(weights(work).equals(weights(ref))).toBe(true);
    expect(onlyRun(path.join(work, 'mlruns')).meta.status).toBe(3);

    const again = cliRun(work, ['--resume', 'latest']);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/already FINISHED at step \d+ \(3 epochs\); nothing to resume, nothing changed/);
    expect(onlyRun(path.join(work, 'mlruns')).metric('test_accuracy')).toHaveLength(1);
  }, 240_000);
});
