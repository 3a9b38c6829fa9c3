/**
 * The `mlflow-rest` tracker: logs a run to an MLflow 2.x tracking server over its REST API, never stalling
 * training and never losing or duplicating what it logs.
 *
 * - Logging calls return at once: they append to a bounded in-memory queue that a background pump sends in order,
 *   packing consecutive params/metrics/tags into `runs/log-batch` requests within MLflow's limits.
 * - When the server is down or failing (connection refused, timeout, 5xx), or the queue outgrows its bound, the
 *   tracker switches to a spool: everything not yet acknowledged, and everything logged afterwards, goes to the
 *   local MLflow file store (the `mlflow-file` layout, same run id) and to an ordered journal
 *   (`<run>/loom-sync/journal.jsonl`, one request per line with a sequence number). `state.json`, written
 *   atomically, records the remote run and the last sequence number the server acknowledged.
 * - The journal is replayed in order: in the background while the run goes on (every `retryIntervalMs`), at
 *   `endRun`, and by `loom sync` ({@link syncStore}). A request that may have been applied without an answer
 *   (timeout, dropped connection, 500) is marked in `state.json`; before resending it, its metrics are compared
 *   with `metrics/get-history` and the ones already there are dropped. Params, tags, inputs, artifacts and the
 *   final status are idempotent, so they are simply resent.
 * - A protected server: the client sends the credentials of MLflow's environment variables
 *   ({@link mlflowConnectionFromEnv}). A 401/403 or a TLS failure is not an outage but is treated like one for the
 *   data: the run goes to the spool, and the message (at once and when the run ends) names the variables to set
 *   instead of calling the server unreachable. `loom sync` reads the same variables.
 * - `MLFLOW_EXPERIMENT_NAME`, when set, names the experiment the run goes to ({@link mlflowExperimentName}).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { z } from 'zod';
import { ConfigError, definePlugin, LoomError, writeFileAtomic, type DatasetInfo, type RunInfo, type RunStatus, type Tracker } from '../../core';
import { mlflowExperimentName, readRunMeta, sanitizeKey } from '../../core/mlflow-store';
import { MlflowFileTracker } from './mlflow-file';
import {
  BatchPacker,
  decodeMetricValue,
  encodeMetricValue,
  keepForLater,
  LOG_BATCH_LIMITS,
  mlflowConnectionFromEnv,
  MlflowRequestError,
  MlflowRestClient,
  splitBatch,
  type BatchLimits,
  type MlflowBatch,
  type MlflowClientOptions,
  type MlflowConnection,
  type MlflowDatasetInput,
  type RemoteRun,
} from './mlflow-rest-client';

type EndStatus = Exclude<RunStatus, 'RUNNING'>;

/** One request's worth of logging; each is within the log-batch limits on its own. */
export type JournalOp =
  | { op: 'start'; experiment: string; runName: string; startTime: number; userId: string }
  | ({ op: 'batch' } & MlflowBatch)
  | { op: 'inputs'; datasets: MlflowDatasetInput[] }
  | { op: 'artifact'; path: string }
  | { op: 'end'; status: EndStatus; endTime: number };
export type JournalEntry = JournalOp & { seq: number };

export interface SpoolState {
  version: 1;
  trackingUri: string;
  experiment: string;
  runName: string;
  /** The server's run, once it exists (null while the run was created offline and not yet replayed). */
  remote: RemoteRun | null;
  /** Every entry with `seq <= acked` reached the server. */
  acked: number;
  /** Entries a request may have applied without its answer arriving: their metrics are checked before a resend. */
  sending: { from: number; to: number } | null;
  /** How many entries the server refused (they are kept in `rejected.jsonl`). */
  rejected: number;
}

const SPOOL_DIR = 'loom-sync';

/** A run's replay journal and its state, inside the local copy of the run (`<dir>/<exp>/<run>/loom-sync`). */
export class Spool {
  private entries: JournalEntry[];
  private lastSeq: number;
  /** Whether `state` holds an acknowledgement not yet written to `state.json`. */
  private dirty = false;

  private constructor(
    readonly runDir: string,
    public state: SpoolState,
    entries: JournalEntry[],
  ) {
    this.lastSeq = Math.max(state.acked, ...entries.map((e) => e.seq));
    this.entries = entries.filter((e) => e.seq > state.acked);
  }

