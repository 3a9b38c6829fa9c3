/**
 * The mlflow-rest tracker against a local server that behaves like MLflow 2.12 (test/mlflow-fake-server.ts):
 * a whole run logs what the file store logs; a server that fails, hangs or disappears mid-run loses nothing and
 * duplicates nothing once the journal is replayed (automatically or by `loom sync`).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import YAML from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, type PluginRegistry } from '../../core';
import { runExperiment, withTrackingUri } from '../../runtime';
import { startFakeMlflow, type Fault, type FakeMlflow, type FakeRun } from '../../test/mlflow-fake-server';
import { testRegistry } from '../../test/harness';
import toyBlobs, { toyConfig } from '../../test/toy-data';
import { MlflowRestTracker, Spool, syncStore, type MlflowRestOptions } from './mlflow-rest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Waits until `cond` holds (the background pump and retries run on timers); fails after 10 s. */
async function until(cond: () => boolean): Promise<void> {
  for (const start = Date.now(); !cond(); await sleep(5)) if (Date.now() - start > 10_000) throw new Error('condition not reached in 10 s');
}

let server: FakeMlflow;
let root: string;
const roots: string[] = [];
const freshRoot = () => {
  roots.push(fs.mkdtempSync(path.join(os.tmpdir(), 'loom-mlflow-rest-')));
  return roots.at(-1)!;
};
beforeEach(async () => {
  server = await startFakeMlflow();
  root = freshRoot();
});
afterEach(async () => {
  await server.close();
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
});

const fast = (over: Partial<MlflowRestOptions> = {}): MlflowRestOptions => ({
  uri: server.url,
  dir: root,
  flushIntervalMs: 5,
  maxQueue: 5000,
  timeoutMs: 100,
  retryIntervalMs: 20,
  ...over,
});
const onlyRun = (s: FakeMlflow): FakeRun => {
  expect(s.runs.size).toBe(1);
  return [...s.runs.values()][0]!;
};
/** Every request succeeded, except the lookup of the experiment before it was created. */
const allOk = (s: FakeMlflow) => s.log.every((r) => r.status === 200 || (r.status === 404 && r.path.endsWith('get-by-name')));
const metricLines = (run: FakeRun) => run.metrics.map((m) => `${m.key} ${m.step} ${m.timestamp} ${m.value}`).sort();
const spoolDirs = (dir: string): string[] =>
  fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((p) => path.basename(p) === 'loom-sync')
    .map((p) => path.dirname(path.join(dir, p)));

/** Logs a small run: params, tags, `steps` steps of two metrics, a data set and an artifact. Returns what it logged. */
async function logRun(tracker: MlflowRestTracker, steps: number, between: (step: number) => Promise<void> = async () => undefined) {
  const info = await tracker.startRun({ experiment: 'outage', runName: 'flaky', tags: { seed: '3' } });
  tracker.logParams({ lr: 0.1, 'model.units': 16, optimizer: 'adam' });
  tracker.logDataset({ name: 'toy:train', digest: 'abcd1234', sourceType: 'loom', source: '{}', context: 'train' });
  const expected: string[] = [];
  let lastProgress: string | undefined;
  for (let s = 0; s < steps; s++) {
    const values = { loss: 1 / (s + 1), 'val/acc': s / steps };
    tracker.logMetrics(values, s, 1_700_000_000_000 + s);
    for (const [k, v] of Object.entries(values)) expected.push(`${k} ${s} ${1_700_000_000_000 + s} ${v}`);
    if (s % 5 === 4) tracker.setTags({ progress: (lastProgress = String(s)) });
    await between(s);
  }
  const file = path.join(root, 'note.txt');
  fs.writeFileSync(file, `run with ${steps} steps`);
  await tracker.logArtifact(file, 'notes/note.txt');
  await tracker.endRun('FINISHED');
  return { info, expected: expected.sort(), lastProgress, artifact: `run with ${steps} steps` };
}

