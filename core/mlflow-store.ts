/**
 * MLflow's file-store layout, owned here: the `./mlruns` folder that `mlflow ui --backend-store-uri ./mlruns` reads,
 * which the mlflow-file tracker writes and `loom report`, `loom record` and `--predict` read.
 *
 *     <root>/<experiment id>/meta.yaml              the experiment: name, lifecycle_stage, artifact_location, times
 *     <root>/<experiment id>/<run id>/meta.yaml     the run: run_id, run_name, status (a code), start_time, end_time, ...
 *     <run>/metrics/<key>                           one line per value: "<ms since epoch> <value> <step>"
 *     <run>/params/<key>, <run>/tags/<key>          the value is the file's whole content
 *     <run>/artifacts/                              files logged as artifacts
 *
 * A key may hold `/`, which makes a subfolder. Experiment ids are strings (MLflow's can exceed 2^53); metric values
 * nan, inf and -inf are written as those words.
 */
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import YAML from 'yaml';
import { writeFileAtomic } from './fs-atomic';
import type { RunStatus } from './interfaces';

/** MLflow's integer run status codes (mlflow.entities.RunStatus). */
export const MLFLOW_STATUS: Record<RunStatus, number> = { RUNNING: 1, FINISHED: 3, FAILED: 4, KILLED: 5 };

/** A status code's name (2, SCHEDULED, is MLflow's too; an unknown code is shown as the number). */
export function statusName(code: number): string {
  return ({ 1: 'RUNNING', 2: 'SCHEDULED', 3: 'FINISHED', 4: 'FAILED', 5: 'KILLED' } as Record<number, string>)[code] ?? String(code);
}

/** Characters MLflow accepts in metric, param and tag keys; others become `_`. A `/` makes a subfolder. */
export const sanitizeKey = (k: string): string => k.replace(/[^\w\-. /]/g, '_');

/** A run's meta.yaml, as MLflow writes it. */
export interface RunMeta {
  artifact_uri: string;
  end_time: number | null;
  entry_point_name: string;
  experiment_id: string;
  lifecycle_stage: string;
  run_id: string;
  run_name: string;
  run_uuid: string;
  source_name: string;
  source_type: number;
  source_version: string;
  start_time: number;
  status: number;
  tags: unknown[];
  user_id: string;
}

/** One run as read from an MLflow file store (or a run record, cli/records.ts). */
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

const readYaml = <T>(file: string): T => YAML.parse(fs.readFileSync(file, 'utf8')) as T;

/** The folder of run `runId` of experiment `experimentId`. */
export function runDirectory(root: string, experimentId: string, runId: string): string {
  return path.join(root, experimentId, runId);
}

/** The experiments of a store: folders with a meta.yaml (none when the store does not exist). */
export function listExperiments(root: string): { id: string; dir: string }[] {
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .map((id) => ({ id, dir: path.join(root, id) }))
    .filter((e) => fs.existsSync(path.join(e.dir, 'meta.yaml')));
}

/** The id of the active experiment named `name`, if there is one. */
export function findExperiment(root: string, name: string): string | undefined {
  for (const { id, dir } of listExperiments(root)) {
    const m = readYaml<{ name?: string; lifecycle_stage?: string } | null>(path.join(dir, 'meta.yaml'));
    if (m?.name === name && m.lifecycle_stage !== 'deleted') return id;
  }
  return undefined;
}

function writeExperiment(root: string, id: string, name: string): void {
  const now = Date.now();
  const meta = {
    artifact_location: pathToFileURL(path.join(root, id)).href,
    creation_time: now,
    experiment_id: id,
    last_update_time: now,
    lifecycle_stage: 'active',
    name,
  };
  writeFileAtomic(path.join(root, id, 'meta.yaml'), YAML.stringify(meta));
}

/** Creates MLflow's experiment 0, "Default", unless the store has it (MLflow's UI expects it). */
export function ensureDefaultExperiment(root: string): void {
  if (!fs.existsSync(path.join(root, '0', 'meta.yaml'))) writeExperiment(root, '0', 'Default');
}

/** Creates an experiment and returns its id: a large random integer, as MLflow's file store draws them. */
export function createExperiment(root: string, name: string): string {
  let id: string;
  do id = String(randomInt(1, 2 ** 47)) + String(randomInt(0, 1000)).padStart(3, '0');
  while (fs.existsSync(path.join(root, id)));
  writeExperiment(root, id, name);
  return id;
}

/** The meta.yaml of a new RUNNING run whose folder is `dir`. */
export function newRunMeta(dir: string, experimentId: string, runId: string, runName: string, startTime: number): RunMeta {
  return {
    artifact_uri: pathToFileURL(path.join(dir, 'artifacts')).href,
    end_time: null,
    entry_point_name: '',
    experiment_id: experimentId,
    lifecycle_stage: 'active',
    run_id: runId,
    run_name: runName,
    run_uuid: runId,
    source_name: '',
    source_type: 4,
    source_version: '',
    start_time: startTime,
    status: MLFLOW_STATUS.RUNNING,
    tags: [],
    user_id: os.userInfo().username,
  };
}