  /** A new journal, or the run's existing one (a resumed run) continued after its last entry. */
  static create(runDir: string, state: Omit<SpoolState, 'version' | 'acked' | 'sending' | 'rejected'>): Spool {
    const existing = Spool.open(runDir);
    if (existing) return existing;
    const s = new Spool(runDir, { version: 1, acked: 0, sending: null, rejected: 0, ...state }, []);
    fs.mkdirSync(s.dir, { recursive: true });
    s.save();
    return s;
  }

  /** Reads a journal; a last line cut short by a crash is ignored (its call never returned to the caller). */
  static open(runDir: string): Spool | null {
    const dir = path.join(runDir, SPOOL_DIR);
    if (!fs.existsSync(path.join(dir, 'state.json'))) return null;
    const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8')) as SpoolState;
    const journal = path.join(dir, 'journal.jsonl');
    const entries: JournalEntry[] = [];
    if (fs.existsSync(journal)) {
      for (const line of fs.readFileSync(journal, 'utf8').split('\n')) {
        if (!line) continue;
        try {
          entries.push(JSON.parse(line) as JournalEntry);
        } catch {
          break;
        }
      }
    }
    return new Spool(runDir, state, entries);
  }

  get dir(): string {
    return path.join(this.runDir, SPOOL_DIR);
  }

  append(op: JournalOp): JournalEntry {
    const entry = { ...op, seq: ++this.lastSeq } as JournalEntry;
    fs.appendFileSync(path.join(this.dir, 'journal.jsonl'), `${JSON.stringify(entry)}\n`);
    this.entries.push(entry);
    return entry;
  }

  /** Entries not yet acknowledged, in order. */
  pending(): readonly JournalEntry[] {
    return this.entries;
  }

  get nextSeq(): number {
    return this.lastSeq + 1;
  }

  /**
   * Records that every entry up to `to` reached the server. With `persist` false only in memory, until the next
   * `markSending` or `save` writes it: until then `state.json` still marks those entries as sent in doubt, so a
   * process that dies meanwhile checks them against the server's history instead of sending them twice. This saves
   * one fsync'd write per request during a replay.
   */
  ack(to: number, persist = true): void {
    this.state.acked = to;
    this.state.sending = null;
    this.entries = this.entries.filter((e) => e.seq > to);
    if (persist) this.save();
    else this.dirty = true;
  }

  /** Marks entries `from..to` as being sent (durably, before the request goes), with any acknowledgement not yet written. */
  markSending(from: number, to: number): void {
    this.state.sending = { from, to };
    this.save();
  }

  /** Sets aside entries the server refused (so a replay can go on), keeping them for a person to look at. */
  reject(entries: readonly JournalEntry[], error: unknown): void {
    for (const e of entries) fs.appendFileSync(path.join(this.dir, 'rejected.jsonl'), `${JSON.stringify({ entry: e, error: String(error) })}\n`);
    this.state.rejected += entries.length;
    this.ack(entries.at(-1)!.seq);
  }

  artifactFile(artifactPath: string): string {
    return path.join(this.runDir, 'artifacts', artifactPath);
  }

  save(): void {
    writeFileAtomic(path.join(this.dir, 'state.json'), JSON.stringify(this.state, null, 1));
    this.dirty = false;
  }

  /** Writes an acknowledgement kept in memory by `ack(to, false)`, if any. */
  saveIfDirty(): void {
    if (this.dirty) this.save();
  }

  /** Marks this spool as used by a live process, so `loom sync` leaves it alone meanwhile. */
  lock(): void {
    fs.writeFileSync(path.join(this.dir, 'lock'), String(process.pid));
  }

  unlock(): void {
    fs.rmSync(path.join(this.dir, 'lock'), { force: true });
  }

  /** The pid of another live process using this spool, if any (a lock left by a killed process is stale). */
  lockedBy(): number | null {
    const f = path.join(this.dir, 'lock');
    if (!fs.existsSync(f)) return null;
    const pid = Number(fs.readFileSync(f, 'utf8'));
    if (!Number.isInteger(pid) || pid <= 0) return null;
    try {
      process.kill(pid, 0);
      return pid;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
    }
  }
}

