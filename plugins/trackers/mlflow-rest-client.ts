/**
 * A small typed client for MLflow 2.x's REST API (https://mlflow.org/docs/latest/rest-api.html), and the
 * `runs/log-batch` limits with a splitter that keeps every request inside them.
 *
 * Why not the npm `mlflow` package: it prints every request body to stdout, calls an endpoint MLflow 2.0 removed
 * and cannot upload artifacts (see CONTRIBUTING.md, Decisions). This client uses Node 20's global `fetch`, sends
 * `Content-Type: application/json` on every POST (the server answers 400 without it), keeps experiment ids as
 * strings (they can exceed 2^53) and classifies failures so the tracker can tell an outage from a rejection.
 */
import { ConfigError, LoomError, type RunStatus } from '../../core';

export interface MlflowMetric {
  key: string;
  /** Non-finite values travel as the strings protobuf's JSON mapping uses: "NaN", "Infinity", "-Infinity". */
  value: number | string;
  timestamp: number;
  step: number;
}
export interface MlflowKeyValue {
  key: string;
  value: string;
}
export interface MlflowBatch {
  metrics: MlflowMetric[];
  params: MlflowKeyValue[];
  tags: MlflowKeyValue[];
}
/** One entry of `runs/log-inputs` (MLflow's DatasetInput). */
export interface MlflowDatasetInput {
  dataset: { name: string; digest: string; source_type: string; source: string; schema?: string; profile?: string };
  tags: MlflowKeyValue[];
}

/** What one `runs/log-batch` call may hold (MLflow's `_validate_batch_log_limits` and request-size check). */
export const LOG_BATCH_LIMITS = { metrics: 1000, params: 100, tags: 100, entities: 1000, bytes: 1_000_000 } as const;
export type BatchLimits = { [K in keyof typeof LOG_BATCH_LIMITS]: number };

/** Room left in a request for `{"run_id":"<32 hex>", ...}` and the three array brackets. */
const REQUEST_OVERHEAD = 128;

/** JSON encoding of a metric value: protobuf's JSON mapping spells non-finite doubles as strings. */
export const encodeMetricValue = (v: number): number | string => (Number.isNaN(v) ? 'NaN' : v === Infinity ? 'Infinity' : v === -Infinity ? '-Infinity' : v);
export const decodeMetricValue = (v: number | string): number => (typeof v === 'number' ? v : v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : Number(v));

const entityBytes = (e: object): number => Buffer.byteLength(JSON.stringify(e)) + 1;

/** Bytes a batch takes in a request body (an upper bound: merging two batches only removes brackets). */
export function batchBytes(b: MlflowBatch): number {
  let n = REQUEST_OVERHEAD;
  for (const e of b.params) n += entityBytes(e);
  for (const e of b.tags) n += entityBytes(e);
  for (const e of b.metrics) n += entityBytes(e);
  return n;
}

/**
 * Splits one batch into batches that each fit `limits`, keeping params, tags and metrics in their order.
 * Throws when a single entity alone exceeds the byte limit (no request could carry it).
 */
export function splitBatch(b: MlflowBatch, limits: BatchLimits = LOG_BATCH_LIMITS): MlflowBatch[] {
  const out: MlflowBatch[] = [];
  let cur: MlflowBatch = { metrics: [], params: [], tags: [] };
  let bytes = REQUEST_OVERHEAD;
  const count = () => cur.metrics.length + cur.params.length + cur.tags.length;
  const add = (kind: keyof MlflowBatch, e: MlflowMetric | MlflowKeyValue) => {
    const size = entityBytes(e);
    if (REQUEST_OVERHEAD + size > limits.bytes) throw new ConfigError(`${kind.slice(0, -1)} ${e.key}`, `takes ${size} bytes; one MLflow log-batch request holds at most ${limits.bytes}`);
    const full = cur[kind].length >= limits[kind] || count() >= limits.entities || bytes + size > limits.bytes;
    if (full) {
      out.push(cur);
      cur = { metrics: [], params: [], tags: [] };
      bytes = REQUEST_OVERHEAD;
    }
    (cur[kind] as (MlflowMetric | MlflowKeyValue)[]).push(e);
    bytes += size;
  };
  for (const p of b.params) add('params', p);
  for (const t of b.tags) add('tags', t);
  for (const m of b.metrics) add('metrics', m);
  if (count() > 0 || out.length === 0) out.push(cur);
  return out;
}

