/**
 * A protected tracking server: MLflow's own variables for credentials (basic, bearer) and TLS (a CA bundle, or no
 * verification), `MLFLOW_EXPERIMENT_NAME`, and the guarantees around them: a 401/403 is an authentication failure
 * naming the variables (not an outage), the run is kept locally and `loom sync` uploads it with the same variables,
 * and the credentials never appear in anything a run writes or prints. Against test/mlflow-fake-server.ts, which
 * answers as MLflow 2.x's basic-auth app does.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { format } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError, type PluginRegistry } from '../../core';
import { runExperiment } from '../../runtime';
import { startFakeMlflow, MLFLOW_401_BODY, type FakeMlflow, type FakeRun } from '../../test/mlflow-fake-server';
import { testRegistry } from '../../test/harness';
import toyBlobs, { toyConfig } from '../../test/toy-data';
import { MlflowRestTracker, Spool, syncStore, type MlflowRestOptions } from './mlflow-rest';
import { mlflowConnectionFromEnv, MlflowRequestError, MlflowRestClient, type MlflowConnection } from './mlflow-rest-client';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// Distinctive strings, so that a search for them finds only a leak.
const USER = 'loom-user-7f3a91c2';
const PASSWORD = 'pw-Qz81!x@y:z-5be0c4d1';
const TOKEN = 'tok-e5d4c3b2a1f0-9a8b7c6d';
const SECRETS = [USER, PASSWORD, TOKEN, Buffer.from(`${USER}:${PASSWORD}`).toString('base64'), encodeURIComponent(PASSWORD)];
const MLFLOW_VARS = [
  'MLFLOW_TRACKING_USERNAME',
  'MLFLOW_TRACKING_PASSWORD',
  'MLFLOW_TRACKING_TOKEN',
  'MLFLOW_TRACKING_INSECURE_TLS',
  'MLFLOW_TRACKING_SERVER_CERT_PATH',
  'MLFLOW_EXPERIMENT_NAME',
  'MLFLOW_TRACKING_URI',
];

let server: FakeMlflow;
let root: string;
beforeEach(async () => {
  // Whatever the developer's shell has set, each test starts with none of MLflow's variables.
  for (const v of MLFLOW_VARS) vi.stubEnv(v, '');
  server = await startFakeMlflow({ auth: { basic: { [USER]: PASSWORD } } });
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-mlflow-auth-'));
});
afterEach(async () => {
  vi.unstubAllEnvs();
  await server.close();
  fs.rmSync(root, { recursive: true, force: true });
});

const basic: MlflowConnection = { username: USER, password: PASSWORD };
const fast = (over: Partial<MlflowRestOptions> = {}): MlflowRestOptions => ({
  uri: server.url,
  dir: root,
  flushIntervalMs: 5,
  maxQueue: 5000,
  timeoutMs: 500,
  retryIntervalMs: 20,
  ...over,
});
const onlyRun = (s: FakeMlflow): FakeRun => {
  expect(s.runs.size).toBe(1);
  return [...s.runs.values()][0]!;
};
const spoolDirs = (dir: string): string[] =>
  fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((p) => path.basename(p) === 'loom-sync')
    .map((p) => path.dirname(path.join(dir, p)));
const filesUnder = (dir: string): string[] =>
  fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((f) => f.isFile())
    .map((f) => path.join(f.parentPath, f.name));

/** Logs a short run: a param, `steps` steps of a metric, a tag, an artifact. */
async function logRun(tracker: MlflowRestTracker, steps: number, between: (s: number) => void | Promise<void> = () => undefined) {
  await tracker.startRun({ experiment: 'auth', runName: 'r' });
  tracker.logParams({ lr: 0.1 });
  for (let s = 0; s < steps; s++) {
    tracker.logMetrics({ loss: 1 / (s + 1) }, s, 1_700_000_000_000 + s);
    await between(s);
  }
  tracker.setTags({ done: 'yes' });
  const file = path.join(root, 'note.txt');
  fs.writeFileSync(file, 'note');
  await tracker.logArtifact(file);
  await tracker.endRun('FINISHED');
}

