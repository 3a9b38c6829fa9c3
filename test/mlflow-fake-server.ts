/**
 * An in-process MLflow 2.x tracking server for tests (node:http), behaving as a real MLflow 2.12 server was seen to
 * (shared/ARCHITECTURE.md, "Experiment tracking"): POSTs without `Content-Type: application/json` get 400;
 * `experiments/get-by-name` answers 404 RESOURCE_DOES_NOT_EXIST for a missing experiment; a duplicate
 * `experiments/create` answers 400 RESOURCE_ALREADY_EXISTS; re-logging a param with another value answers 400
 * INVALID_PARAMETER_VALUE; `runs/log-batch` rejects requests over its limits (1000 metrics, 100 params, 100 tags,
 * 1000 entities, 1,000,000 bytes) and metrics without a timestamp; artifact PUTs store the bytes.
 *
 * Metrics are stored as an append-only list (as MLflow's file store does), so a test sees every duplicate.
 * `fault` lets a test make the server fail: answer 503, apply a request and then drop the connection, or hang.
 * `close()` then `restart()` is a killed and restarted server: open connections are cut, a request applied whose
 * answer was still waiting (`answerDelayMs`) loses its answer, and the data survive (as a database backend's do).
 *
 * Authentication, where a test asks for it (`auth`), as `mlflow server --app-name basic-auth` (MLflow 2.x) does:
 * every request (API and artifacts) needs an `Authorization` header; a missing, malformed or wrong one gets 401
 * with `WWW-Authenticate: Basic realm="mlflow"` and MLflow's text/html body; `permission` may refuse an
 * authenticated user with 403 "Permission denied" (MLflow's answer when a user lacks the experiment's permission).
 * MLflow's own app accepts only HTTP basic; `bearer` stands for a server behind a proxy or custom auth function that
 * takes `Authorization: Bearer <token>` (answered the same way, with a `Bearer` challenge).
 * `tls` serves HTTPS with the given key and certificate.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

export interface FakeMetric {
  key: string;
  value: number;
  timestamp: number;
  step: number;
}
export interface FakeRun {
  info: {
    run_id: string;
    run_uuid: string;
    experiment_id: string;
    run_name: string;
    status: string;
    start_time: number;
    end_time: number | null;
    artifact_uri: string;
    lifecycle_stage: string;
    user_id: string;
  };
  params: Map<string, string>;
  tags: Map<string, string>;
  metrics: FakeMetric[];
  inputs: { dataset: Record<string, string>; tags: { key: string; value: string }[] }[];
}
/**
 * What a fault hook may answer: nothing (serve normally), an HTTP status to fail with (nothing applied),
 * 'drop-after-apply' (apply the request, then cut the connection without an answer) or 'hang' (never answer).
 */
export type Fault = undefined | number | 'drop-after-apply' | 'hang';

/** Who may use the server: basic users (name -> password) and bearer tokens. */
export interface FakeAuth {
  basic?: Record<string, string>;
  bearer?: string[];
}