/** Creates a run's folders (metrics, params, tags, artifacts). */
export function createRunFolders(dir: string): void {
  for (const d of ['metrics', 'params', 'tags', 'artifacts']) fs.mkdirSync(path.join(dir, d), { recursive: true });
}

/** A run's meta.yaml, or null when the folder holds no run. */
export function readRunMeta(dir: string): RunMeta | null {
  const file = path.join(dir, 'meta.yaml');
  return fs.existsSync(file) ? readYaml<RunMeta>(file) : null;
}

export function writeRunMeta(dir: string, meta: RunMeta | Record<string, unknown>): void {
  writeFileAtomic(path.join(dir, 'meta.yaml'), YAML.stringify(meta));
}

/** The file of a metric, param or tag of the run in `dir` (its key sanitized), its folder created. */
export function runFile(dir: string, kind: 'metrics' | 'params' | 'tags', key: string): string {
  const f = path.join(dir, kind, sanitizeKey(key));
  fs.mkdirSync(path.dirname(f), { recursive: true });
  return f;
}

/** One metric line; NaN and ±Infinity as MLflow writes them (nan, inf, -inf). */
export function metricLine(value: number, step: number, timestamp: number): string {
  const v = Number.isNaN(value) ? 'nan' : value === Infinity ? 'inf' : value === -Infinity ? '-inf' : Object.is(value, -0) ? '-0.0' : String(value); // -0 as Python writes it
  return `${timestamp} ${v} ${step}\n`;
}

/** A metric value as `metricLine` (and MLflow) writes it. */
const parseValue = (v: string | undefined): number => (v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : Number(v));

/** A metric file's values as [step, value] pairs in logging order. */
function parseMetric(text: string): [number, number][] {
  return text
    .trimEnd()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [, v, s] = l.split(' ');
      return [Number(s), parseValue(v)] as [number, number];
    });
}

/** Drops every metric value of the run in `dir` logged after `step` (a resumed run logs them again). */
export function truncateMetrics(dir: string, step: number): void {
  const metrics = path.join(dir, 'metrics');
  for (const f of fs.readdirSync(metrics, { recursive: true, withFileTypes: true })) {
    if (!f.isFile()) continue;
    const file = path.join(f.parentPath, f.name);
    const kept = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l && Number(l.split(' ')[2]) <= step);
    writeFileAtomic(file, kept.map((l) => `${l}\n`).join(''));
  }
}

/** Every file under `dir` as [path relative to dir with `/`, content] (the keys of metrics, params or tags). */
function readTree(dir: string, prefix = ''): [string, string][] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory()
        ? readTree(path.join(dir, e.name), `${prefix}${e.name}/`)
        : [[`${prefix}${e.name}`, fs.readFileSync(path.join(dir, e.name), 'utf8')] as [string, string]],
    );
}

/** The value of tag `key` of the run in `dir` (undefined when it was not set). */
export function readTag(dir: string, key: string): string | undefined {
  const file = path.join(dir, 'tags', sanitizeKey(key));
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : undefined;
}

/** Every run folder of every experiment, with its meta.yaml, in directory order. */
export function listRuns(root: string): { dir: string; meta: RunMeta }[] {
  return listExperiments(root).flatMap((e) =>
    fs.readdirSync(e.dir).flatMap((run) => {
      const dir = path.join(e.dir, run);
      const meta = readRunMeta(dir);
      return meta ? [{ dir, meta }] : [];
    }),
  );
}

/** One run with its tags and every metric value. */
export function readRun(dir: string, meta: RunMeta): StoredRun {
  const metrics: StoredRun['metrics'] = {};
  for (const [key, text] of readTree(path.join(dir, 'metrics'))) metrics[key] = parseMetric(text);
  return {
    runId: meta.run_id,
    runName: meta.run_name,
    status: statusName(meta.status),
    start: meta.start_time,
    end: meta.end_time,
    tags: Object.fromEntries(readTree(path.join(dir, 'tags'))),
    metrics,
    dir,
  };
}

/** Every run of every experiment in an MLflow file store, newest first. */
export function readStore(root: string): StoredRun[] {
  return listRuns(root)
    .map(({ dir, meta }) => readRun(dir, meta))
    .sort((a, b) => b.start - a.start);
}

/**
 * The MLflow experiment a run is logged to: `MLFLOW_EXPERIMENT_NAME` when set and not empty, else the config's
 * `experiment` (for a paper, its preset's experiment name). MLflow's own clients use the variable for runs whose code
 * chose no experiment; in loom every config names one, so if the config won the variable would never do anything.
 * It wins here: it names where the run goes (for example the one experiment a user may write to on a shared
 * server). The config's name stays what identifies the run to loom: the `experiment` param, the `loom.experiment`
 * tag (set by the MLflow trackers when the two differ) and the checkpoints `--resume latest` looks for.
 */
export function mlflowExperimentName(configured: string, env: NodeJS.ProcessEnv = process.env): string {
  return env.MLFLOW_EXPERIMENT_NAME || configured;
}
