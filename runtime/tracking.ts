/** Tracker composition: a run may log to several trackers (the MLflow store and the console) at once. */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Dataset, DatasetInfo, PluginSpec, RunInfo, RunStatus, Tracker } from '../core/interfaces';

export class MultiTracker implements Tracker {
  readonly spec;
  constructor(readonly trackers: Tracker[]) {
    this.spec = { type: 'multi', trackers: trackers.map((t) => t.spec) };
  }
  async startRun(opts: Parameters<Tracker['startRun']>[0]): Promise<RunInfo> {
    const infos = [];
    for (const t of this.trackers) infos.push(await t.startRun(opts));
    return infos[0] ?? { runId: 'none', experimentId: 'none', location: '(no tracker)' };
  }
  logParams(p: Record<string, string | number | boolean>): void {
    for (const t of this.trackers) t.logParams(p);
  }
  logMetrics(m: Record<string, number>, step: number, timestamp?: number): void {
    for (const t of this.trackers) t.logMetrics(m, step, timestamp);
  }
  setTags(tags: Record<string, string>): void {
    for (const t of this.trackers) t.setTags(tags);
  }
  async logArtifact(localPath: string, artifactPath?: string): Promise<void> {
    for (const t of this.trackers) await t.logArtifact(localPath, artifactPath);
  }
  logDataset(dataset: DatasetInfo): void {
    for (const t of this.trackers) t.logDataset?.(dataset);
  }
  async flush(): Promise<void> {
    for (const t of this.trackers) await t.flush();
  }
  async endRun(status: Exclude<RunStatus, 'RUNNING'>, reason?: string): Promise<void> {
    for (const t of this.trackers) await t.endRun(status, reason);
  }
}

/**
 * Where runs are tracked: an http(s) `trackingUri` (MLFLOW_TRACKING_URI or `--tracking-uri`) turns each
 * `mlflow-file` tracker spec into an `mlflow-rest` one for that server, which keeps the file store's folder as its
 * local fallback; a `file:` URI (MLflow's form for a local store; the CLI turns plain paths into one) sets the
 * `root` of each `mlflow-file` tracker to that directory. Other URIs and other trackers are left as they are.
 * Works on specs, so core imports no plugin.
 */
export function withTrackingUri(trackers: PluginSpec[], trackingUri: string | undefined): PluginSpec[] {
  if (trackingUri && /^file:/i.test(trackingUri)) {
    const root = fileURLToPath(trackingUri);
    return trackers.map((t) =>
      (typeof t === 'string' ? t : t.type) === 'mlflow-file' ? { ...(typeof t === 'string' ? {} : t), type: 'mlflow-file', root } : t,
    );
  }
  if (!trackingUri || !/^https?:\/\//i.test(trackingUri)) return trackers;
  return trackers.map((t) => {
    if ((typeof t === 'string' ? t : t.type) !== 'mlflow-file') return t;
    const root = typeof t === 'string' ? undefined : t.root;
    return { type: 'mlflow-rest', uri: trackingUri, ...(typeof root === 'string' ? { dir: root } : {}) };
  });
}

/**
 * Describes a data set for the trackers' run inputs. The digest hashes the name, size, shapes and up to 1,000
 * evenly spaced examples (as MLflow's own digests hash a bounded sample), so it stays cheap for large sets.
 */
export function describeDataset(ds: Dataset, context: string, source: PluginSpec, sample = 1000): DatasetInfo {
  const n = Math.min(ds.size, sample);
  const indices = Array.from({ length: n }, (_, i) => Math.floor((i * ds.size) / n));
  const hash = createHash('sha256').update(JSON.stringify([ds.name, ds.size, ds.xShape, ds.yShape]));
  let dtypes = ['float32', 'float32'];
  if (n > 0) {
    const { x, y } = ds.batch(indices);
    try {
      dtypes = [x.dtype, y.dtype];
      for (const t of [x, y]) {
        const a = t.dataSync() as Float32Array | Int32Array;
        hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
      }
    } finally {
      x.dispose();
      y.dispose();
    }
  }
  const spec = (dtype: string, shape: number[]) => JSON.stringify([{ type: 'tensor', 'tensor-spec': { dtype, shape: [-1, ...shape] } }]);
  return {
    name: ds.name,
    digest: hash.digest('hex').slice(0, 8),
    sourceType: 'loom',
    source: JSON.stringify({ source, split: ds.name }),
    schema: JSON.stringify({ mlflow_tensorspec: { features: spec(dtypes[0]!, ds.xShape), targets: spec(dtypes[1]!, ds.yShape) } }),
    profile: JSON.stringify({ num_rows: ds.size, features_shape: [ds.size, ...ds.xShape], targets_shape: [ds.size, ...ds.yShape] }),
    context,
  };
}
