import { randomInt, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import YAML from 'yaml';
import { z } from 'zod';
import { ConfigError, definePlugin, mlflowExperimentName, writeFileAtomic, type RunInfo, type RunStatus, type Tracker } from '../../core';

/** MLflow's integer run status codes (mlflow.entities.RunStatus). */
export const MLFLOW_STATUS: Record<RunStatus, number> = { RUNNING: 1, FINISHED: 3, FAILED: 4, KILLED: 5 };

/** Characters MLflow accepts in metric, param and tag keys; others become `_`. A `/` makes a subfolder. */
export const sanitizeKey = (k: string): string => k.replace(/[^\w\-. /]/g, '_');

const formatValue = (v: number): string => (Number.isNaN(v) ? 'nan' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : String(v));

/**
 * Writes MLflow's file-store layout (the `./mlruns` folder that `mlflow ui --backend-store-uri ./mlruns` reads):
 * `<exp>/meta.yaml`, `<exp>/<run>/meta.yaml`, `metrics/<key>` lines of "<ms> <value> <step>", `params/<key>`,
 * `tags/<key>` and `artifacts/`. Experiment ids are strings (MLflow's can exceed 2^53).
 */
export class MlflowFileTracker implements Omit<Tracker, 'spec'> {
  private runDir: string | null = null;
  private meta: Record<string, unknown> = {};

  constructor(readonly root: string) {}

  async startRun(opts: Parameters<Tracker['startRun']>[0]): Promise<RunInfo> {
    return this.startRunSync(opts);
  }

  /**
   * `startRun` without the promise. `runId` and `startTime` let the mlflow-rest tracker keep a local copy of a
   * remote run under the same id when the server is unreachable.
   */
  startRunSync({ experiment, runName, tags, resume, runId = randomUUID().replace(/-/g, ''), startTime = Date.now() }: Parameters<Tracker['startRun']>[0] & { runId?: string; startTime?: number }): RunInfo {
    const root = path.resolve(this.root);
    this.ensureDefaultExperiment(root);
    if (resume) return this.reopen(root, resume);
    // MLFLOW_EXPERIMENT_NAME, when set, chooses the experiment (see mlflowExperimentName); the config's name is kept as a tag.
    const configured = experiment;
    experiment = mlflowExperimentName(experiment);
    if (experiment !== configured) tags = { 'loom.experiment': configured, ...tags };
    const experimentId = this.findExperiment(root, experiment) ?? this.createExperiment(root, experiment);
    this.runDir = path.join(root, experimentId, runId);
    for (const d of ['metrics', 'params', 'tags', 'artifacts']) fs.mkdirSync(path.join(this.runDir, d), { recursive: true });
    this.meta = {
      artifact_uri: pathToFileURL(path.join(this.runDir, 'artifacts')).href,
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
    this.writeMeta();
    this.setTags({ 'mlflow.runName': runName, 'mlflow.user': os.userInfo().username, 'mlflow.source.name': 'loom', 'mlflow.source.type': 'LOCAL', ...tags });
    if (tags?.['git.commit']) this.setTags({ 'mlflow.source.git.commit': tags['git.commit'].replace(/\+dirty$/, '') });
    return { runId, experimentId, location: this.runDir };
  }

  /** Reopens a run to continue it: RUNNING again, and metric values logged after `step` dropped (they will be redone). */
  private reopen(root: string, { runId, experimentId, step }: { runId: string; experimentId: string; step: number }): RunInfo {
    this.runDir = path.join(root, experimentId, runId);
    const metaFile = path.join(this.runDir, 'meta.yaml');
    if (!fs.existsSync(metaFile)) throw new ConfigError('--resume', `run ${runId} of experiment ${experimentId} is not in the MLflow store at ${root}`);
    this.meta = YAML.parse(fs.readFileSync(metaFile, 'utf8')) as Record<string, unknown>;
    this.meta.status = MLFLOW_STATUS.RUNNING;
    this.meta.end_time = null;
    this.writeMeta();
    const metrics = path.join(this.runDir, 'metrics');
    for (const f of fs.readdirSync(metrics, { recursive: true, withFileTypes: true })) {
      if (!f.isFile()) continue;
      const file = path.join(f.parentPath, f.name);
      const kept = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l && Number(l.split(' ')[2]) <= step);
      writeFileAtomic(file, kept.map((l) => `${l}\n`).join(''));
    }
    return { runId, experimentId, location: this.runDir };
  }

  logParams(params: Record<string, string | number | boolean>): void {
    for (const [k, raw] of Object.entries(params)) {
      const file = this.file('params', k);
      const value = String(raw);
      if (fs.existsSync(file)) {
        const old = fs.readFileSync(file, 'utf8');
        if (old !== value) throw new ConfigError(`param ${k}`, `already logged as ${JSON.stringify(old)}; MLflow params are immutable, cannot change it to ${JSON.stringify(value)}`);
        continue;
      }
      fs.writeFileSync(file, value);
    }
  }

  logMetrics(metrics: Record<string, number>, step: number, timestamp = Date.now()): void {
    for (const [k, v] of Object.entries(metrics)) fs.appendFileSync(this.file('metrics', k), `${timestamp} ${formatValue(v)} ${step}\n`);
  }

  setTags(tags: Record<string, string>): void {
    for (const [k, v] of Object.entries(tags)) fs.writeFileSync(this.file('tags', k), v);
  }

  async logArtifact(localPath: string, artifactPath = path.basename(localPath)): Promise<void> {
    this.copyArtifact(localPath, artifactPath);
  }

  /** Copies `localPath` to `artifacts/<artifactPath>` and returns the copy's path. */
  copyArtifact(localPath: string, artifactPath = path.basename(localPath)): string {
    const dest = path.join(this.dir(), 'artifacts', artifactPath);
    if (!dest.startsWith(path.join(this.dir(), 'artifacts') + path.sep)) throw new ConfigError('artifactPath', `must stay inside the run's artifacts, got ${artifactPath}`);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(localPath, dest);
    return dest;
  }

  /** The run's folder (`<root>/<experiment id>/<run id>`). */
  get runDirectory(): string {
    return this.dir();
  }

  async flush(): Promise<void> {}

  async endRun(status: Exclude<RunStatus, 'RUNNING'>, reason?: string): Promise<void> {
    this.endRunSync(status, reason);
  }

  endRunSync(status: Exclude<RunStatus, 'RUNNING'>, reason?: string, endTime = Date.now()): void {
    if (!this.runDir) return;
    if (reason) this.setTags({ 'loom.status_reason': reason });
    this.meta.status = MLFLOW_STATUS[status];
    this.meta.end_time = endTime;
    this.writeMeta();
  }

  private dir(): string {
    if (!this.runDir) throw new Error('mlflow-file tracker: startRun() must be called first');
    return this.runDir;
  }

  private file(kind: 'metrics' | 'params' | 'tags', key: string): string {
    const f = path.join(this.dir(), kind, sanitizeKey(key));
    fs.mkdirSync(path.dirname(f), { recursive: true });
    return f;
  }

  private writeMeta(): void {
    writeFileAtomic(path.join(this.dir(), 'meta.yaml'), YAML.stringify(this.meta));
  }

  private ensureDefaultExperiment(root: string): void {
    if (!fs.existsSync(path.join(root, '0', 'meta.yaml'))) this.writeExperiment(root, '0', 'Default');
  }

  private findExperiment(root: string, name: string): string | undefined {
    for (const id of fs.readdirSync(root)) {
      const meta = path.join(root, id, 'meta.yaml');
      if (!fs.existsSync(meta)) continue;
      const m = YAML.parse(fs.readFileSync(meta, 'utf8')) as { name?: string; lifecycle_stage?: string };
      if (m?.name === name && m.lifecycle_stage !== 'deleted') return id;
    }
    return undefined;
  }

  private createExperiment(root: string, name: string): string {
    // MLflow's file store draws large random integer ids; keep them as strings.
    let id: string;
    do id = String(randomInt(1, 2 ** 47)) + String(randomInt(0, 1000)).padStart(3, '0');
    while (fs.existsSync(path.join(root, id)));
    this.writeExperiment(root, id, name);
    return id;
  }

  private writeExperiment(root: string, id: string, name: string): void {
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
}

export default definePlugin({
  kind: 'tracker',
  name: 'mlflow-file',
  description: "MLflow's file store under ./mlruns (readable by `mlflow ui --backend-store-uri ./mlruns`)",
  schema: z.object({ root: z.string().min(1).default('mlruns') }),
  properties: ["writes MLflow's file-store layout exactly; a failing run is FAILED with its reason; params immutable"],
  create: ({ root }) => new MlflowFileTracker(root),
});
