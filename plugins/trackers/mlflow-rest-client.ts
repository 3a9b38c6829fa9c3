/**
 * A small typed client for MLflow 2.x's REST API (https://mlflow.org/docs/latest/rest-api.html), and the
 * `runs/log-batch` limits with a splitter that keeps every request inside them.
 *
 * Why not the npm `mlflow` package: it prints every request body to stdout, calls an endpoint MLflow 2.0 removed
 * and cannot upload artifacts (see CONTRIBUTING.md, Decisions). This client sends `Content-Type: application/json`
 * on every POST (the server answers 400 without it), keeps experiment ids as strings (they can exceed 2^53) and
 * classifies failures so the tracker can tell an outage from a rejection, and both from a credentials or TLS problem.
 *
 * It honours MLflow's own environment variables for a protected server ({@link mlflowConnectionFromEnv}):
 * credentials (HTTP basic or a bearer token) and TLS verification (a CA bundle, or none). Requests go through
 * `node:http`/`node:https` rather than the global `fetch`: fetch (Node's bundled undici) takes a custom CA or skips
 * verification only through an undici `Agent`, which Node does not export (it would need the `undici` package),
 * while `node:https` takes `ca` and `rejectUnauthorized` directly. Credentials never leave the request headers:
 * error messages are built without them and scrubbed of them ({@link MlflowRestClient}).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
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
export const decodeMetricValue = (v: number | string): number =>
  typeof v === 'number' ? v : v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : Number(v);

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
    if (REQUEST_OVERHEAD + size > limits.bytes)
      throw new ConfigError(`${kind.slice(0, -1)} ${e.key}`, `takes ${size} bytes; one MLflow log-batch request holds at most ${limits.bytes}`);
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

/**
 * Packs batches into one request by {@link canMerge}'s rule, keeping running counts, bytes and key sets so that
 * packing n batches costs O(n) (calling `canMerge` for each would re-measure the growing request: O(n^2), seconds for
 * a queue of a few thousand single-metric batches).
 */
export class BatchPacker {
  readonly batch: MlflowBatch = { metrics: [], params: [], tags: [] };
  private bytes = REQUEST_OVERHEAD;
  private readonly paramKeys = new Set<string>();
  private readonly tagKeys = new Set<string>();

  constructor(private readonly limits: BatchLimits = LOG_BATCH_LIMITS) {}

  /** Adds `b` when `canMerge(this.batch, b)` holds and returns true; otherwise adds nothing and returns false. */
  add(b: MlflowBatch): boolean {
    const { metrics, params, tags } = this.batch;
    const m = metrics.length + b.metrics.length;
    const p = params.length + b.params.length;
    const t = tags.length + b.tags.length;
    const l = this.limits;
    if (m > l.metrics || p > l.params || t > l.tags || m + p + t > l.entities) return false;
    const size = batchBytes(b) - REQUEST_OVERHEAD;
    if (this.bytes + size > l.bytes) return false;
    if (b.params.some((e) => this.paramKeys.has(e.key)) || b.tags.some((e) => this.tagKeys.has(e.key))) return false;
    metrics.push(...b.metrics);
    params.push(...b.params);
    tags.push(...b.tags);
    for (const e of b.params) this.paramKeys.add(e.key);
    for (const e of b.tags) this.tagKeys.add(e.key);
    this.bytes += size;
    return true;
  }
}

// ---------------------------------------------------------------- errors

/** Connection-phase failures: the request never reached the server. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);

/** OpenSSL's and Node's codes for a server certificate that was not accepted (unknown CA, expired, wrong name). */
const CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

/** The variables that give credentials, as a message names them. */
export const CREDENTIAL_VARIABLES = 'MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (HTTP basic) or MLFLOW_TRACKING_TOKEN (bearer token)';

/**
 * What went wrong with a request:
 * - `outage`: the server is down or failing (connection refused, reset, timeout, 5xx, 429); it may succeed later.
 * - `auth`: the server refused the credentials or their permissions (401, 403). A person has to act (set the
 *   variables, get a permission), after which the same request succeeds: like an outage, the data are kept.
 * - `tls`: the TLS handshake failed (certificate not trusted, not HTTPS); kept for later for the same reason.
 * - `rejected`: the server refused the request itself (another 4xx); repeating it cannot help.
 */
