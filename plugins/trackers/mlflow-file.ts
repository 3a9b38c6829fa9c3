import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { ConfigError, definePlugin, type RunInfo, type RunStatus, type Tracker } from '../../core';
import {
  createExperiment,
  createRunFolders,
  ensureDefaultExperiment,
  findExperiment,
  metricLine,
  MLFLOW_STATUS,
  newRunMeta,
  readRunMeta,
  runDirectory,
  runFile,
  truncateMetrics,
  writeRunMeta,
  type RunMeta,
  mlflowExperimentName,
} from '../../core/mlflow-store';

/**
 * Writes MLflow's file-store layout (the `./mlruns` folder that `mlflow ui --backend-store-uri ./mlruns` reads;
 * core/mlflow-store.ts owns the layout): experiments, runs' meta.yaml, metrics, params, tags and artifacts.
 */
export class MlflowFileTracker implements Omit<Tracker, 'spec'> {
  private runDir: string | null = null;
  private meta: RunMeta | null = null;

  constructor(readonly root: string) {}

  async startRun(opts: Parameters<Tracker['startRun']>[0]): Promise<RunInfo> {
    return this.startRunSync(opts);
  }

  /**
   * `startRun` without the promise. `runId` and `startTime` let the mlflow-rest tracker keep a local copy of a
   * remote run under the same id when the server is unreachable.
   */
  startRunSync({
    experiment,
    runName,
    tags,
    resume,
    runId = randomUUID().replace(/-/g, ''),
    startTime = Date.now(),
  }: Parameters<Tracker['startRun']>[0] & { runId?: string; startTime?: number }): RunInfo {
    const root = path.resolve(this.root);
    ensureDefaultExperiment(root);
    if (resume) return this.reopen(root, resume);
    // MLFLOW_EXPERIMENT_NAME, when set, chooses the experiment (see mlflowExperimentName); the config's name is kept as a tag.
    const configured = experiment;
    experiment = mlflowExperimentName(experiment);
    if (experiment !== configured) tags = { 'loom.experiment': configured, ...tags };
    const experimentId = findExperiment(root, experiment) ?? createExperiment(root, experiment);
    this.runDir = runDirectory(root, experimentId, runId);
    createRunFolders(this.runDir);
    this.meta = newRunMeta(this.runDir, experimentId, runId, runName, startTime);
    this.writeMeta();
    this.setTags({ 'mlflow.runName': runName, 'mlflow.user': os.userInfo().username, 'mlflow.source.name': 'loom', 'mlflow.source.type': 'LOCAL', ...tags });
    if (tags?.['git.commit']) this.setTags({ 'mlflow.source.git.commit': tags['git.commit'].replace(/\+dirty$/, '') });
    return { runId, experimentId, location: this.runDir };
  }

  /** Reopens a run to continue it: RUNNING again, and metric values logged after `step` dropped (they will be redone). */
  private reopen(root: string, { runId, experimentId, step }: { runId: string; experimentId: string; step: number }): RunInfo {
    this.runDir = runDirectory(root, experimentId, runId);
    const meta = readRunMeta(this.runDir);
    if (!meta) throw new ConfigError('--resume', `run ${runId} of experiment ${experimentId} is not in the MLflow store at ${root}`);
    this.meta = { ...meta, status: MLFLOW_STATUS.RUNNING, end_time: null };
    this.writeMeta();
    truncateMetrics(this.runDir, step);
    return { runId, experimentId, location: this.runDir };
  }

  logParams(params: Record<string, string | number | boolean>): void {
    for (const [k, raw] of Object.entries(params)) {
      const file = this.file('params', k);
      const value = String(raw);
      if (fs.existsSync(file)) {
        const old = fs.readFileSync(file, 'utf8');
        if (old !== value)
          throw new ConfigError(
            `param ${k}`,
            `already logged as ${JSON.stringify(old)}; MLflow params are immutable, cannot change it to ${JSON.stringify(value)}`,
          );
        continue;
      }
      fs.writeFileSync(file, value);
    }
  }

  logMetrics(metrics: Record<string, number>, step: number, timestamp = Date.now()): void {
    for (const [k, v] of Object.entries(metrics)) fs.appendFileSync(this.file('metrics', k), metricLine(v, step, timestamp));
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
    if (!dest.startsWith(path.join(this.dir(), 'artifacts') + path.sep))
      throw new ConfigError('artifactPath', `must stay inside the run's artifacts, got ${artifactPath}`);
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
    this.meta = { ...this.meta!, status: MLFLOW_STATUS[status], end_time: endTime };
    this.writeMeta();
  }

  private dir(): string {
    if (!this.runDir) throw new Error('mlflow-file tracker: startRun() must be called first');
    return this.runDir;
  }

  private file(kind: 'metrics' | 'params' | 'tags', key: string): string {
    return runFile(this.dir(), kind, key);
  }

  private writeMeta(): void {
    writeRunMeta(this.dir(), this.meta!);
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