const countEntities = (op: JournalOp): number => (op.op === 'batch' ? op.metrics.length + op.params.length + op.tags.length : 1);

/** How many head entries of `ops` go in one request, and the merged batch when they are batches. */
function packHead<T extends JournalOp>(ops: readonly T[], limits: BatchLimits): { n: number; batch: MlflowBatch | null } {
  const head = ops[0]!;
  if (head.op !== 'batch') return { n: 1, batch: null };
  // The head alone is within the limits (every batch is split to fit when logged); the packer takes it first.
  const packer = new BatchPacker(limits);
  let n = 0;
  while (n < ops.length) {
    const next = ops[n]!;
    if (next.op !== 'batch' || !packer.add(next)) break;
    n++;
  }
  return { n: Math.max(n, 1), batch: n > 0 ? packer.batch : { metrics: head.metrics, params: head.params, tags: head.tags } };
}

const metricId = (m: { key: string; step: number; timestamp: number; value: number | string }) =>
  `${m.key}\u0000${m.step}\u0000${m.timestamp}\u0000${decodeMetricValue(m.value)}`;

/** Drops from `batch` the metrics of entries in `sending` that the server already holds (a request answered by no one). */
async function withoutDelivered(
  client: MlflowRestClient,
  runId: string,
  entries: readonly JournalEntry[],
  sending: { from: number; to: number },
  batch: MlflowBatch,
): Promise<MlflowBatch> {
  const doubtful = entries.filter((e) => e.seq >= sending.from && e.seq <= sending.to && e.op === 'batch').flatMap((e) => (e.op === 'batch' ? e.metrics : []));
  if (doubtful.length === 0) return batch;
  const there = new Map<string, number>();
  for (const key of new Set(doubtful.map((m) => m.key))) {
    for (const m of await client.getMetricHistory(runId, key)) there.set(metricId(m), (there.get(metricId(m)) ?? 0) + 1);
  }
  const doubtfulIds = new Set(doubtful.map(metricId));
  const metrics = batch.metrics.filter((m) => {
    const id = metricId(m);
    if (!doubtfulIds.has(id) || !there.get(id)) return true;
    there.set(id, there.get(id)! - 1);
    return false;
  });
  return { ...batch, metrics };
}

/**
 * Sends a spool's pending entries in order, acknowledging each request in `state.json` as it succeeds. Stops with
 * the error at an outage or a credentials/TLS failure (the rest stays pending: once the server answers, or the
 * settings are fixed, the same entries go). Entries the server refuses are set aside (`rejected.jsonl`) and
 * reported through `onRejected`, except the run's creation, without which nothing else can go.
 */
export async function replaySpool(
  spool: Spool,
  client: MlflowRestClient,
  onRejected: (message: string) => void,
  limits: BatchLimits = LOG_BATCH_LIMITS,
): Promise<number> {
  try {
    return await replayPending(spool, client, onRejected, limits);
  } finally {
    spool.saveIfDirty();
  }
}

async function replayPending(spool: Spool, client: MlflowRestClient, onRejected: (message: string) => void, limits: BatchLimits): Promise<number> {
  let sent = 0;
  for (let pending = spool.pending(); pending.length > 0; pending = spool.pending()) {
    const { n, batch } = packHead(pending, limits);
    const chunk = pending.slice(0, n);
    const head = chunk[0]!;
    const last = chunk[n - 1]!.seq;
    try {
      if (head.op === 'start') {
        if (!spool.state.remote) {
          const experimentId = await client.getOrCreateExperiment(head.experiment);
          spool.state.remote = await client.createRun({
            experimentId,
            runName: head.runName,
            startTime: head.startTime,
            userId: head.userId,
            tags: [{ key: 'loom.local_run_id', value: path.basename(spool.runDir) }],
          });
        }
        spool.ack(last);
        continue;
      }
      const remote = spool.state.remote;
      if (!remote) throw new LoomError(`journal ${spool.dir}: entries before the run's creation are missing`);
      if (batch) {
        const sending = spool.state.sending;
        const toSend = sending && sending.from <= last && sending.to >= head.seq ? await withoutDelivered(client, remote.runId, chunk, sending, batch) : batch;
        spool.markSending(head.seq, last);
        if (toSend.metrics.length + toSend.params.length + toSend.tags.length > 0) await client.logBatch(remote.runId, toSend);
      } else if (head.op === 'inputs') await client.logInputs(remote.runId, head.datasets);
      else if (head.op === 'artifact') await client.uploadArtifact(remote, head.path, fs.readFileSync(spool.artifactFile(head.path)));
      else if (head.op === 'end') await client.updateRun(remote.runId, head.status, head.endTime);
      // Written with the next request's `markSending`, or when the replay stops.
      spool.ack(last, false);
      sent += n;
    } catch (e) {
      if (keepForLater(e) || head.op === 'start' || !(e instanceof MlflowRequestError)) throw e;
      spool.reject(chunk, e);
      onRejected(`${e.message} (entries ${head.seq}-${last} set aside in ${path.join(spool.dir, 'rejected.jsonl')})`);
    }
  }
  return sent;
}