export type FailureKind = 'outage' | 'auth' | 'tls' | 'rejected';

/**
 * A request that failed, with its {@link FailureKind}. `mayHaveApplied` means the server may have applied it before
 * failing (a timeout, a dropped connection, a 500): a replay must first check what arrived.
 */
export class MlflowRequestError extends LoomError {
  constructor(
    readonly endpoint: string,
    readonly status: number | null,
    readonly errorCode: string | null,
    detail: string,
    readonly kind: FailureKind,
    readonly mayHaveApplied: boolean,
  ) {
    super(`MLflow ${endpoint}: ${status === null ? '' : `HTTP ${status} `}${errorCode ? `${errorCode}: ` : ''}${detail}`);
  }

  /** The server is down or failing: the request may succeed later without anyone doing anything. */
  get outage(): boolean {
    return this.kind === 'outage';
  }
}

export const isOutage = (e: unknown): boolean => e instanceof MlflowRequestError && e.outage;

/**
 * Whether what a failed request carried must be kept for a later attempt: an outage, or a credentials or TLS
 * problem (the data are fine; the connection settings need fixing, then `loom sync` uploads them).
 */
export const keepForLater = (e: unknown): e is MlflowRequestError => e instanceof MlflowRequestError && e.kind !== 'rejected';

// ---------------------------------------------------------------- connection settings

/**
 * How to reach a protected tracking server, as MLflow's own clients read it from the environment
 * (mlflow/environment_variables.py, mlflow/utils/rest_utils.py): `MLFLOW_TRACKING_USERNAME` and
 * `MLFLOW_TRACKING_PASSWORD` (HTTP basic, used when both are set; they win over a token, as in MLflow),
 * `MLFLOW_TRACKING_TOKEN` (`Authorization: Bearer`), `MLFLOW_TRACKING_INSECURE_TLS` (true/false/1/0: skip certificate
 * verification) and `MLFLOW_TRACKING_SERVER_CERT_PATH` (a PEM CA bundle to verify the server with, instead of the
 * system's; as `requests`' `verify=<path>` does). An empty variable counts as unset.
 */
export interface MlflowConnection {
  username?: string;
  password?: string;
  token?: string;
  insecureTls?: boolean;
  serverCertPath?: string;
}

/**
 * Reads {@link MlflowConnection} from `env`, refusing what MLflow refuses (a malformed boolean, both TLS settings at
 * once) and, unlike MLflow, a username without a password or the reverse (MLflow would silently send neither and the
 * server would answer 401). Errors name the variable, never its value.
 */
export function mlflowConnectionFromEnv(env: NodeJS.ProcessEnv = process.env): MlflowConnection {
  const get = (k: string) => env[k] || undefined;
  const c: MlflowConnection = {
    username: get('MLFLOW_TRACKING_USERNAME'),
    password: get('MLFLOW_TRACKING_PASSWORD'),
    token: get('MLFLOW_TRACKING_TOKEN'),
    serverCertPath: get('MLFLOW_TRACKING_SERVER_CERT_PATH'),
  };
  if ((c.username === undefined) !== (c.password === undefined)) {
    const [set, unset] =
      c.username === undefined ? ['MLFLOW_TRACKING_PASSWORD', 'MLFLOW_TRACKING_USERNAME'] : ['MLFLOW_TRACKING_USERNAME', 'MLFLOW_TRACKING_PASSWORD'];
    throw new ConfigError(unset, `is not set but ${set} is; HTTP basic authentication needs both`);
  }
  const insecure = get('MLFLOW_TRACKING_INSECURE_TLS');
  if (insecure !== undefined) {
    const v = insecure.toLowerCase();
    if (!['true', 'false', '1', '0'].includes(v))
      throw new ConfigError('MLFLOW_TRACKING_INSECURE_TLS', `must be one of true, false, 1, 0 (case-insensitive), got ${JSON.stringify(insecure)}`);
    c.insecureTls = v === 'true' || v === '1';
  }
  if (c.insecureTls && c.serverCertPath)
    throw new ConfigError(
      'MLFLOW_TRACKING_INSECURE_TLS',
      'is true while MLFLOW_TRACKING_SERVER_CERT_PATH is set; set only one (skip verification, or verify with that CA bundle)',
    );
  return c;
}

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
  /** Credentials and TLS settings; default: MLflow's environment variables ({@link mlflowConnectionFromEnv}). */
  connection?: MlflowConnection;
}

interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

export class MlflowRestClient {
  /** The server's URL without credentials: the only form of it that goes into messages, state files and logs. */
  readonly baseUrl: string;
  private readonly auth: string | undefined;
  /** Which settings the credentials came from, for messages (names only, never values). */
  private readonly authSource: string | null;
  private readonly secrets: string[];
  private readonly timeoutMs: number;
  private readonly agent: http.Agent;
  private readonly certPath: string | undefined;

  constructor(uri: string, opts: MlflowClientOptions = {}) {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      throw new ConfigError('tracking URI', `expected an http(s) URL such as http://localhost:5000, got "${redactUserinfo(uri)}"`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new ConfigError('tracking URI', `expected http:// or https://, got "${url.protocol}" in "${redactUserinfo(uri)}"`);
    const conn = opts.connection ?? mlflowConnectionFromEnv();
    const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    const urlUser = decodeURIComponent(url.username);
    const urlPassword = decodeURIComponent(url.password);
    // MLflow's order: basic credentials from the variables, then a token. Credentials in the URL (which fetch and
    // MLflow's Python client would not send) count as basic ones, after the variables.
    if (conn.username !== undefined && conn.password !== undefined)
      [this.auth, this.authSource] = [basic(conn.username, conn.password), 'MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD'];
    else if (urlUser) [this.auth, this.authSource] = [basic(urlUser, urlPassword), 'the tracking URI'];
    else if (conn.token !== undefined) [this.auth, this.authSource] = [`Bearer ${conn.token}`, 'MLFLOW_TRACKING_TOKEN'];
    else [this.auth, this.authSource] = [undefined, null];
    // Longest first, so that a secret containing another is replaced whole. Shorter strings cannot be hidden usefully.
    this.secrets = [conn.username, conn.password, conn.token, urlUser, urlPassword, this.auth, this.auth?.split(' ')[1]]
      .filter((v): v is string => !!v && v.length >= 3)
      .sort((a, b) => b.length - a.length);
    url.username = '';
    url.password = '';
    this.baseUrl = url.href.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.certPath = conn.serverCertPath;
    let ca: Buffer | undefined;
    if (conn.serverCertPath !== undefined) {
      try {
        ca = fs.readFileSync(conn.serverCertPath);
      } catch (e) {
        throw new ConfigError(
          'MLFLOW_TRACKING_SERVER_CERT_PATH',
          `cannot read the CA bundle ${conn.serverCertPath}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
        );
      }
    }
    // One connection per request (no keep-alive): a request never meets a connection the server closed while it was
    // idle, so a reset always means the server went away during that request. Logging sends about one request a
    // second; a TLS session is resumed from the agent's cache rather than negotiated afresh.
    this.agent =
      url.protocol === 'https:' ? new https.Agent({ keepAlive: false, ca, rejectUnauthorized: !conn.insecureTls }) : new http.Agent({ keepAlive: false });
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
    await this.send(
      'PUT',
      `${this.baseUrl}/api/2.0/mlflow-artifacts/artifacts/${rel}`,
      'mlflow-artifacts PUT',
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength),
      'application/octet-stream',
    );
  }

  private call<T = unknown>(method: 'GET' | 'POST', endpoint: string, body?: object): Promise<T> {
    const name = endpoint.split('?')[0]!;
    return this.send(
      method,
      `${this.baseUrl}/api/2.0/mlflow/${endpoint}`,
      name,
      body === undefined ? undefined : Buffer.from(JSON.stringify(body)),
      'application/json',
    ) as Promise<T>;
  }

  /** `text` with every credential replaced by `***` (a server or proxy could echo a header back in an error). */
  private redact(text: string): string {
    let out = text;
    for (const s of this.secrets) out = out.split(s).join('***');
    return out;
  }

  private fail(name: string, status: number | null, errorCode: string | null, detail: string, kind: FailureKind, mayHaveApplied: boolean): MlflowRequestError {
    return new MlflowRequestError(name, status, errorCode, this.redact(detail), kind, mayHaveApplied);
  }

  private async send(method: string, url: string, name: string, body: Buffer | undefined, contentType: string): Promise<unknown> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) Object.assign(headers, { 'content-type': contentType, 'content-length': String(body.length) });
    if (this.auth) headers.authorization = this.auth;
    let res: HttpAnswer;
    try {
      res = await this.request(method, new URL(url), headers, body);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const code = err.code ?? err.name;
      if (CERT_CODES.has(code)) {
        const hint =
          this.certPath !== undefined
            ? `it is not signed by the CA bundle in MLFLOW_TRACKING_SERVER_CERT_PATH (${this.certPath}); point that variable at the bundle that signed it, or set MLFLOW_TRACKING_INSECURE_TLS=true to skip verification`
            : 'set MLFLOW_TRACKING_SERVER_CERT_PATH to the CA bundle that signed it, or MLFLOW_TRACKING_INSECURE_TLS=true to skip verification';
        throw this.fail(name, null, null, `TLS: the server's certificate was not accepted (${code}: ${err.message}); ${hint}`, 'tls', false);
      }
      if (/^ERR_(SSL|TLS)_|^EPROTO$/.test(code))
        throw this.fail(name, null, null, `TLS handshake failed (${code}: ${err.message}); is ${this.baseUrl} an HTTPS server?`, 'tls', false);
      throw this.fail(name, null, null, `${code}: ${err.message}`, 'outage', !CONNECT_CODES.has(code));
    }
    const { status, text } = res;
    let json: { error_code?: string; message?: string } = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      if (status >= 200 && status < 300)
        throw this.fail(name, status, null, `expected a JSON answer, got ${JSON.stringify(text.slice(0, 200))}`, 'rejected', false);
    }
    if (status >= 200 && status < 300) return json;
    const said = (json.message ?? text).trim().slice(0, 300);
    if (status === 401) {
      const sent = this.authSource ? `the credentials from ${this.authSource} were refused` : 'none were sent';
      throw this.fail(
        name,
        status,
        json.error_code ?? null,
        `authentication failed: the server wants credentials and ${sent}; set ${CREDENTIAL_VARIABLES} (server said: ${JSON.stringify(said)})`,
        'auth',
        false,
      );
    }
    if (status === 403) {
      const who = this.authSource ? `the account from ${this.authSource}` : 'an anonymous client';
      throw this.fail(
        name,
        status,
        json.error_code ?? null,
        `permission denied: the server does not let ${who} do this; ask its admin for permission on the experiment, or set ${CREDENTIAL_VARIABLES} to an account that has it (server said: ${JSON.stringify(said)})`,
        'auth',
        false,
      );
    }
    if (status >= 300 && status < 400) {
      // Not followed: a redirected POST loses its body, and credentials must not travel to another host.
      throw this.fail(
        name,
        status,
        null,
        `redirected to ${String(res.headers.location ?? '(no location)')}; use that address as the tracking URI`,
        'rejected',
        false,
      );
    }
    const outage = status >= 500 || status === 429 || status === 408;
    const notApplied = status === 502 || status === 503 || status === 504 || status === 429 || status === 408;
    throw this.fail(name, status, json.error_code ?? null, json.message ?? text.slice(0, 500), outage ? 'outage' : 'rejected', outage && !notApplied);
  }

  /** One HTTP(S) exchange, the whole answer read within `timeoutMs` (else the request is destroyed: ETIMEDOUT). */
  private request(method: string, url: URL, headers: Record<string, string>, body: Buffer | undefined): Promise<HttpAnswer> {
    return new Promise<HttpAnswer>((resolve, reject) => {
      let settled = false;
      const settle = (f: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        f();
      };
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => settle(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') })));
        res.on('error', (e) => settle(() => reject(e)));
        res.on('close', () => settle(() => reject(Object.assign(new Error('the connection closed before the answer was complete'), { code: 'ECONNRESET' }))));
      });
      const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${this.timeoutMs} ms`), { code: 'ETIMEDOUT' })), this.timeoutMs);
      req.on('error', (e) => settle(() => reject(e)));
      req.end(body);
    });
  }
}

/** A URI with any `user:password@` part replaced, for messages about a malformed URI. */
export function redactUserinfo(uri: string): string {
  return uri.replace(/^([a-z][\w+.-]*:\/\/)[^/@\s]*@/i, '$1***@');
}
