/**
 * Run records: what a reproduction measured, as one small JSON file committed beside the paper
 * (`papers/<name>/results/<preset>-seed<N>.json`), so that a fresh clone shows the runs behind the README's
 * numbers without their MLflow store. A record holds the run's `--json` summary, its config, commit, machine
 * (CPU model, SIMD level, threads), wall time, whether and from which step it was resumed, and every logged value
 * with its step. `loom report` reads records beside ./mlruns; `loom record` writes one from a run in a store.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import YAML from 'yaml';

/** One run as read from an MLflow file store (or a record). */
export interface StoredRun {
  runId: string;
  runName: string;
  status: string;
  start: number;
  end: number | null;
  tags: Record<string, string>;
  /** Every logged value: key -> [step, value][] in logging order. */
  metrics: Record<string, [number, number][]>;
  /** The run's directory in the store (absent for a run read from a record). */
  dir?: string;
}

/** The committed record of a run. */
export interface RunRecordFile {
  format: 'loom-run-record/1';
  paper: string;
  preset: string;
  variant?: string;
  seed: number;
  commit: string;
  machine: { cpu: string; cores: string; simd: string; threads: string; backend: string };
  wallTimeSec: number | null;
  /** The checkpoint step this run was resumed from, each time it was (empty: never interrupted). */
  resumedFrom: number[];
  /** The `--json` summary (artifacts/summary.json of the run), and the config it ran. */
  summary: unknown;
  config: unknown;
  run: StoredRun;
}

export const STATUS: Record<number, string> = { 1: 'RUNNING', 2: 'SCHEDULED', 3: 'FINISHED', 4: 'FAILED', 5: 'KILLED' };

function readTree(dir: string, prefix = ''): [string, string][] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? readTree(path.join(dir, e.name), `${prefix}${e.name}/`) : [[`${prefix}${e.name}`, fs.readFileSync(path.join(dir, e.name), 'utf8')] as [string, string]],
  );
}

/** Every run of every experiment in an MLflow file store, newest first. */
export function readStore(root: string): StoredRun[] {
  if (!fs.existsSync(root)) return [];
  const runs: StoredRun[] = [];
  for (const exp of fs.readdirSync(root)) {
    const expDir = path.join(root, exp);
    if (!fs.existsSync(path.join(expDir, 'meta.yaml'))) continue;
    for (const run of fs.readdirSync(expDir)) {
      const metaFile = path.join(expDir, run, 'meta.yaml');
      if (!fs.existsSync(metaFile)) continue;
      const meta = YAML.parse(fs.readFileSync(metaFile, 'utf8')) as { run_id: string; run_name: string; status: number; start_time: number; end_time: number | null };
      const metrics: StoredRun['metrics'] = {};
      for (const [key, text] of readTree(path.join(expDir, run, 'metrics'))) {
        metrics[key] = text.trimEnd().split('\n').filter(Boolean).map((l) => {
          const [, v, s] = l.split(' ');
          return [Number(s), v === 'nan' ? NaN : Number(v)] as [number, number];
        });
      }
      runs.push({
        runId: meta.run_id, runName: meta.run_name, status: STATUS[meta.status] ?? String(meta.status), start: meta.start_time, end: meta.end_time,
        tags: Object.fromEntries(readTree(path.join(expDir, run, 'tags'))), metrics, dir: path.join(expDir, run),
      });
    }
  }
  return runs.sort((a, b) => b.start - a.start);
}

const readJson = (file: string): unknown => (fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, 'utf8')) : null);

/** The record of a run read from a store. Only FINISHED paper runs make records. */
export function recordOf(run: StoredRun): RunRecordFile {
  const t = run.tags;
  if (!t.paper) throw new Error(`run ${run.runId} is not a paper run (no "paper" tag)`);
  if (run.status !== 'FINISHED') throw new Error(`run ${run.runId} is ${run.status}, not FINISHED: only finished runs make records`);
  // "loom native (avx512, 1 threads): ..." on native-cpu; other backends say less.
  const native = /\((\w[\w-]*), (\d+) threads?\)/.exec(t['backend.kernels'] ?? '');
  // Each resume tags `loom.resumed.<step>`; the status reason of a run that finished after one says so too.
  const resumed = [
    ...Object.keys(t).flatMap((k) => /^loom\.resumed\.(\d+)$/.exec(k)?.[1] ?? []).map(Number),
    ...[...(t['loom.status_reason'] ?? '').matchAll(/resuming from step (\d+)/g)].map((m) => Number(m[1])),
  ].sort((a, b) => a - b);
  const wall = run.metrics.wall_time_s?.at(-1)?.[1] ?? null;
  const { dir, ...stored } = run;
  return {
    format: 'loom-run-record/1', paper: t.paper, preset: t.preset ?? '?', ...(t.variant ? { variant: t.variant } : {}), seed: Number(t.seed ?? NaN),
    commit: t['git.commit'] ?? '?',
    machine: { cpu: t['cpu.model'] ?? '?', cores: t['cpu.count'] ?? '?', simd: native?.[1] ?? 'n/a', threads: native?.[2] ?? 'n/a', backend: t.backend ?? '?' },
    wallTimeSec: wall, resumedFrom: [...new Set(resumed)],
    summary: dir ? readJson(path.join(dir, 'artifacts', 'summary.json')) : null,
    config: dir ? readJson(path.join(dir, 'artifacts', 'config.json')) : null,
    run: stored,
  };
}

/** Where a record is committed: papers/<paper>/results/<preset>[-<variant>]-seed<N>.json under `repo`. */
export function recordPath(repo: string, r: Pick<RunRecordFile, 'paper' | 'preset' | 'variant' | 'seed'>): string {
  return path.join(repo, 'papers', r.paper, 'results', `${r.preset}${r.variant ? `-${r.variant}` : ''}-seed${r.seed}.json`);
}

export function writeRecord(file: string, record: RunRecordFile): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(record) + '\n');
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