// ---------------------------------------------------------------- the tracker

export interface MlflowRestOptions {
  /** The tracking server, e.g. http://localhost:5000. */
  uri: string;
  /** The local MLflow file store that holds what the server has not acknowledged. */
  dir: string;
  /** How long logged values may wait in the queue before the pump sends them. */
  flushIntervalMs: number;
  /** Queue bound in entities (metrics + params + tags); beyond it the tracker spools to disk instead of growing. */
  maxQueue: number;
  /** Per-request timeout. */
  timeoutMs: number;
  /** While spooling, how often to try the server again. */
  retryIntervalMs: number;
}

type QueuedOp = JournalOp & { file?: string; done?: () => void };

export class MlflowRestTracker implements Omit<Tracker, 'spec'> {
  readonly client: MlflowRestClient;
  private mode: 'idle' | 'online' | 'spooling' | 'ended' = 'idle';
  private remote: RemoteRun | null = null;
  private queue: QueuedOp[] = [];
  private queued = 0;
  private spillRequested = false;
  private pumping: Promise<void> | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private replaying: Promise<boolean> | null = null;
  private spool: Spool | null = null;
  private local: MlflowFileTracker | null = null;
  private run: { experiment: string; runName: string; startTime: number; userId: string; tags: Record<string, string> } | null = null;
  private readonly params = new Map<string, string>();
  private readonly errors: string[] = [];
  /** Why the server last failed to take what was sent (cleared when a replay succeeds), for the end-of-run message. */
  private lastFailure: Error | null = null;

  constructor(
    readonly options: MlflowRestOptions,
    private readonly log: (line: string) => void = (l) => console.warn(l),
    clientOptions: MlflowClientOptions = {},
    private readonly limits: BatchLimits = LOG_BATCH_LIMITS,
  ) {
    this.client = new MlflowRestClient(options.uri, { timeoutMs: options.timeoutMs, ...clientOptions });
  }

  /** Whether logging currently goes to the server (`online`) or to the local spool (`spooling`). */
  get state(): string {
    return this.mode;
  }

  /** The local copy holding what the server has not acknowledged, once there has been an outage. */
  get spoolDir(): string | null {
    return this.spool?.runDir ?? null;
  }