/** Whether batch `b` can join `acc` in one request: within every limit and without repeating a param or tag key. */
export function canMerge(acc: MlflowBatch, b: MlflowBatch, limits: BatchLimits = LOG_BATCH_LIMITS): boolean {
  const m = acc.metrics.length + b.metrics.length;
  const p = acc.params.length + b.params.length;
  const t = acc.tags.length + b.tags.length;
  if (m > limits.metrics || p > limits.params || t > limits.tags || m + p + t > limits.entities) return false;
  if (batchBytes(acc) + batchBytes(b) - REQUEST_OVERHEAD > limits.bytes) return false;
  const keys = (l: MlflowKeyValue[]) => new Set(l.map((e) => e.key));
  const pk = keys(acc.params);
  const tk = keys(acc.tags);
  return !b.params.some((e) => pk.has(e.key)) && !b.tags.some((e) => tk.has(e.key));
}

// ---------------------------------------------------------------- errors

/** Connection-phase failures: the request never reached the server. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);

/**
 * A request that failed. `outage` means the server is down or failing (connection refused, reset, timeout, 5xx,
 * 429): the request may succeed later, so the tracker keeps it for replay. Otherwise the server rejected it (4xx)
 * and repeating it cannot help. `mayHaveApplied` means the server may have applied it before failing (a timeout,
 * a dropped connection, a 500): a replay must first check what arrived.
 */
export class MlflowRequestError extends LoomError {
  constructor(
    readonly endpoint: string,
    readonly status: number | null,
    readonly errorCode: string | null,
    detail: string,
    readonly outage: boolean,
    readonly mayHaveApplied: boolean,
  ) {
    super(`MLflow ${endpoint}: ${status === null ? '' : `HTTP ${status} `}${errorCode ? `${errorCode}: ` : ''}${detail}`);
  }
}

export const isOutage = (e: unknown): boolean => e instanceof MlflowRequestError && e.outage;

// ---------------------------------------------------------------- client

export interface RemoteRun {
  runId: string;
  experimentId: string;
  /** Path under `/api/2.0/mlflow-artifacts/artifacts/` where the run's artifacts go, e.g. `12/ab…/artifacts`. */
  artifactPath: string;
}

export interface MlflowClientOptions {
  /** Per-request limit; a request still running then is aborted and counts as an outage. */
  timeoutMs?: number;
  /** For tests; default: the global fetch. */
  fetch?: typeof fetch;
}

export class MlflowRestClient {
  readonly baseUrl: string;
  private readonly auth: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;