function expectComplete(run: FakeRun, logged: Awaited<ReturnType<typeof logRun>>) {
  expect(metricLines(run)).toEqual(logged.expected);
  expect(Object.fromEntries(run.params)).toEqual({ lr: '0.1', 'model.units': '16', optimizer: 'adam' });
  expect(run.tags.get('progress')).toBe(logged.lastProgress);
  expect(run.tags.get('seed')).toBe('3');
  expect(run.tags.get('mlflow.runName')).toBe('flaky');
  expect(run.inputs.map((i) => i.dataset.name)).toEqual(['toy:train']);
  expect(run.info.status).toBe('FINISHED');
  expect(run.info.end_time).toBeGreaterThanOrEqual(run.info.start_time);
  expect(server.artifacts.get(`${run.info.experiment_id}/${run.info.run_id}/artifacts/notes/note.txt`)?.toString()).toBe(logged.artifact);
}

describe('mlflow-rest tracker', () => {
  let registry: PluginRegistry;
  beforeEach(async () => {
    registry = (await testRegistry()).register(toyBlobs);
  });

  it('is chosen by an http(s) tracking URI and logs a whole run as the file store does', async () => {
    const fileRoot = path.join(root, 'file');
    const restRoot = path.join(root, 'rest');
    const viaFile = await runExperiment({ registry, config: toyConfig(fileRoot), runName: 'toy', log: () => undefined });
    const viaRest = await runExperiment({ registry, config: toyConfig(restRoot), runName: 'toy', trackingUri: server.url, log: () => undefined });

    const run = onlyRun(server);
    expect(viaRest.run).toEqual({
      runId: run.info.run_id,
      experimentId: run.info.experiment_id,
      location: `${server.url}/#/experiments/${run.info.experiment_id}/runs/${run.info.run_id}`,
    });
    expect(BigInt(run.info.experiment_id)).toBeGreaterThan(2n ** 53n);
    expect(server.experiments.get(run.info.experiment_id)!.name).toBe('toy');
    expect(run.info).toMatchObject({ run_name: 'toy', status: 'FINISHED' });
    expect(allOk(server)).toBe(true);
    expect(spoolDirs(root)).toEqual([]);

    // Metrics: the same keys, steps and values as the file store's run, each exactly once (seeded, same backend).
    const fileRun = path.join(fileRoot, viaFile.run.experimentId, viaFile.run.runId);
    const fromFiles: string[] = [];
    for (const key of fs.readdirSync(path.join(fileRun, 'metrics'))) {
      if (key === 'wall_time_s') continue;
      for (const line of fs
        .readFileSync(path.join(fileRun, 'metrics', key), 'utf8')
        .trim()
        .split('\n')) {
        const [, value, step] = line.split(' ');
        fromFiles.push(`${key} ${step} ${Number(value)}`);
      }
    }
    const fromServer = run.metrics.filter((m) => m.key !== 'wall_time_s').map((m) => `${m.key} ${m.step} ${m.value}`);
    expect(fromServer.sort()).toEqual(fromFiles.sort());
    expect(run.metrics.filter((m) => m.key === 'wall_time_s')).toHaveLength(1);

    const fileParams = Object.fromEntries(
      fs.readdirSync(path.join(fileRun, 'params')).map((k) => [k, fs.readFileSync(path.join(fileRun, 'params', k), 'utf8')]),
    );
    delete fileParams['trackers.0.root'];
    const serverParams = Object.fromEntries(run.params);
    delete serverParams['trackers.0.root'];
    expect(serverParams).toEqual(fileParams);
    for (const k of ['mlflow.runName', 'backend', 'seed', 'mlflow.user', 'git.commit'])
      expect(run.tags.get(k), k).toBe(fs.readFileSync(path.join(fileRun, 'tags', k), 'utf8'));

    expect(run.inputs.map((i) => [i.dataset.name, i.tags[0]!.value])).toEqual([
      ['toy-blobs:train:train', 'train'],
      ['toy-blobs:train:validation', 'validation'],
      ['toy-blobs:test', 'test'],
    ]);
    for (const i of run.inputs) expect(i.dataset.digest).toMatch(/^[0-9a-f]{8}$/);
    expect(run.inputs[0]!.dataset.digest).not.toBe(run.inputs[1]!.dataset.digest);

    const art = (p: string) => server.artifacts.get(`${run.info.experiment_id}/${run.info.run_id}/artifacts/${p}`);
    for (const p of ['model/weights.bin', 'model/model.json']) expect(art(p)?.equals(fs.readFileSync(path.join(fileRun, 'artifacts', p))), p).toBe(true);
    expect(JSON.parse(art('summary.json')!.toString())).toMatchObject({ test: viaRest.test });
    expect(JSON.parse(art('config.json')!.toString())).toMatchObject({ experiment: 'toy' });
  });

  it('loses and duplicates nothing whatever the server does mid-run (503, 500, hangs, answers lost after applying)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 3, max: 40 }),
        fc.array(fc.constantFrom<Fault>(undefined, undefined, 503, 500, 'drop-after-apply', 'drop-after-apply', 'hang'), { minLength: 1, maxLength: 25 }),
        fc.integer({ min: 1, max: 8 }),
        async (steps, faults, pauseEvery) => {
          await server.close();
          server = await startFakeMlflow();
          root = freshRoot();
          // Run creation is spared: a run created without its answer arriving would be a second, empty run.
          let i = 0;
          server.fault = ({ path: p }) => (/experiments|runs\/create/.test(p) ? undefined : faults[i++]);
          const tracker = new MlflowRestTracker(fast(), () => undefined);
          const logged = await logRun(tracker, steps, (s) => (s % pauseEvery === 0 ? sleep(2) : Promise.resolve()));
          // If the server still failed at the end of the run, `loom sync` uploads the rest.
          server.fault = null;
          await syncStore({ dir: root, log: () => undefined });
          expectComplete(onlyRun(server), logged);
          for (const dir of spoolDirs(root)) expect(Spool.open(dir)!.pending()).toEqual([]);
        },
      ),
      {
        numRuns: 15,
        // Always covered: an answer lost after the server applied a metric batch, online (the third request,
        // after tags+params and the data set) and during a replay (after a 503 sent the run to the spool).
        examples: [
          [10, [undefined, undefined, 'drop-after-apply'], 1],
          [10, [503, 'drop-after-apply'], 1],
          [10, [undefined, undefined, 503, 'drop-after-apply', 'drop-after-apply'], 2],
        ],
      },
    );
  });

  it('keeps each of 10,000 logged values exactly once while the server is killed and restarted during the run', async () => {
    // 12 cases. Each kill cuts every open connection (requests in flight, answers not yet sent: the fake server
    // applies a request and answers `delay` ms later, so a kill in between loses an applied request's answer); the
    // server comes back after `downMs` on the same port with its data, as a restarted MLflow with a database does.
    const N = 10_000;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ at: fc.integer({ min: 0, max: N - 1 }), downMs: fc.integer({ min: 0, max: 60 }) }), { minLength: 2, maxLength: 6 }),
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 5, max: 200 }),
        async (kills, delay, yieldEvery) => {
          await server.close();
          server = await startFakeMlflow();
          root = freshRoot();
          server.answerDelayMs = () => Math.floor(Math.random() * (delay + 1));
          let down = false;
          let back: Promise<void> = Promise.resolve();
          const kill = async (downMs: number) => {
            if (down) return;
            down = true;
            await server.close();
            back = sleep(downMs)
              .then(() => server.restart())
              .then(() => void (down = false));
          };
          const tracker = new MlflowRestTracker(fast({ timeoutMs: 200 }), () => undefined);
          await tracker.startRun({ experiment: 'kills', runName: 'r' });
          const killsAt = new Map<number, number[]>();
          for (const k of kills) killsAt.set(k.at, [...(killsAt.get(k.at) ?? []), k.downMs]);
          for (let i = 0; i < N; i++) {
            tracker.logMetrics({ v: i }, i, 1_700_000_000_000 + i);
            for (const downMs of killsAt.get(i) ?? []) await kill(downMs);
            // Training yields to the event loop between steps: the pump, the retries and the restarts run meanwhile.
            if (i % yieldEvery === 0) await new Promise<void>((r) => setImmediate(r));
          }
          await tracker.endRun('FINISHED');
          await back;
          // If the server was down when the run ended, `loom sync` uploads the rest.
          await syncStore({ dir: root, log: () => undefined });
          const run = onlyRun(server);
          const values = run.metrics.filter((m) => m.key === 'v');
          expect(values).toHaveLength(N);
          const steps = values.map((m) => m.step).sort((a, b) => a - b);
          expect(steps.every((s, i) => s === i)).toBe(true);
          expect(values.every((m) => m.value === m.step && m.timestamp === 1_700_000_000_000 + m.step)).toBe(true);
          expect(run.info.status).toBe('FINISHED');
          for (const dir of spoolDirs(root)) expect(Spool.open(dir)!.pending()).toEqual([]);
        },
      ),
      { numRuns: 12 },
    );
  });

  it('spools to the local file store while the server is gone and replays when it comes back on its port', async () => {
    const lines: string[] = [];
    const tracker = new MlflowRestTracker(fast(), (l) => lines.push(l));
    const logged = await logRun(tracker, 30, async (s) => {
      if (s === 9) {
        await tracker.flush();
        await server.close();
      }
      if (s === 19) {
        await until(() => tracker.state === 'spooling');
        await server.restart();
        await until(() => tracker.state === 'online');
      }
    });
    const run = onlyRun(server);
    expectComplete(run, logged);
    // The local copy holds the outage under the server's run id, in MLflow's file-store layout.
    const [local] = spoolDirs(root);
    expect(path.basename(local!)).toBe(run.info.run_id);
    expect(YAML.parse(fs.readFileSync(path.join(local!, 'meta.yaml'), 'utf8'))).toMatchObject({ run_id: run.info.run_id, run_name: 'flaky' });
    const steps = fs
      .readFileSync(path.join(local!, 'metrics', 'loss'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => Number(l.split(' ')[2]));
    expect(steps).toContain(15);
    expect(steps).not.toContain(5);
    expect(lines.some((l) => /logging to .* until it answers again/.test(l))).toBe(true);
    expect(lines.some((l) => /answers again/.test(l))).toBe(true);
  });

  it('spools instead of growing its queue past the bound, and packs the replay into few requests', async () => {
    const tracker = new MlflowRestTracker(fast({ maxQueue: 10, flushIntervalMs: 10_000 }), () => undefined);
    await tracker.startRun({ experiment: 'e', runName: 'r' });
    for (let s = 0; s < 300; s++) tracker.logMetrics({ loss: s }, s, 1000 + s);
    expect(tracker.state).toBe('spooling');
    await tracker.endRun('KILLED');
    const run = onlyRun(server);
    expect(run.metrics.map((m) => m.step)).toEqual(Array.from({ length: 300 }, (_, s) => s));
    expect(run.info.status).toBe('KILLED');
    expect(server.log.filter((r) => r.path.endsWith('log-batch')).length).toBeLessThanOrEqual(2);
  });

  it('keeps a run that starts while the server is down, and `loom sync` uploads it once', async () => {
    await server.close();
    const lines: string[] = [];
    const tracker = new MlflowRestTracker(fast(), (l) => lines.push(l));
    const logged = await logRun(tracker, 12);
    expect(logged.info.location).toBe(spoolDirs(root)[0]);
    expect(lines.join('\n')).toMatch(/still unreachable.*loom sync --dir/s);
    await server.restart();
    expect(server.runs.size).toBe(0);

    const loom = (...args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, [path.join(repo, 'cli/bin.mjs'), ...args], { cwd: repo, env: { ...process.env, MLFLOW_TRACKING_URI: '' } });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        child.on('close', (code) => resolve({ code, out }));
      });
    const first = await loom('sync', '--dir', root, '--tracking-uri', server.url);
    expect(first.code, first.out).toBe(0);
    expect(first.out).toMatch(/1 uploaded, 0 still pending/);
    const run = onlyRun(server);
    expectComplete(run, logged);
    expect(run.tags.get('loom.local_run_id')).toBe(path.basename(logged.info.location));

    // A second sync finds nothing to do.
    expect(await syncStore({ dir: root, log: () => undefined })).toMatchObject([{ outcome: 'up-to-date', sent: 0 }]);
    expect(metricLines(onlyRun(server))).toEqual(logged.expected);
  });

  it('keeps state.json covering every value the server holds at each request of a replay (a crash anywhere resends nothing twice)', async () => {
    await server.close();
    const tracker = new MlflowRestTracker(fast({ retryIntervalMs: 1e9 }), () => undefined);
    await tracker.startRun({ experiment: 'e', runName: 'r' });
    for (let s = 0; s < 2500; s++) tracker.logMetrics({ loss: s }, s, 1000 + s);
    await tracker.endRun('FINISHED');
    await server.restart();
    const [dir] = spoolDirs(root);
    const seqOfStep = new Map<number, number>();
    for (const line of fs
      .readFileSync(path.join(dir!, 'loom-sync', 'journal.jsonl'), 'utf8')
      .trim()
      .split('\n')) {
      const e = JSON.parse(line) as { seq: number; op: string; metrics?: { step: number }[] };
      for (const m of e.metrics ?? []) seqOfStep.set(m.step, e.seq);
    }
    let checked = 0;
    server.fault = ({ path: p }) => {
      if (!p.endsWith('log-batch') && !p.endsWith('runs/update')) return undefined;
      // What a process killed right now would find on disk: every value already applied must be acknowledged or
      // marked as sent in doubt (then checked against the server's history before a resend).
      const state = JSON.parse(fs.readFileSync(path.join(dir!, 'loom-sync', 'state.json'), 'utf8')) as {
        acked: number;
        sending: { from: number; to: number } | null;
      };
      for (const m of [...server.runs.values()][0]?.metrics ?? []) {
        const seq = seqOfStep.get(m.step)!;
        expect(seq <= state.acked || (state.sending !== null && seq >= state.sending.from && seq <= state.sending.to), `step ${m.step}`).toBe(true);
      }
      checked++;
      return undefined;
    };
    expect(await syncStore({ dir: root, log: () => undefined })).toMatchObject([{ outcome: 'synced' }]);
    expect(checked).toBeGreaterThanOrEqual(4);
    expect(onlyRun(server).metrics.map((m) => m.step)).toEqual(Array.from({ length: 2500 }, (_, s) => s));
    expect(Spool.open(dir!)!.pending()).toEqual([]);
    expect(JSON.parse(fs.readFileSync(path.join(dir!, 'loom-sync', 'state.json'), 'utf8'))).toMatchObject({ sending: null });
  });

  it('refuses a changed param at once, as MLflow would', async () => {
    const tracker = new MlflowRestTracker(fast(), () => undefined);
    await tracker.startRun({ experiment: 'e', runName: 'r' });
    tracker.logParams({ lr: 0.1 });
    tracker.logParams({ lr: 0.1 });
    expect(() => tracker.logParams({ lr: 0.2 })).toThrow(ConfigError);
    await tracker.endRun('FINISHED');
    expect(onlyRun(server).params.get('lr')).toBe('0.1');
    expect(allOk(server)).toBe(true);
  });

  it('replays a journal cut short by a crash, and leaves a journal alone while its process lives', async () => {
    await server.close();
    // This tracker never retries by itself: it stands for a process that is killed.
    const tracker = new MlflowRestTracker(fast({ retryIntervalMs: 1e9 }), () => undefined);
    await tracker.startRun({ experiment: 'e', runName: 'r' });
    for (let s = 0; s < 5; s++) tracker.logMetrics({ loss: s }, s, 1000 + s);
    const [dir] = spoolDirs(root);
    // A live process holds the journal: sync leaves it alone.
    await server.restart();
    expect((await syncStore({ dir: root, log: () => undefined }))[0]).toMatchObject({ outcome: 'skipped' });
    // Simulate a crash: the lock of a dead process, and a half-written last line.
    fs.writeFileSync(path.join(dir!, 'loom-sync', 'lock'), '999999999');
    fs.appendFileSync(path.join(dir!, 'loom-sync', 'journal.jsonl'), '{"seq":99,"op":"batch","metr');
    const [result] = await syncStore({ dir: root, log: () => undefined });
    expect(result).toMatchObject({ outcome: 'synced' });
    expect(onlyRun(server).metrics.map((m) => m.step)).toEqual([0, 1, 2, 3, 4]);
  });

  it('is selected at the spec level: http(s) URIs turn mlflow-file into mlflow-rest, others change nothing', () => {
    const specs = ['mlflow-file', 'console', { type: 'mlflow-file', root: 'out' }];
    expect(withTrackingUri(specs, 'https://mlflow.example:5000')).toEqual([
      { type: 'mlflow-rest', uri: 'https://mlflow.example:5000' },
      'console',
      { type: 'mlflow-rest', uri: 'https://mlflow.example:5000', dir: 'out' },
    ]);
    expect(withTrackingUri(specs, './mlruns')).toBe(specs);
    expect(withTrackingUri(specs, undefined)).toBe(specs);
    expect(() => registry.create('tracker', { type: 'mlflow-rest', uri: 'ftp://x' })).toThrow(/uri.*http\(s\) URL/);
  });
});