function expectComplete(run: FakeRun, steps: number) {
  expect(run.metrics.map((m) => m.step)).toEqual(Array.from({ length: steps }, (_, s) => s));
  expect(run.params.get('lr')).toBe('0.1');
  expect(run.tags.get('done')).toBe('yes');
  expect(run.info.status).toBe('FINISHED');
  expect(server.artifacts.get(`${run.info.experiment_id}/${run.info.run_id}/artifacts/note.txt`)?.toString()).toBe('note');
}

const loom = (args: string[], env: Record<string, string>) =>
  new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, [path.join(repo, 'cli/bin.mjs'), ...args], {
      cwd: root,
      env: { ...process.env, ...Object.fromEntries(MLFLOW_VARS.map((v) => [v, ''])), ...env },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code, out }));
  });

describe('the fake server as a protected MLflow 2.x', () => {
  it("answers a missing or wrong credential with 401 and MLflow basic-auth's challenge", async () => {
    const url = `${server.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=x`;
    for (const authorization of [undefined, `Basic ${Buffer.from(`${USER}:wrong`).toString('base64')}`, `Bearer ${TOKEN}`]) {
      const res = await fetch(url, { headers: authorization ? { authorization } : {} });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Basic realm="mlflow"');
      expect(await res.text()).toBe(MLFLOW_401_BODY);
    }
    const ok = await fetch(url, { headers: { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` } });
    expect(ok.status).toBe(404); // authenticated; the experiment does not exist
  });
});

describe("MLflow's connection variables", () => {
  it('reads credentials and TLS settings as MLflow does, and refuses malformed ones naming the variable, never its value', () => {
    expect(mlflowConnectionFromEnv({})).toEqual({});
    expect(
      mlflowConnectionFromEnv({
        MLFLOW_TRACKING_USERNAME: USER,
        MLFLOW_TRACKING_PASSWORD: PASSWORD,
        MLFLOW_TRACKING_TOKEN: TOKEN,
        MLFLOW_TRACKING_INSECURE_TLS: 'TRUE',
      }),
    ).toEqual({ username: USER, password: PASSWORD, token: TOKEN, insecureTls: true });
    expect(mlflowConnectionFromEnv({ MLFLOW_TRACKING_INSECURE_TLS: '0', MLFLOW_TRACKING_SERVER_CERT_PATH: '/ca.pem', MLFLOW_TRACKING_TOKEN: '' })).toEqual({
      insecureTls: false,
      serverCertPath: '/ca.pem',
    });
    const refused = (env: NodeJS.ProcessEnv, variable: string) => {
      let err: unknown;
      try {
        mlflowConnectionFromEnv(env);
      } catch (e) {
        err = e;
      }
      expect(err, variable).toBeInstanceOf(ConfigError);
      expect(String(err)).toContain(variable);
      for (const s of SECRETS) expect(String(err)).not.toContain(s);
    };
    refused({ MLFLOW_TRACKING_USERNAME: USER }, 'MLFLOW_TRACKING_PASSWORD');
    refused({ MLFLOW_TRACKING_PASSWORD: PASSWORD }, 'MLFLOW_TRACKING_USERNAME');
    refused({ MLFLOW_TRACKING_INSECURE_TLS: 'yes' }, 'MLFLOW_TRACKING_INSECURE_TLS');
    refused({ MLFLOW_TRACKING_INSECURE_TLS: 'true', MLFLOW_TRACKING_SERVER_CERT_PATH: '/ca.pem' }, 'MLFLOW_TRACKING_SERVER_CERT_PATH');
    expect(() => new MlflowRestClient('https://127.0.0.1:1', { connection: { serverCertPath: path.join(root, 'missing.pem') } })).toThrow(
      /MLFLOW_TRACKING_SERVER_CERT_PATH.*missing\.pem.*ENOENT/,
    );
  });

  it('sends basic credentials from the variables, else from the URI, else a bearer token (basic first, as MLflow)', async () => {
    const send = async (uri: string, connection: MlflowConnection) => {
      server.authorizations.length = 0;
      await new MlflowRestClient(uri, { connection }).getExperimentByName('x');
      return server.authorizations[0];
    };
    const basicHeader = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
    expect(await send(server.url, basic)).toBe(basicHeader);
    expect(await send(server.url, { ...basic, token: TOKEN })).toBe(basicHeader);
    const inUri = server.url.replace('://', `://${USER}:${encodeURIComponent(PASSWORD)}@`);
    expect(await send(inUri, {})).toBe(basicHeader);
    server.auth = { bearer: [TOKEN] };
    expect(await send(server.url, { token: TOKEN })).toBe(`Bearer ${TOKEN}`);
  });

  it('reads the variables from the environment by default', async () => {
    vi.stubEnv('MLFLOW_TRACKING_USERNAME', USER);
    vi.stubEnv('MLFLOW_TRACKING_PASSWORD', PASSWORD);
    expect(await new MlflowRestClient(server.url).getExperimentByName('x')).toBeNull();
  });

  it('reports 401 and 403 as authentication failures naming the variables, not as an outage', async () => {
    const anonymous = await new MlflowRestClient(server.url, { connection: {} }).getExperimentByName('x').catch((e: unknown) => e);
    expect(anonymous).toBeInstanceOf(MlflowRequestError);
    expect(anonymous).toMatchObject({ status: 401, kind: 'auth', outage: false, mayHaveApplied: false });
    expect(String(anonymous)).toMatch(/authentication failed.*none were sent.*MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.*MLFLOW_TRACKING_TOKEN/);

    const wrong = await new MlflowRestClient(server.url, { connection: { username: USER, password: 'not-the-password' } })
      .getExperimentByName('x')
      .catch((e: unknown) => e);
    expect(wrong).toMatchObject({ status: 401, kind: 'auth' });
    expect(String(wrong)).toMatch(/credentials from MLFLOW_TRACKING_USERNAME\/MLFLOW_TRACKING_PASSWORD were refused/);
    expect(String(wrong)).not.toContain('not-the-password');
    expect(String(wrong)).not.toContain(USER);

    server.permission = () => false;
    const denied = await new MlflowRestClient(server.url, { connection: basic }).getOrCreateExperiment('x').catch((e: unknown) => e);
    expect(denied).toMatchObject({ status: 403, kind: 'auth', outage: false });
    expect(String(denied)).toMatch(/permission denied.*MLFLOW_TRACKING_USERNAME.*Permission denied/);
    for (const s of SECRETS) expect(String(denied)).not.toContain(s);
  });

  it('scrubs the credentials from a server answer that echoes them', async () => {
    const echo = http.createServer((req, res) =>
      res
        .writeHead(400, { 'content-type': 'application/json' })
        .end(JSON.stringify({ error_code: 'BAD_REQUEST', message: `got ${req.headers.authorization}` })),
    );
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(echo.address() as { port: number }).port}`;
      for (const connection of [basic, { token: TOKEN }]) {
        const e = await new MlflowRestClient(url, { connection }).logBatch('r', { metrics: [], params: [], tags: [] }).catch((err: unknown) => err);
        expect(String(e)).toMatch(/got \*\*\*/);
        for (const s of SECRETS) expect(String(e)).not.toContain(s);
      }
    } finally {
      echo.close();
    }
  });
});

describe('the mlflow-rest tracker and `loom sync` with a protected server', () => {
  let registry: PluginRegistry;
  beforeEach(async () => {
    registry = (await testRegistry()).register(toyBlobs);
  });

  it('keeps a run refused for its credentials, says so instead of "unreachable", and `loom sync` with the variables uploads it', async () => {
    const lines: string[] = [];
    await logRun(new MlflowRestTracker(fast(), (l) => lines.push(l), { connection: {} }), 6);
    expect(server.runs.size).toBe(0);
    const said = lines.join('\n');
    expect(said).toMatch(/authentication failure.*MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.*MLFLOW_TRACKING_TOKEN.*kept in .*loom sync --dir/s);
    expect(said).not.toMatch(/unreachable/);

    // `loom sync` without credentials: still pending, nothing set aside; with MLflow's variables: uploaded, once.
    const without = await loom(['sync', '--dir', root, '--tracking-uri', server.url], {});
    expect(without.code, without.out).toBe(1);
    expect(without.out).toMatch(/authentication failed.*MLFLOW_TRACKING_USERNAME.*still pending/s);
    expect(server.runs.size).toBe(0);
    const [dir] = spoolDirs(root);
    expect(fs.existsSync(path.join(dir!, 'loom-sync', 'rejected.jsonl'))).toBe(false);
    const withVars = await loom(['sync', '--dir', root, '--tracking-uri', server.url], { MLFLOW_TRACKING_USERNAME: USER, MLFLOW_TRACKING_PASSWORD: PASSWORD });
    expect(withVars.code, withVars.out).toBe(0);
    expect(withVars.out).toMatch(/1 uploaded, 0 still pending/);
    expectComplete(onlyRun(server), 6);
    for (const s of SECRETS) expect(without.out + withVars.out).not.toContain(s);
  });

  it('keeps everything pending, not set aside, when credentials stop working or a permission is refused mid-run', async () => {
    for (const failure of ['401', '403'] as const) {
      await server.close();
      server = await startFakeMlflow({ auth: { basic: { [USER]: PASSWORD } } });
      fs.rmSync(root, { recursive: true, force: true });
      fs.mkdirSync(root);
      const lines: string[] = [];
      const tracker = new MlflowRestTracker(fast(), (l) => lines.push(l), { connection: basic });
      await logRun(tracker, 20, async (s) => {
        if (s !== 8) return;
        await tracker.flush();
        // The password is rotated on the server, or the user loses the experiment's permission.
        if (failure === '401') server.auth = { basic: { [USER]: 'rotated' } };
        else server.permission = () => false;
      });
      expect(tracker.state).toBe('ended');
      expect(lines.join('\n'), failure).toMatch(failure === '401' ? /authentication failure.*were refused/s : /authentication failure.*permission denied/s);
      expect(lines.join('\n')).not.toMatch(/unreachable/);
      const [dir] = spoolDirs(root);
      expect(fs.existsSync(path.join(dir!, 'loom-sync', 'rejected.jsonl'))).toBe(false);
      expect(Spool.open(dir!)!.pending().length).toBeGreaterThan(0);

      // Once the settings are right again, sync uploads the rest: every value exactly once.
      server.auth = { basic: { [USER]: PASSWORD } };
      server.permission = null;
      expect(await syncStore({ dir: root, connection: basic, log: () => undefined })).toMatchObject([{ outcome: 'synced' }]);
      expectComplete(onlyRun(server), 20);
    }
  });

  it('never writes or prints the credentials: not in params, tags, artifacts, the journal, checkpoints or output', async () => {
    const captured: string[] = [];
    const capture = (...args: unknown[]) => void captured.push(format(...args));
    for (const m of ['log', 'info', 'warn', 'error', 'debug'] as const) vi.spyOn(console, m).mockImplementation(capture);
    for (const stream of [process.stdout, process.stderr]) {
      const write = stream.write.bind(stream);
      vi.spyOn(stream, 'write').mockImplementation(((chunk: unknown, ...rest: unknown[]) => {
        captured.push(String(chunk));
        return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof stream.write);
    }
    const run = async (name: string, trackingUri: string, env: Record<string, string>) => {
      for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
      const dir = path.join(root, name);
      const config = toyConfig(path.join(dir, 'mlruns'), {
        trainer: { epochs: 2, batchSize: 16, validationSplit: 0.25, logEvery: 1, checkpoint: { dir: path.join(dir, 'checkpoints') } },
      });
      const r = await runExperiment({ registry, config, runName: name, trackingUri, log: capture }).catch((e: unknown) => {
        captured.push(String(e), (e as Error).stack ?? '');
        throw e;
      });
      for (const k of Object.keys(env)) vi.stubEnv(k, '');
      return r;
    };
    const basicEnv = { MLFLOW_TRACKING_USERNAME: USER, MLFLOW_TRACKING_PASSWORD: PASSWORD };

    // Basic credentials, with the server failing once mid-run (a journal is written, then replayed at the end).
    let n = 0;
    server.fault = ({ path: p }) => (p.endsWith('log-batch') && ++n === 2 ? 503 : undefined);
    await run('basic', server.url, basicEnv);
    server.fault = null;
    // A wrong password: the run is kept locally with its journal; then `loom sync`'s code with the right one.
    await run('wrong', server.url, { MLFLOW_TRACKING_USERNAME: USER, MLFLOW_TRACKING_PASSWORD: `${PASSWORD}-old` });
    for (const v of Object.entries(basicEnv)) vi.stubEnv(...v);
    await syncStore({ dir: path.join(root, 'wrong', 'mlruns'), log: capture });
    for (const k of Object.keys(basicEnv)) vi.stubEnv(k, '');
    // Credentials in the tracking URI.
    await run('in-uri', server.url.replace('://', `://${USER}:${encodeURIComponent(PASSWORD)}@`), {});
    // A bearer token, with an answer lost after the server applied a batch (the replay checks the history).
    server.auth = { bearer: [TOKEN] };
    let m = 0;
    server.fault = ({ path: p }) => (p.endsWith('log-batch') && ++m === 2 ? 'drop-after-apply' : undefined);
    await run('bearer', server.url, { MLFLOW_TRACKING_TOKEN: TOKEN });
    server.fault = null;
    vi.restoreAllMocks();

    // Every run reached the server, complete, and three of them went through a journal.
    expect([...server.runs.values()].map((r) => [r.info.run_name, r.info.status]).sort()).toEqual([
      ['basic', 'FINISHED'],
      ['bearer', 'FINISHED'],
      ['in-uri', 'FINISHED'],
      ['wrong', 'FINISHED'],
    ]);
    for (const r of server.runs.values())
      expect(new Set(r.metrics.map((x) => `${x.key} ${x.step} ${x.timestamp} ${x.value}`)).size, r.info.run_name).toBe(r.metrics.length);
    const files = filesUnder(root);
    expect(files.filter((f) => f.endsWith(path.join('loom-sync', 'journal.jsonl')))).toHaveLength(3);
    expect(files.filter((f) => f.includes(`${path.sep}checkpoints${path.sep}`)).length).toBeGreaterThan(0);
    expect(captured.join('\n')).toMatch(/authentication failed/);

    const places: [string, string][] = [
      ...files.map((f) => [f, fs.readFileSync(f).toString('latin1')] as [string, string]),
      ['captured output', captured.join('\n')],
      ...[...server.runs.values()].map(
        (r) =>
          [`server run ${r.info.run_name}`, JSON.stringify({ info: r.info, params: [...r.params], tags: [...r.tags], inputs: r.inputs })] as [string, string],
      ),
      ...[...server.artifacts].map(([p, b]) => [`server artifact ${p}`, b.toString('latin1')] as [string, string]),
    ];
    for (const [where, text] of places) for (const s of SECRETS) expect(text.includes(s), `${s} in ${where}`).toBe(false);
  });

  it("uses MLFLOW_EXPERIMENT_NAME as the experiment, keeping the config's name as the param and a tag", async () => {
    vi.stubEnv('MLFLOW_EXPERIMENT_NAME', 'team-shared');
    vi.stubEnv('MLFLOW_TRACKING_USERNAME', USER);
    vi.stubEnv('MLFLOW_TRACKING_PASSWORD', PASSWORD);
    const fileRoot = path.join(root, 'file');
    const viaFile = await runExperiment({ registry, config: toyConfig(fileRoot), log: () => undefined });
    const viaRest = await runExperiment({ registry, config: toyConfig(path.join(root, 'rest')), trackingUri: server.url, log: () => undefined });
    const exp = fs.readFileSync(path.join(fileRoot, viaFile.run.experimentId, 'meta.yaml'), 'utf8');
    expect(exp).toMatch(/^name: team-shared$/m);
    const runDir = path.join(fileRoot, viaFile.run.experimentId, viaFile.run.runId);
    expect(fs.readFileSync(path.join(runDir, 'params', 'experiment'), 'utf8')).toBe('toy');
    expect(fs.readFileSync(path.join(runDir, 'tags', 'loom.experiment'), 'utf8')).toBe('toy');
    const run = onlyRun(server);
    expect(server.experiments.get(viaRest.run.experimentId)!.name).toBe('team-shared');
    expect(run.params.get('experiment')).toBe('toy');
    expect(run.tags.get('loom.experiment')).toBe('toy');
  });
});

/** A self-signed certificate for 127.0.0.1, made with openssl (null where openssl is absent). */
function selfSigned(dir: string, name: string): { key: string; cert: string; certPath: string } | null {
  const key = path.join(dir, `${name}.key`);
  const cert = path.join(dir, `${name}.pem`);
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '2',
        '-subj',
        `/CN=${name}`,
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
      ],
      { stdio: 'ignore' },
    );
  } catch {
    return null;
  }
  return { key: fs.readFileSync(key, 'utf8'), cert: fs.readFileSync(cert, 'utf8'), certPath: cert };
}

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasOpenssl)('TLS (skipped: needs the openssl command to make a self-signed certificate)', () => {
  it('verifies with MLFLOW_TRACKING_SERVER_CERT_PATH, skips verification with MLFLOW_TRACKING_INSECURE_TLS, and names them when the certificate is refused', async () => {
    const mine = selfSigned(root, 'loom-test-server')!;
    const other = selfSigned(root, 'some-other-ca')!;
    await server.close();
    server = await startFakeMlflow({ auth: { basic: { [USER]: PASSWORD } }, tls: { key: mine.key, cert: mine.cert } });
    expect(server.url).toMatch(/^https:/);

    const untrusted = await new MlflowRestClient(server.url, { connection: basic }).getExperimentByName('x').catch((e: unknown) => e);
    expect(untrusted).toMatchObject({ kind: 'tls', outage: false, mayHaveApplied: false });
    expect(String(untrusted)).toMatch(/certificate was not accepted.*SELF_SIGNED.*set MLFLOW_TRACKING_SERVER_CERT_PATH.*MLFLOW_TRACKING_INSECURE_TLS=true/);
    const wrongCa = await new MlflowRestClient(server.url, { connection: { ...basic, serverCertPath: other.certPath } })
      .getExperimentByName('x')
      .catch((e: unknown) => e);
    expect(wrongCa).toMatchObject({ kind: 'tls' });
    expect(String(wrongCa)).toContain(`not signed by the CA bundle in MLFLOW_TRACKING_SERVER_CERT_PATH (${other.certPath})`);

    expect(await new MlflowRestClient(server.url, { connection: { ...basic, serverCertPath: mine.certPath } }).getOrCreateExperiment('tls')).toMatch(/^\d+$/);
    expect(await new MlflowRestClient(server.url, { connection: { ...basic, insecureTls: true } }).getExperimentByName('tls')).toMatch(/^\d+$/);

    // A whole run: refused certificate -> kept locally with a TLS message; then synced through the environment's CA.
    const lines: string[] = [];
    await logRun(new MlflowRestTracker(fast(), (l) => lines.push(l), { connection: basic }), 5);
    expect(lines.join('\n')).toMatch(/TLS failure.*MLFLOW_TRACKING_SERVER_CERT_PATH.*loom sync/s);
    expect(lines.join('\n')).not.toMatch(/unreachable/);
    vi.stubEnv('MLFLOW_TRACKING_USERNAME', USER);
    vi.stubEnv('MLFLOW_TRACKING_PASSWORD', PASSWORD);
    vi.stubEnv('MLFLOW_TRACKING_SERVER_CERT_PATH', mine.certPath);
    expect(await syncStore({ dir: root, log: () => undefined })).toMatchObject([{ outcome: 'synced' }]);
    expectComplete(onlyRun(server), 5);
  });
});