  async startRun({ experiment, runName, tags = {}, resume }: Parameters<Tracker['startRun']>[0]): Promise<RunInfo> {
    const configured = experiment;
    experiment = mlflowExperimentName(experiment);
    if (experiment !== configured) tags = { 'loom.experiment': configured, ...tags };
    const userId = os.userInfo().username;
    const startTime = Date.now();
    const allTags: Record<string, string> = { 'mlflow.user': userId, 'mlflow.source.name': 'loom', 'mlflow.source.type': 'LOCAL', ...tags };
    if (tags['git.commit']) allTags['mlflow.source.git.commit'] = tags['git.commit'].replace(/\+dirty$/, '');
    this.run = { experiment, runName, startTime, userId, tags: allTags };
    try {
      if (resume) {
        // Continue the same remote run. MLflow's REST API cannot delete metric values, so values the interrupted
        // process logged after the checkpoint's step stay beside the redone ones (the file store drops them).
        await this.client.reopenRun(resume.runId);
        this.remote = { runId: resume.runId, experimentId: resume.experimentId, artifactPath: `${resume.experimentId}/${resume.runId}/artifacts` };
        this.mode = 'online';
        this.setTags(allTags);
        return { runId: resume.runId, experimentId: resume.experimentId, location: this.client.runUrl(this.remote) };
      }
      const experimentId = await this.client.getOrCreateExperiment(experiment);
      this.remote = await this.client.createRun({ experimentId, runName, startTime, userId, tags: [] });
      this.mode = 'online';
      this.setTags(allTags);
      return { runId: this.remote.runId, experimentId: this.remote.experimentId, location: this.client.runUrl(this.remote) };
    } catch (e) {
      if (!(e instanceof MlflowRequestError)) throw e;
      this.lastFailure = e;
      const later = e.kind === 'auth' || e.kind === 'tls' ? 'uploading it once that is fixed (or with `loom sync`)' : 'uploading later';
      this.log(`loom: MLflow server ${this.client.baseUrl} did not take the run (${e.message}); logging to ${path.resolve(this.options.dir)} and ${later}`);
      const info = this.openSpool(null);
      this.mode = 'spooling';
      this.setTags(allTags);
      this.scheduleRetry();
      return info;
    }
  }

  logParams(params: Record<string, string | number | boolean>): void {
    const fresh: { key: string; value: string }[] = [];
    for (const [k, raw] of Object.entries(params)) {
      const key = sanitizeKey(k);
      const value = String(raw);
      const old = this.params.get(key);
      if (old !== undefined && old !== value)
        throw new ConfigError(
          `param ${k}`,
          `already logged as ${JSON.stringify(old)}; MLflow params are immutable, cannot change it to ${JSON.stringify(value)}`,
        );
      if (old === undefined) fresh.push({ key, value });
    }
    for (const p of fresh) this.params.set(p.key, p.value);
    if (fresh.length) this.enqueueBatch({ metrics: [], params: fresh, tags: [] });
  }

  logMetrics(metrics: Record<string, number>, step: number, timestamp = Date.now()): void {
    const ms = Object.entries(metrics).map(([k, v]) => ({ key: sanitizeKey(k), value: encodeMetricValue(v), timestamp, step }));
    if (ms.length) this.enqueueBatch({ metrics: ms, params: [], tags: [] });
  }

  setTags(tags: Record<string, string>): void {
    const ts = Object.entries(tags).map(([k, value]) => ({ key: sanitizeKey(k), value: String(value) }));
    if (ts.length) this.enqueueBatch({ metrics: [], params: [], tags: ts });
  }

  logDataset(d: DatasetInfo): void {
    const dataset = {
      name: d.name,
      digest: d.digest,
      source_type: d.sourceType,
      source: d.source,
      ...(d.schema ? { schema: d.schema } : {}),
      ...(d.profile ? { profile: d.profile } : {}),
    };
    this.enqueue({ op: 'inputs', datasets: [{ dataset, tags: [{ key: 'mlflow.data.context', value: d.context }] }] });
  }

  async logArtifact(localPath: string, artifactPath = path.basename(localPath)): Promise<void> {
    const rel = artifactPath.split(/[\\/]+/).filter(Boolean);
    if (rel.length === 0 || rel.includes('..') || path.isAbsolute(artifactPath))
      throw new ConfigError('artifactPath', `must be a relative path inside the run's artifacts, got ${artifactPath}`);
    if (!fs.statSync(localPath).isFile()) throw new ConfigError('logArtifact', `${localPath} is not a file`);
    await new Promise<void>((done) => {
      this.enqueue({ op: 'artifact', path: rel.join('/'), file: localPath, done });
      this.kick();
    });
  }

  /** Waits until every queued value has been sent (or, during an outage, written to the local spool). */
  async flush(): Promise<void> {
    await this.drain();
    if (this.errors.length) {
      const msg = this.errors.splice(0).join('\n');
      throw new LoomError(`mlflow-rest: the server refused some logging:\n${msg}`);
    }
  }