export interface FakeMlflowOptions {
  /** Port to listen on; 0 (default) picks a free one. */
  port?: number;
  /** Require credentials (see the header comment); can be changed later through `FakeMlflow.auth`. */
  auth?: FakeAuth;
  /** Serve HTTPS with this PEM key and certificate. */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

/** MLflow 2.x basic-auth's 401 body (mlflow/server/auth/__init__.py, make_basic_auth_response). */
export const MLFLOW_401_BODY =
  'You are not authenticated. Please see https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow on how to authenticate.';

export interface FakeMlflow {
  readonly url: string;
  readonly port: number;
  readonly experiments: Map<string, { experiment_id: string; name: string; lifecycle_stage: string; artifact_location: string }>;
  readonly runs: Map<string, FakeRun>;
  readonly artifacts: Map<string, Buffer>;
  /** Every request answered: method, endpoint and status (0 when the connection was dropped). */
  readonly log: { method: string; path: string; status: number }[];
  fault: ((req: { method: string; path: string }) => Fault) | null;
  /** Credentials required from now on (null: none). */
  auth: FakeAuth | null;
  /** Whether an authenticated user may make this request; false answers 403 "Permission denied". */
  permission: ((who: string, req: { method: string; path: string }) => boolean) | null;
  /** Delay between applying a request and answering it, in ms (a kill in between loses the answer). */
  answerDelayMs: number | (() => number);
  /** Every Authorization header received, for tests that check what was sent. */
  readonly authorizations: (string | undefined)[];
  /** Stops listening and cuts open connections (the server "disappears"). */
  close(): Promise<void>;
  /** Listens again on the same port, with the same data (the server "comes back"). */
  restart(): Promise<void>;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const MAX_REQUEST_BYTES = 1_000_000;

export async function startFakeMlflow(options: FakeMlflowOptions | number = {}): Promise<FakeMlflow> {
  const opts = typeof options === 'number' ? { port: options } : options;
  const port = opts.port ?? 0;
  const authorizations: (string | undefined)[] = [];
  const experiments: FakeMlflow['experiments'] = new Map();
  const runs = new Map<string, FakeRun>();
  const artifacts = new Map<string, Buffer>();
  const log: FakeMlflow['log'] = [];
  // Ids beyond 2^53, as MLflow's stores can produce: a client that turns them into numbers corrupts them.
  let nextExp = 9007199254740993n;
  let nextRun = 1;
  experiments.set('0', { experiment_id: '0', name: 'Default', lifecycle_stage: 'active', artifact_location: 'mlflow-artifacts:/0' });

  const requireRun = (id: unknown): FakeRun => {
    const r = runs.get(String(id));
    if (!r) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Run with id=${String(id)} not found`);
    return r;
  };
  const invalid = (m: string) => new ApiError(400, 'INVALID_PARAMETER_VALUE', m);
  const num = (v: unknown): number => (v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : Number(v));

  function handle(method: string, path: string, query: URLSearchParams, body: Record<string, unknown>): unknown {
    const route = `${method} ${path}`;
    switch (route) {
      case 'GET /api/2.0/mlflow/experiments/get-by-name': {
        const name = query.get('experiment_name');
        const e = [...experiments.values()].find((x) => x.name === name);
        if (!e) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Could not find experiment with name '${name}'`);
        return { experiment: e };
      }
      case 'POST /api/2.0/mlflow/experiments/create': {
        const name = body.name;
        if (typeof name !== 'string' || !name) throw invalid("Missing value for required parameter 'name'.");
        if ([...experiments.values()].some((x) => x.name === name)) throw new ApiError(400, 'RESOURCE_ALREADY_EXISTS', `Experiment '${name}' already exists.`);
        const id = String(nextExp++);
        experiments.set(id, { experiment_id: id, name, lifecycle_stage: 'active', artifact_location: `mlflow-artifacts:/${id}` });
        return { experiment_id: id };
      }
      case 'POST /api/2.0/mlflow/runs/create': {
        const exp = experiments.get(String(body.experiment_id));
        if (!exp) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `No Experiment with id=${String(body.experiment_id)} exists`);
        const id = (nextRun++).toString(16).padStart(32, '0');
        const run: FakeRun = {
          info: {
            run_id: id,
            run_uuid: id,
            experiment_id: exp.experiment_id,
            run_name: String(body.run_name ?? ''),
            status: 'RUNNING',
            start_time: Number(body.start_time),
            end_time: null,
            artifact_uri: `mlflow-artifacts:/${exp.experiment_id}/${id}/artifacts`,
            lifecycle_stage: 'active',
            user_id: String(body.user_id ?? ''),
          },
          params: new Map(),
          tags: new Map(),
          metrics: [],
          inputs: [],
        };
        for (const t of (body.tags as { key: string; value: string }[] | undefined) ?? []) run.tags.set(t.key, t.value);
        if (run.info.run_name) run.tags.set('mlflow.runName', run.info.run_name);
        runs.set(id, run);
        return { run: { info: run.info, data: { tags: [...run.tags].map(([key, value]) => ({ key, value })) } } };
      }
      case 'POST /api/2.0/mlflow/runs/log-batch': {
        const run = requireRun(body.run_id);
        const metrics = (body.metrics as Record<string, unknown>[] | undefined) ?? [];
        const params = (body.params as { key: string; value: string }[] | undefined) ?? [];
        const tags = (body.tags as { key: string; value: string }[] | undefined) ?? [];
        if (metrics.length > 1000) throw invalid(`A batch logging request can contain at most 1000 metrics. Got ${metrics.length} metrics.`);
        if (params.length > 100) throw invalid(`A batch logging request can contain at most 100 params. Got ${params.length} params.`);
        if (tags.length > 100) throw invalid(`A batch logging request can contain at most 100 tags. Got ${tags.length} tags.`);
        const total = metrics.length + params.length + tags.length;
        if (total > 1000) throw invalid(`A batch logging request can contain at most 1000 metrics, params, and tags in total. Got ${total}.`);
        const keys = params.map((p) => p.key);
        if (new Set(keys).size !== keys.length) throw invalid('Duplicate parameter keys have been submitted.');
        for (const m of metrics)
          if (m.timestamp === undefined || m.key === undefined || m.value === undefined)
            throw invalid(`Missing value for required parameter 'metrics[].timestamp/key/value' in ${JSON.stringify(m)}`);
        for (const p of params) {
          const old = run.params.get(p.key);
          if (old !== undefined && old !== p.value)
            throw invalid(
              `Changing param values is not allowed. Param with key='${p.key}' was already logged with value='${old}' for run ID='${run.info.run_id}'. Attempted logging new value '${p.value}'.`,
            );
        }
        for (const p of params) run.params.set(p.key, p.value);
        for (const t of tags) run.tags.set(t.key, t.value);
        for (const m of metrics) run.metrics.push({ key: String(m.key), value: num(m.value), timestamp: Number(m.timestamp), step: Number(m.step ?? 0) });
        return {};
      }
      case 'POST /api/2.0/mlflow/runs/log-inputs': {
        const run = requireRun(body.run_id);
        for (const d of (body.datasets as FakeRun['inputs'] | undefined) ?? []) {
          const same = run.inputs.some((x) => x.dataset.name === d.dataset.name && x.dataset.digest === d.dataset.digest);
          if (!same) run.inputs.push(d);
        }
        return {};
      }
      case 'POST /api/2.0/mlflow/runs/update': {
        const run = requireRun(body.run_id);
        if (body.status !== undefined) {
          if (!['RUNNING', 'SCHEDULED', 'FINISHED', 'FAILED', 'KILLED'].includes(String(body.status)))
            throw invalid(`Invalid value ${String(body.status)} for parameter 'status'`);
          run.info.status = String(body.status);
        }
        if (body.end_time !== undefined) run.info.end_time = Number(body.end_time);
        return { run_info: run.info };
      }
      case 'GET /api/2.0/mlflow/metrics/get-history': {
        const run = requireRun(query.get('run_id'));
        const key = query.get('metric_key');
        const all = run.metrics.filter((m) => m.key === key);
        const max = Number(query.get('max_results') ?? 25000);
        const start = Number(query.get('page_token') ?? 0);
        const page = all.slice(start, start + max);
        const encode = (v: number) => (Number.isFinite(v) ? v : Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity');
        // Protobuf's JSON mapping leaves out an empty repeated field: a key never logged answers {}.
        return {
          ...(page.length ? { metrics: page.map((m) => ({ ...m, value: encode(m.value) })) } : {}),
          ...(start + max < all.length ? { next_page_token: String(start + max) } : {}),
        };
      }
      default:
        throw new ApiError(404, 'ENDPOINT_NOT_FOUND', `No endpoint ${route}`);
    }
  }

  /** The user a request authenticates as, or the challenge to answer it with (401). */
  const authenticate = (header: string | undefined): { who: string } | { challenge: string } => {
    const auth = api.auth!;
    const [scheme, value = ''] = (header ?? '').split(/\s+/, 2);
    if (scheme?.toLowerCase() === 'basic' && auth.basic) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const [user, password] = colon < 0 ? [decoded, undefined] : [decoded.slice(0, colon), decoded.slice(colon + 1)];
      if (password !== undefined && Object.hasOwn(auth.basic, user) && auth.basic[user] === password) return { who: user };
    }
    if (scheme?.toLowerCase() === 'bearer' && auth.bearer?.includes(value)) return { who: `token#${auth.bearer.indexOf(value)}` };
    return { challenge: auth.basic ? 'Basic realm="mlflow"' : 'Bearer realm="mlflow"' };
  };

  const sockets = new Set<Socket>();
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const method = req.method ?? 'GET';
      const raw = Buffer.concat(chunks);
      authorizations.push(req.headers.authorization);
      const text = (status: number, body: string, headers: Record<string, string> = {}) => {
        log.push({ method, path: url.pathname, status });
        res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers }).end(body);
      };
      if (api.auth) {
        const who = authenticate(req.headers.authorization);
        if ('challenge' in who) return text(401, MLFLOW_401_BODY, { 'www-authenticate': who.challenge });
        if (api.permission && !api.permission(who.who, { method, path: url.pathname })) return text(403, 'Permission denied');
      }
      const fault = api.fault?.({ method, path: url.pathname });
      const answer = (status: number, payload: unknown) => {
        log.push({ method, path: url.pathname, status });
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
      };
      if (typeof fault === 'number') return answer(fault, { error_code: 'TEMPORARILY_UNAVAILABLE', message: 'injected fault' });
      if (fault === 'hang') return void log.push({ method, path: url.pathname, status: 0 });
      let result: unknown;
      try {
        if (method === 'PUT' && url.pathname.startsWith('/api/2.0/mlflow-artifacts/artifacts/')) {
          artifacts.set(decodeURIComponent(url.pathname.slice('/api/2.0/mlflow-artifacts/artifacts/'.length)), raw);
          result = {};
        } else {
          let body: Record<string, unknown> = {};
          if (method === 'POST') {
            const type = req.headers['content-type'] ?? '';
            if (!type.startsWith('application/json')) throw invalid(`Bad Request. Content-Type must be one of ['application/json'], got '${type}'.`);
            if (path(url.pathname) === 'runs/log-batch' && raw.length > MAX_REQUEST_BYTES)
              throw invalid(`Batched logging API requests must be at most ${MAX_REQUEST_BYTES} bytes, got a request of size ${raw.length}.`);
            body = raw.length ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {};
          }
          result = handle(method, url.pathname, url.searchParams, body);
        }
      } catch (e) {
        if (e instanceof ApiError) return answer(e.status, { error_code: e.code, message: e.message });
        return answer(500, { error_code: 'INTERNAL_ERROR', message: String(e) });
      }
      if (fault === 'drop-after-apply') {
        log.push({ method, path: url.pathname, status: 0 });
        req.socket.destroy();
        return;
      }
      const delay = typeof api.answerDelayMs === 'function' ? api.answerDelayMs() : api.answerDelayMs;
      if (delay <= 0) return answer(200, result);
      // Applied already: a kill before the timer fires loses the answer, as a real server killed mid-answer does.
      setTimeout(() => (req.socket.destroyed ? log.push({ method, path: url.pathname, status: 0 }) : answer(200, result)), delay);
    });
  };
  const server = opts.tls ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert }, onRequest) : http.createServer(onRequest);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const path = (p: string) => p.replace('/api/2.0/mlflow/', '');
  const listen = (p: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(p, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(port);
  const bound = (server.address() as AddressInfo).port;

  const api: FakeMlflow = {
    url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${bound}`,
    port: bound,
    experiments,
    runs,
    artifacts,
    log,
    fault: null,
    auth: opts.auth ?? null,
    permission: null,
    answerDelayMs: 0,
    authorizations,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
    restart: () => listen(bound),
  };
  return api;
}
