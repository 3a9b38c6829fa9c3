/** Tracker composition: a run may log to several trackers (the MLflow store and the console) at once. */
import type { RunInfo, RunStatus, Tracker } from './interfaces';

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
  async flush(): Promise<void> {
    for (const t of this.trackers) await t.flush();
  }
  async endRun(status: Exclude<RunStatus, 'RUNNING'>, reason?: string): Promise<void> {
    for (const t of this.trackers) await t.endRun(status, reason);
  }
}