  async endRun(status: EndStatus, reason?: string): Promise<void> {
    if (this.mode === 'idle' || this.mode === 'ended') return;
    if (reason) this.setTags({ 'loom.status_reason': reason });
    this.enqueue({ op: 'end', status, endTime: Date.now() });
    await this.drain();
    this.clearTimers();
    if (this.mode === 'spooling') {
      const ok = await this.tryReplay();
      this.clearTimers();
      if (!ok) {
        const dir = path.resolve(this.options.dir);
        const sync = `loom sync --dir ${dir} --tracking-uri ${this.client.baseUrl}`;
        const f = this.lastFailure;
        if (f instanceof MlflowRequestError && (f.kind === 'auth' || f.kind === 'tls')) {
          // Not an outage: waiting will not help, fixing the settings will. Say which, not "unreachable".
          const what = f.kind === 'auth' ? 'authentication failure' : 'TLS failure';
          this.log(
            `loom: MLflow server ${this.client.baseUrl}: ${what}: ${f.message}. The run is kept in ${this.spool!.runDir}; once that is fixed, upload it with: ${sync}`,
          );
        } else
          this.log(`loom: MLflow server ${this.client.baseUrl} still unreachable; the run is kept in ${this.spool!.runDir}. Upload it later with: ${sync}`);
      }
    }
    if (this.errors.length) this.log(`loom: the MLflow server refused some logging:\n${this.errors.splice(0).join('\n')}`);
    this.spool?.unlock();
    this.mode = 'ended';
  }

  // -------------------------------------------------------------- queue and pump

  private enqueueBatch(b: MlflowBatch): void {
    for (const piece of splitBatch(b, this.limits)) this.enqueue({ op: 'batch', ...piece });
  }