  constructor(uri: string, opts: MlflowClientOptions = {}) {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      throw new ConfigError('tracking URI', `expected an http(s) URL such as http://localhost:5000, got "${uri}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('tracking URI', `expected http:// or https://, got "${url.protocol}" in "${uri}"`);
    // fetch refuses URLs with credentials; MLflow's clients send them as HTTP basic auth.
    if (url.username) this.auth = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
    url.username = '';
    url.password = '';
    this.baseUrl = url.href.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.fetchFn = opts.fetch ?? fetch;
  }

  /** The run's page in the MLflow UI. */
  runUrl(run: RemoteRun): string {
    return `${this.baseUrl}/#/experiments/${run.experimentId}/runs/${run.runId}`;
  }

  async getExperimentByName(name: string): Promise<string | null> {
    try {
      const r = await this.call<{ experiment: { experiment_id: string } }>('GET', `experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`);
      return String(r.experiment.experiment_id);
    } catch (e) {
      if (e instanceof MlflowRequestError && e.errorCode === 'RESOURCE_DOES_NOT_EXIST') return null;
      throw e;
    }
  }

  /** The experiment's id, creating it when absent; another client creating it at the same moment is fine. */
  async getOrCreateExperiment(name: string): Promise<string> {
    const found = await this.getExperimentByName(name);
    if (found !== null) return found;
    try {
      const r = await this.call<{ experiment_id: string }>('POST', 'experiments/create', { name });
      return String(r.experiment_id);
    } catch (e) {
      if (!(e instanceof MlflowRequestError && e.errorCode === 'RESOURCE_ALREADY_EXISTS')) throw e;
      const raced = await this.getExperimentByName(name);
      if (raced === null) throw e;
      return raced;
    }
  }

  async createRun(o: { experimentId: string; runName: string; startTime: number; userId: string; tags: MlflowKeyValue[] }): Promise<RemoteRun> {
    const r = await this.call<{ run: { info: { run_id: string; experiment_id: string; artifact_uri?: string } } }>('POST', 'runs/create', {
      experiment_id: o.experimentId,
      run_name: o.runName,
      start_time: o.startTime,
      user_id: o.userId,
      tags: o.tags,
    });
    const { run_id: runId, experiment_id: experimentId, artifact_uri: uri } = r.run.info;
    // With proxied artifacts (MLflow 2's default) the artifact URI is mlflow-artifacts:[//host]/<exp>/<run>/artifacts.
    const m = /^mlflow-artifacts:(?:\/\/[^/]*)?\/(.+)$/.exec(uri ?? '');
    return { runId, experimentId: String(experimentId), artifactPath: m ? m[1]!.replace(/\/+$/, '') : `${experimentId}/${runId}/artifacts` };
  }

  async logBatch(runId: string, b: MlflowBatch): Promise<void> {
    await this.call('POST', 'runs/log-batch', { run_id: runId, metrics: b.metrics, params: b.params, tags: b.tags });
  }

  async logInputs(runId: string, datasets: MlflowDatasetInput[]): Promise<void> {
    await this.call('POST', 'runs/log-inputs', { run_id: runId, datasets });
  }

  async updateRun(runId: string, status: Exclude<RunStatus, 'RUNNING'>, endTime: number): Promise<void> {
    await this.call('POST', 'runs/update', { run_id: runId, status, end_time: endTime });
  }

  /** Marks an ended run RUNNING again, to continue it (`--resume`). */
  async reopenRun(runId: string): Promise<void> {
    await this.call('POST', 'runs/update', { run_id: runId, status: 'RUNNING' });
  }

  /** Every logged value of one metric, all pages. */
  async getMetricHistory(runId: string, key: string): Promise<MlflowMetric[]> {
    const out: MlflowMetric[] = [];
    let token: string | undefined;
    do {
      const q = `run_id=${encodeURIComponent(runId)}&metric_key=${encodeURIComponent(key)}&max_results=25000${token ? `&page_token=${encodeURIComponent(token)}` : ''}`;
      const r = await this.call<{ metrics?: MlflowMetric[]; next_page_token?: string }>('GET', `metrics/get-history?${q}`);
      out.push(...(r.metrics ?? []).map((m) => ({ ...m, timestamp: Number(m.timestamp), step: Number(m.step ?? 0) })));
      token = r.next_page_token || undefined;
    } while (token);
    return out;
  }

  /** Uploads bytes through the tracking server's artifact proxy (`mlflow server --serve-artifacts`, MLflow 2's default). */
  async uploadArtifact(run: RemoteRun, artifactPath: string, bytes: Uint8Array): Promise<void> {
    const rel = [...run.artifactPath.split('/'), ...artifactPath.split('/')].filter(Boolean).map(encodeURIComponent).join('/');
    await this.send('PUT', `${this.baseUrl}/api/2.0/mlflow-artifacts/artifacts/${rel}`, 'mlflow-artifacts PUT', bytes, 'application/octet-stream');
  }

  private call<T = unknown>(method: 'GET' | 'POST', endpoint: string, body?: object): Promise<T> {
    const name = endpoint.split('?')[0]!;
    return this.send(method, `${this.baseUrl}/api/2.0/mlflow/${endpoint}`, name, body === undefined ? undefined : JSON.stringify(body), 'application/json') as Promise<T>;
  }

  private async send(method: string, url: string, name: string, body: string | Uint8Array | undefined, contentType: string): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = contentType;
    if (this.auth) headers.authorization = this.auth;
    let res: Response;
    let text: string;
    try {
      res = await this.fetchFn(url, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
      text = await res.text();
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      const code = err.cause?.code ?? (err.name === 'TimeoutError' ? 'ETIMEDOUT' : undefined);
      const connect = code !== undefined && CONNECT_CODES.has(code);
      throw new MlflowRequestError(name, null, null, `${code ?? err.name}: ${err.cause?.message ?? err.message}`, true, !connect);
    }
    let json: { error_code?: string; message?: string } = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      if (res.ok) throw new MlflowRequestError(name, res.status, null, `expected a JSON answer, got ${JSON.stringify(text.slice(0, 200))}`, false, false);
    }
    if (res.ok) return json;
    const outage = res.status >= 500 || res.status === 429 || res.status === 408;
    const notApplied = res.status === 502 || res.status === 503 || res.status === 504 || res.status === 429 || res.status === 408;
    throw new MlflowRequestError(name, res.status, json.error_code ?? null, json.message ?? text.slice(0, 500), outage, outage && !notApplied);
  }
}
