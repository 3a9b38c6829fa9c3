/**
 * Run records: what a reproduction measured, as one small JSON file committed beside the paper
 * (`papers/<name>/results/<preset>-seed<N>.json`), so that a fresh clone shows the runs behind the README's
 * numbers without their MLflow store. A record holds the run's `--json` summary, its config, commit, machine
 * (CPU model, SIMD level, threads), wall time, whether and from which step it was resumed, and every logged value
 * with its step. `loom report` reads records beside ./mlruns; `loom record` writes one from a run in a store.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StoredRun } from '../core/mlflow-store';

// The store's reader lives with its layout (core/mlflow-store.ts); `loom report`, `loom record` and the replay test
// take it from here with the records.
export { readStore, type StoredRun } from '../core/mlflow-store';

/** The committed record of a run. */
export interface RunRecordFile {
  format: 'loom-run-record/1';
  paper: string;
  preset: string;
  variant?: string;
  /** A few-shot grid run's labelled subset as the grid names it (tag `few_shot.size`: a number, or 'all'). */
  subset?: string;
  seed: number;
  commit: string;
  /** `cpuId`: vendor, family, model and vector extensions (runtime/environment.ts cpuIdentity); absent in records of runs before it was tagged. */
  machine: { cpu: string; cpuId?: string; cores: string; simd: string; threads: string; backend: string };
  /**
   * The run's `wall_time_s`: for a resumed run, summed over its processes up to each checkpoint resumed from where
   * its checkpoints carried the time (tag `loom.wall_time`; since 2026-12-02), else the last process's only.
   */
  wallTimeSec: number | null;
  /** The checkpoint step this run was resumed from, each time it was (empty: never interrupted). */
  resumedFrom: number[];
  /** The `--json` summary (artifacts/summary.json of the run), and the config it ran. */
  summary: unknown;
  config: unknown;
  run: StoredRun;
  /**
   * Only on the record of a run that has not finished (`loom record --unfinished`, or `--record` on a run stopped by a
   * signal): its status, the last step it logged and why it ended (the tracker's status reason), so that the numbers
   * quoted from a run still training (or lost with its machine) have a committed source. Written as
   * `<name>.unfinished.json`; the finished run's record replaces it.
   */
  unfinished?: { status: string; lastStep: number; reason?: string };
}

const readJson = (file: string): unknown => (fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : null);

/**
 * The steps a run was resumed from: its `loom.resumed.<step>` tags, and the step its final status reason names
 * ("finished after resuming from step N"), ascending (a step may appear twice).
 */
export function resumedSteps(tags: Record<string, string>): number[] {
  return [
    ...Object.keys(tags)
      .flatMap((k) => /^loom\.resumed\.(\d+)$/.exec(k)?.[1] ?? [])
      .map(Number),
    ...[...(tags['loom.status_reason'] ?? '').matchAll(/resuming from step (\d+)/g)].map((m) => Number(m[1])),
  ].sort((a, b) => a - b);
}

/**
 * The record of a run read from a store. Only FINISHED paper runs make records, unless `unfinished` is set: then a
 * KILLED, FAILED or RUNNING run makes one too, marked `unfinished` (its summary and config are null: a run saves them
 * when it finishes; its preset, seed, commit and tags say how it ran).
 */
export function recordOf(run: StoredRun, opts: { unfinished?: boolean } = {}): RunRecordFile {
  const t = run.tags;
  if (!t.paper) throw new Error(`run ${run.runId} is not a paper run (no "paper" tag)`);
  if (run.status !== 'FINISHED' && !opts.unfinished) {
    throw new Error(`run ${run.runId} is ${run.status}, not FINISHED: only finished runs make records (--unfinished records it as unfinished)`);
  }
  // "loom native (avx512, 1 threads): ..." on native-cpu; other backends say less.
  const native = /\((\w[\w-]*), (\d+) threads?\)/.exec(t['backend.kernels'] ?? '');
  // Each resume tags `loom.resumed.<step>`; the status reason of a run that finished after one says so too.
  const resumed = resumedSteps(t);
  const wall = run.metrics.wall_time_s?.at(-1)?.[1] ?? null;
  const { dir, ...stored } = run;
  return {
    format: 'loom-run-record/1',
    paper: t.paper,
    preset: t.preset ?? '?',
    ...(t.variant ? { variant: t.variant } : {}),
    ...(t['few_shot.size'] ? { subset: t['few_shot.size'] } : {}),
    seed: Number(t.seed ?? NaN),
    commit: t['git.commit'] ?? '?',
    machine: {
      cpu: t['cpu.model'] ?? '?',
      ...(t['cpu.id'] ? { cpuId: t['cpu.id'] } : {}),
      cores: t['cpu.count'] ?? '?',
      simd: native?.[1] ?? 'n/a',
      threads: native?.[2] ?? 'n/a',
      backend: t.backend ?? '?',
    },
    wallTimeSec: wall,
    resumedFrom: [...new Set(resumed)],
    summary: dir ? readJson(path.join(dir, 'artifacts', 'summary.json')) : null,
    config: dir ? readJson(path.join(dir, 'artifacts', 'config.json')) : null,
    run: stored,
    ...(run.status === 'FINISHED'
      ? {}
      : { unfinished: { status: run.status, lastStep: lastStep(run), ...(t['loom.status_reason'] ? { reason: t['loom.status_reason'] } : {}) } }),
  };
}

/** The largest step of any value the run logged (0 before its first). */
export function lastStep(run: StoredRun): number {
  let step = 0;
  for (const points of Object.values(run.metrics)) for (const [s] of points) step = Math.max(step, s);
  return step;
}

/**
 * Where a record is committed: papers/<paper>/results/<preset>[-<variant>][-n<subset>]-seed<N>[.unfinished].json under
 * `repo` (a few-shot grid's runs differ by their subset too: without it in the name, each size's record overwrote the
 * last).
 */
export function recordPath(repo: string, r: Pick<RunRecordFile, 'paper' | 'preset' | 'variant' | 'subset' | 'seed' | 'unfinished'>): string {
  const name = `${r.preset}${r.variant ? `-${r.variant}` : ''}${r.subset ? `-n${r.subset}` : ''}-seed${r.seed}${r.unfinished ? '.unfinished' : ''}.json`;
  return path.join(repo, 'papers', r.paper, 'results', name);
}

/**
 * Writes `record` to `file`. A finished run's record removes the unfinished record of the same run beside it (written
 * while it trained), which it replaces.
 */
export function writeRecord(file: string, record: RunRecordFile): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(record)}\n`);
  if (record.unfinished) return;
  const earlier = file.replace(/\.json$/, '.unfinished.json');
  const stale = readJson(earlier) as RunRecordFile | null;
  if (stale?.run?.runId === record.run.runId) fs.rmSync(earlier);
}

/** Every record under `papers/*\/results/` of `repo`. */
export function readRecords(repo: string): RunRecordFile[] {
  const papersDir = path.join(repo, 'papers');
  if (!fs.existsSync(papersDir)) return [];
  const out: RunRecordFile[] = [];
  for (const paper of fs.readdirSync(papersDir)) {
    const dir = path.join(papersDir, paper, 'results');
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) continue;
    for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.json'))) {
      const r = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as RunRecordFile;
      if (r.format === 'loom-run-record/1') out.push(r);
    }
  }
  return out;
}