  private enqueue(op: QueuedOp): void {
    if (this.mode === 'spooling') {
      this.spoolWrite(op);
      return;
    }
    if (this.mode !== 'online') throw new LoomError(`mlflow-rest tracker: ${this.mode === 'ended' ? 'the run has ended' : 'startRun() must be called first'}`);
    this.queue.push(op);
    this.queued += countEntities(op);
    if (this.queued > this.options.maxQueue) {
      // The server keeps up too slowly: spool rather than grow or block. A request in flight finishes first.
      if (this.pumping) this.spillRequested = true;
      else this.goOffline(new LoomError(`queue over ${this.options.maxQueue} entities`), 0);
    } else if (this.queued >= this.limits.metrics) this.kick();
    else if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => {
        this.flushTimer = null;
        this.kick();
      }, this.options.flushIntervalMs);
      this.flushTimer.unref();
    }
  }

  private kick(): void {
    if (this.pumping || this.mode !== 'online') return;
    this.pumping = this.pump().finally(() => {
      this.pumping = null;
    });
  }

  private async pump(): Promise<void> {
    while (this.mode === 'online' && this.queue.length > 0) {
      if (this.spillRequested) return this.goOffline(new LoomError(`queue over ${this.options.maxQueue} entities`), 0);
      const { n, batch } = packHead(this.queue, this.limits);
      const head = this.queue[0]!;
      try {
        await this.send(head, batch);
        this.dequeue(n);
      } catch (e) {
        if (keepForLater(e)) return this.goOffline(e, e.mayHaveApplied ? n : 0);
        this.errors.push(e instanceof Error ? e.message : String(e));
        this.dequeue(n);
      }
    }
  }

  private async send(op: QueuedOp, batch: MlflowBatch | null): Promise<void> {
    const runId = this.remote!.runId;
    if (batch) return this.client.logBatch(runId, batch);
    if (op.op === 'inputs') return this.client.logInputs(runId, op.datasets);
    if (op.op === 'artifact') return this.client.uploadArtifact(this.remote!, op.path, fs.readFileSync(op.file!));
    if (op.op === 'end') return this.client.updateRun(runId, op.status, op.endTime);
  }

  private dequeue(n: number): void {
    for (const op of this.queue.splice(0, n)) {
      this.queued -= countEntities(op);
      op.done?.();
    }
  }

  private async drain(): Promise<void> {
    while (this.mode === 'online' && (this.queue.length > 0 || this.pumping)) {
      this.kick();
      await this.pumping;
    }
    if (this.replaying) await this.replaying;
  }

  // -------------------------------------------------------------- spool

  /** Creates the local copy of the run (same id as the server's, when there is one) and its journal. */
  private openSpool(remote: RemoteRun | null): RunInfo {
    const r = this.run!;
    this.local = new MlflowFileTracker(this.options.dir);
    const info = this.local.startRunSync({ experiment: r.experiment, runName: r.runName, runId: remote?.runId, startTime: r.startTime });
    this.spool = Spool.create(info.location, { trackingUri: this.client.baseUrl, experiment: r.experiment, runName: r.runName, remote });
    this.spool.lock();
    if (!remote) this.spool.append({ op: 'start', experiment: r.experiment, runName: r.runName, startTime: r.startTime, userId: r.userId });
    return info;
  }

  /** Writes one op to the local file store and the journal (the file store is what `mlflow ui` shows meanwhile). */
  private spoolWrite(op: QueuedOp): void {
    const local = this.local!;
    if (op.op === 'batch') {
      local.logParams(Object.fromEntries(op.params.map((p) => [p.key, p.value])));
      local.setTags(Object.fromEntries(op.tags.map((t) => [t.key, t.value])));
      for (const m of op.metrics) local.logMetrics({ [m.key]: decodeMetricValue(m.value) }, m.step, m.timestamp);
      this.spool!.append({ op: 'batch', metrics: op.metrics, params: op.params, tags: op.tags });
    } else if (op.op === 'artifact') {
      local.copyArtifact(op.file!, op.path);
      this.spool!.append({ op: 'artifact', path: op.path });
      op.done?.();
    } else if (op.op === 'end') {
      local.endRunSync(op.status, undefined, op.endTime);
      this.spool!.append({ op: 'end', status: op.status, endTime: op.endTime });
    } else if (op.op === 'inputs') this.spool!.append({ op: 'inputs', datasets: op.datasets });
  }

  /** Moves everything unacknowledged to the spool, in order; `inDoubt` head entries may have reached the server. */
  private goOffline(err: Error, inDoubt: number): void {
    if (!this.spool) this.openSpool(this.remote);
    else this.spool.lock();
    const first = this.spool!.nextSeq;
    const ops = this.queue.splice(0);
    this.queued = 0;
    this.spillRequested = false;
    this.mode = 'spooling';
    for (const op of ops) this.spoolWrite(op);
    if (inDoubt > 0) this.spool!.markSending(first, first + inDoubt - 1);
    this.lastFailure = err;
    const until = err instanceof MlflowRequestError && err.kind !== 'outage' ? 'until that is fixed' : 'until it answers again';
    this.log(`loom: MLflow server ${this.client.baseUrl}: ${err.message}; logging to ${this.spool!.runDir} ${until}`);
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.mode !== 'spooling') return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.tryReplay().then((ok) => {
        if (!ok && this.mode === 'spooling') this.scheduleRetry();
      });
    }, this.options.retryIntervalMs);
    this.retryTimer.unref();
  }

  /** Replays the journal; when it is empty afterwards, logging goes straight to the server again. */
  private tryReplay(): Promise<boolean> {
    if (this.replaying) return this.replaying;
    const spool = this.spool!;
    this.replaying = (async () => {
      try {
        await replaySpool(spool, this.client, (m) => this.errors.push(m), this.limits);
      } catch (e) {
        if (keepForLater(e)) this.lastFailure = e;
        else this.errors.push(e instanceof Error ? e.message : String(e));
        return false;
      }
      // Synchronous from here: no logging call can slip between the check and the switch.
      if (spool.pending().length > 0 || this.mode !== 'spooling') return spool.pending().length === 0;
      this.remote = spool.state.remote;
      this.lastFailure = null;
      this.mode = 'online';
      spool.unlock();
      this.log(`loom: MLflow server ${this.client.baseUrl} answers again; the spooled part of the run is uploaded`);
      return true;
    })().finally(() => {
      this.replaying = null;
    });
    return this.replaying;
  }

  private clearTimers(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.flushTimer = this.retryTimer = null;
  }
}

// ---------------------------------------------------------------- loom sync

export interface SyncResult {
  runDir: string;
  outcome: 'synced' | 'up-to-date' | 'pending' | 'skipped';
  sent: number;
  message: string;
}

/**
 * `loom sync`: replays every spooled run under `dir` to its tracking server, in the order they started. A run that
 * already exists on a server goes to that server only; `trackingUri` (default: the one recorded) applies to runs
 * created offline. Runs still used by a live process are left alone. Credentials and TLS settings come from
 * MLflow's variables, as for a run (`connection`, default {@link mlflowConnectionFromEnv}), or from `trackingUri`'s
 * `user:password@` part; the journal and its state hold the server's address without them. A run keeps the
 * experiment name it was started with (which already honoured `MLFLOW_EXPERIMENT_NAME`).
 */
export async function syncStore(opts: {
  dir: string;
  trackingUri?: string;
  timeoutMs?: number;
  connection?: MlflowConnection;
  log?: (line: string) => void;
}): Promise<SyncResult[]> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const root = path.resolve(opts.dir);
  if (!fs.existsSync(root)) throw new ConfigError('--dir', `no MLflow file store at ${root}`);
  const clientOptions = { timeoutMs: opts.timeoutMs, connection: opts.connection ?? mlflowConnectionFromEnv() };
  const wantedClient = opts.trackingUri === undefined ? undefined : new MlflowRestClient(opts.trackingUri, clientOptions);
  const spools: Spool[] = [];
  for (const exp of fs.readdirSync(root)) {
    const expDir = path.join(root, exp);
    if (!fs.statSync(expDir).isDirectory()) continue;
    for (const run of fs.readdirSync(expDir)) {
      const s = fs.existsSync(path.join(expDir, run, SPOOL_DIR)) ? Spool.open(path.join(expDir, run)) : null;
      if (s) spools.push(s);
    }
  }
  const startOf = (s: Spool) => Number(readRunMeta(s.runDir)?.start_time ?? 0);
  spools.sort((a, b) => startOf(a) - startOf(b));
  const results: SyncResult[] = [];
  for (const spool of spools) {
    const result = (outcome: SyncResult['outcome'], sent: number, message: string) => {
      results.push({ runDir: spool.runDir, outcome, sent, message });
      log(`${spool.runDir}: ${message}`);
    };
    if (spool.pending().length === 0) {
      results.push({ runDir: spool.runDir, outcome: 'up-to-date', sent: 0, message: 'nothing to upload' });
      continue;
    }
    const pid = spool.lockedBy();
    if (pid !== null) {
      result('skipped', 0, `in use by the running process ${pid}`);
      continue;
    }
    const wanted = wantedClient?.baseUrl;
    if (wanted && spool.state.remote && wanted !== spool.state.trackingUri) {
      result('skipped', 0, `belongs to run ${spool.state.remote.runId} on ${spool.state.trackingUri}, not ${wanted}`);
      continue;
    }
    if (wanted && !spool.state.remote) spool.state.trackingUri = wanted;
    const client =
      wantedClient && wantedClient.baseUrl === spool.state.trackingUri ? wantedClient : new MlflowRestClient(spool.state.trackingUri, clientOptions);
    const refused: string[] = [];
    try {
      const sent = await replaySpool(spool, client, (m) => refused.push(m));
      const url = client.runUrl(spool.state.remote!);
      result('synced', sent, `uploaded ${sent} entries to ${url}${refused.length ? `; refused by the server:\n  ${refused.join('\n  ')}` : ''}`);
    } catch (e) {
      result('pending', 0, `not uploaded (${e instanceof Error ? e.message : String(e)}); ${spool.pending().length} entries still pending`);
    }
  }
  return results;
}

const httpUrl = z
  .string()
  .refine((u) => /^https?:\/\/[^\s/]+/i.test(u) && URL.canParse(u), { message: 'expected an http(s) URL such as http://localhost:5000' });

export default definePlugin({
  kind: 'tracker',
  name: 'mlflow-rest',
  description: 'an MLflow tracking server over REST; spools to the local file store and replays when the server is unreachable',
  schema: z.object({
    uri: httpUrl,
    dir: z.string().min(1).default('mlruns'),
    flushIntervalMs: z.number().int().positive().default(1000),
    maxQueue: z.number().int().min(LOG_BATCH_LIMITS.entities).default(50_000),
    timeoutMs: z.number().int().positive().default(10_000),
    retryIntervalMs: z.number().int().positive().default(10_000),
  }),
  create: (o) => new MlflowRestTracker(o),
});
