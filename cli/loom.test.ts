/**
 * The command line as a user meets it: plugin listing, help for every command, clear errors with exit code 2 for
 * bad input (flags, numbers, `--set` paths, tracking URIs), output that survives a slow pipe, and where runs are
 * tracked. Most cases call the CLI's `run` in process (the same code the executable runs, ~100× faster to start);
 * the executable itself is spawned where the process matters (exit codes, pipes, stack traces).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { papers } from '../papers';
import { COMMANDS, didYouMean, paperHelp, parseTrackingUri, recordsRoot, run } from './loom';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(repo, 'cli/bin.mjs');
const loom = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: repo });
const STACK = /\n\s+at .+:\d+:\d+/;

/** `run` in process with its output captured; `env` is set for the call only. */
async function inProcess(args: string[], env: Record<string, string | undefined> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  try {
    for (const [k, v] of Object.entries(env))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    const code = await run(args, { out: (t) => out.push(t), err: (t) => err.push(t) });
    return { code, stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    log.mockRestore();
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

/** A fresh working directory for a test that runs a paper, removed afterwards. */
const dirs: string[] = [];
function tempCwd(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-cli-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** The run folders under `store` (`<experiment>/<run>/meta.yaml`). */
function runsIn(store: string): string[] {
  if (!fs.existsSync(store)) return [];
  return fs.readdirSync(store).flatMap((e) => {
    const dir = path.join(store, e);
    return fs.statSync(dir).isDirectory()
      ? fs
          .readdirSync(dir)
          .filter((r) => fs.existsSync(path.join(dir, r, 'meta.yaml')))
          .map((r) => path.join(dir, r))
      : [];
  });
}

/** A tiny mnist-cnn run: the smoke preset cut to 40 training and 20 test images. */
const TINY = ['paper', 'mnist-cnn', '--set', 'data.trainLimit=40', '--set', 'data.testLimit=20', '--set', 'trainer.checkpoint.enabled=false'];

describe('loom CLI', () => {
  it('lists every registered plugin with kind, name and options schema as JSON', () => {
    const r = loom('plugins', '--json');
    expect(r.status).toBe(0);
    const list = JSON.parse(r.stdout) as { kind: string; name: string; options: { type: string } }[];
    const names = list.map((p) => `${p.kind}:${p.name}`);
    for (const n of [
      'layer:conv2d',
      'layer:dense',
      'optimizer:adam',
      'loss:sparse-categorical-crossentropy',
      'tracker:mlflow-file',
      'dataset:mnist',
      'backend:cpu',
    ]) {
      expect(names).toContain(n);
    }
    expect(list.find((p) => p.name === 'adam')!.options).toMatchObject({ type: 'object', properties: { lr: { type: 'number' } } });
  });

  it('loses no output to a slow reader: a pipe read after a second gets every byte of plugins --json', () => {
    // Before the fix, process.exit ran before stdout drained and the reader got 65,536 of ~85,000 bytes.
    const full = Buffer.byteLength(loom('plugins', '--json').stdout);
    expect(full).toBeGreaterThan(65_536); // more than a pipe's buffer, or the test proves nothing
    const slow = spawnSync('sh', ['-c', `"${process.execPath}" "${bin}" plugins --json | (sleep 1; wc -c)`], { encoding: 'utf8', cwd: repo });
    expect(slow.status).toBe(0);
    expect(Number(slow.stdout.trim())).toBe(full);
  });

  it('ends quietly with its exit code when the reader goes away (plugins --json | head -1)', () => {
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${bin}" plugins --json | head -c 10 >/dev/null`], { encoding: 'utf8', cwd: repo });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('every command has --help (and -h) listing each of its flags with its default, exit code 0', async () => {
    for (const [name, cmd] of Object.entries(COMMANDS)) {
      for (const h of ['--help', '-h']) {
        const r = await inProcess([name, h]);
        expect(r.code, `${name} ${h}`).toBe(0);
        expect(r.stdout, name).toMatch(new RegExp(`^usage: loom ${name}`));
        for (const [flag, spec] of Object.entries(cmd.flags)) {
          expect(r.stdout, `${name} --${flag}`).toContain(`--${flag}`);
          if (spec.value) expect(spec.help, `${name} --${flag}`).toMatch(/\(default: [^)]+\)/);
        }
      }
    }
    const top = await inProcess(['--help']);
    for (const name of Object.keys(COMMANDS)) expect(top.stdout).toContain(`  ${name}`);
    expect((await inProcess(['help', 'sync'])).stdout).toContain('--tracking-uri URL');
  });

  it("paper <name> --help names the paper's presets, the default one and its seed; the executable prints it with exit code 0", () => {
    const r = loom('paper', 'mnist-cnn', '--help');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^usage: loom paper mnist-cnn \[flags\]/);
    expect(r.stdout).toMatch(/--preset P +which preset of the paper to run \(default: smoke\)/);
    expect(r.stdout).toMatch(/presets \(default: smoke; seed 0\):\n {2}full: .*\n(?: {2}\S+: .*\n)* {2}smoke \(default\): 2,000 training images/);
    expect(r.stdout).toMatch(/modes other than training \(their flags\):\n {2}--compression WHAT: .*\n {4}--epochs N: /);
    expect(r.stderr).toBe('');
    expect(loom('paper', 'variational-lstm', '--help').stdout).toMatch(
      /modes other than training \(their flags\):\n {2}--mc-dropout T: score the newest finished variational run/,
    );
    // Every built-in paper has a mode; a paper without any (a plugin's, say) says that it only trains.
    const trainsOnly = paperHelp({ ...papers['mnist-cnn']!, modes: undefined });
    expect(trainsOnly).toMatch(/\n {2}smoke \(default\): .*\nmodes other than training: none \(this paper only trains\)$/);
    expect(trainsOnly).not.toContain('--compression WHAT');
  });

  it("rejects bad input with loom's own message naming it, exit code 2 and no stack trace", async () => {
    const cases: [string[], RegExp][] = [
      [['paper', 'nope'], /unknown paper "nope"; papers: mnist-cnn/],
      [['paper', 'mnst-cnn'], /unknown paper "mnst-cnn" \(did you mean mnist-cnn\?\); papers:/],
      [['paper', 'mnist-cnn', '--preset', 'huge'], /--preset: paper "mnist-cnn" has no preset "huge"; presets: .*smoke/],
      [['paper', 'mnist-cnn', '--preset', 'smok'], /no preset "smok" \(did you mean smoke\?\)/],
      [['paper', 'mnist-cnn', '--bogus'], /^loom: --bogus: unknown flag of `loom paper`; `loom paper --help` lists its flags$/],
      [['paper', 'mnist-cnn', '--sed', '3'], /--sed: unknown flag of `loom paper` \(did you mean --seed\?\)/],
      [['paper', 'mnist-cnn', '--tracking-url', 'x'], /--tracking-url: unknown flag of `loom paper` \(did you mean --tracking-uri\?\)/],
      [['paper', 'mnist-cnn', '-seed', '3'], /-seed: unknown flag of `loom paper` \(did you mean --seed\?\)/],
      [['plugins', '--jsn'], /--jsn: unknown flag of `loom plugins` \(did you mean --json\?\)/],
      [['plugins', '--seed', '1'], /--seed: unknown flag of `loom plugins`; `loom plugins --help` lists its flags/],
      [['paper', 'mnist-cnn', '--json'], /--json: expects a value: --json FILE/],
      [['paper', 'mnist-cnn', '--json', '--verbose'], /--json: expects a value: --json FILE/],
      [['paper', 'mnist-cnn', '--verbose=yes'], /--verbose: takes no value, got "yes"/],
      [['paper', 'mnist-cnn', '--seed', '1', '--seed', '2'], /--seed: given twice \("1" and "2"\)/],
      [['paper', 'mnist-cnn', 'extra'], /paper: expects one paper name, got also "extra"/],
      [['papers', 'extra'], /papers: takes no arguments, got "extra"/],
      [['paper', 'mnist-cnn', '--seed', '-1'], /^loom: --seed: expected a non-negative integer, got "-1"$/],
      [['paper', 'mnist-cnn', '--seed', 'abc'], /--seed: expected a non-negative integer, got "abc"/],
      [['paper', 'mnist-cnn', '--seed', '1.5'], /--seed: expected a non-negative integer, got "1.5"/],
      [['paper', 'mnist-cnn', '--seed', '99999999999999999999'], /--seed: expected a non-negative integer/],
      [['paper', 'mnist-cnn', '--seed='], /--seed: expected a non-negative integer, got ""/],
      [['paper', 'gpt', '--predict', 'Call me', '--top-k', '0'], /--top-k: expected a positive integer, got "0"/],
      [['paper', 'gpt', '--predict', 'Call me', '--top-k', 'many'], /--top-k: expected a positive integer, got "many"/],
      [['paper', 'gpt', '--predict', 'Call me', '--length', '-5'], /--length: expected a positive integer, got "-5"/],
      [['paper', 'gpt', '--predict', 'Call me', '--length', '2.5'], /--length: expected a positive integer, got "2.5"/],
      [['paper', 'gpt', '--predict', 'Call me', '--temperature', '-1'], /--temperature: expected a number >= 0, got "-1"/],
      [['paper', 'gpt', '--predict', 'Call me', '--temperature', 'hot'], /--temperature: expected a number >= 0, got "hot"/],
      [['paper', 'gpt', '--predict', 'Call me', '--temperature', 'Infinity'], /--temperature: expected a number >= 0, got "Infinity"/],
      [['paper', 'gpt', '--temperature', '0.5'], /--temperature: applies only with --predict/],
      [['paper', 'gpt', '--predict', 'Call me', '--set', 'trainer.epochs=2'], /--set: does not apply to --predict/],
      [['paper', 'mnist-cnn', '--predict', '7'], /--predict: is a flag of papers transformer, gpt, not of "mnist-cnn"; its own: --compression, --epochs/],
      [['paper', 'variational-lstm', '--predict', '7'], /--predict: is a flag of papers transformer, gpt, not of "variational-lstm"; its own: --mc-dropout$/m],
      [
        ['paper', 'transformer', '--predict', 'cat', '--top-k', '3'],
        /--top-k: is a flag of paper gpt, not of "transformer"; its own: --predict, --average-checkpoints, --last/,
      ],
      [['paper', 'transformer', '--predict', 'cat', '--average-checkpoints', 'x'], /--average-checkpoints: cannot be combined with --predict/],
      [['paper', 'transformer', '--last', '3'], /--last: applies only with --average-checkpoints/],
      [['paper', 'transformer', '--average-checkpoints', 'x', '--last', '0'], /--last: expected a positive integer, got "0"/],
      [['paper', 'gpt', '--predict', 'Call me', '--json', 'out.json'], /--json: does not apply to --predict, which trains nothing/],
      [['plugins', '--kind', 'widget'], /--kind: unknown kind "widget"/],
      [['plugins', '--kind', 'layers'], /--kind: unknown kind "layers" \(did you mean layer\?\)/],
      [
        ['sync', '--tracking-uri', 'ftp://mlflow'],
        /--tracking-uri: loom sync uploads to a tracking server: expected an http\(s\) URL such as http:\/\/localhost:5000, got "ftp:\/\/mlflow"/,
      ],
      [['sync', '--tracking-uri', './mlruns'], /--tracking-uri: loom sync uploads to a tracking server/],
      [['sync', '--dir', 'no/such/store'], /--dir: no MLflow file store at .*no\/such\/store/],
      [['fly'], /unknown command "fly"/],
      [['paperz'], /unknown command "paperz" \(did you mean paper\?\)/],
      [
        ['paper', 'mnist-cnn', '--set', 'trainer.epochs'],
        /--set: expected FIELD=VALUE with a dotted field path such as trainer.epochs=1, got "trainer.epochs"/,
      ],
      [['paper', 'mnist-cnn', '--set', 'trainer..epochs=1'], /--set: expected FIELD=VALUE/],
      [
        ['paper', 'mnist-cnn', '--set', 'trainer=1', '--set', 'trainer.epochs=2'],
        /--set: "trainer.epochs=2" sets inside trainer, which another --set gave a value/,
      ],
      [['paper', 'mnist-cnn', '--set', 'trainer.epoch=1'], /trainer: .*epoch/],
      [['paper', 'mnist-cnn', '--set', 'trainer.epochs=many'], /trainer.epochs: .*number/],
      // Before: "model.layers: Invalid input: expected array, received object".
      [
        ['paper', 'mnist-cnn', '--set', 'model.layers.9.filters=3'],
        /^loom: model\.layers\.9: index 9 is out of range: model\.layers has 5 element\(s\) \(indices 0-4\)$/,
      ],
      [
        ['paper', 'mnist-cnn', '--set', 'model.layers.first.filters=3'],
        /model\.layers\.first: model\.layers is a list of 5 element\(s\): expected an index \(indices 0-4\), got "first"/,
      ],
      [['paper', 'mnist-cnn', '--set', 'metrics.1=accuracy'], /metrics\.1: index 1 is out of range: metrics has 1 element\(s\) \(indices 0-0\)/],
    ];
    for (const [args, message] of cases) {
      const r = await inProcess(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr, args.join(' ')).not.toMatch(STACK);
    }
    // The executable: the same messages, exit code 2, nothing else on stderr.
    for (const args of [
      ['paper', 'mnist-cnn', '--seed', '-1'],
      ['paper', 'mnist-cnn', '--bogus'],
      ['paper', 'mnist-cnn', '--set', 'model.layers.9.filters=3'],
    ]) {
      const r = loom(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
  });

  it('rejects configs whose parts do not fit before a run starts, naming the field and leaving no run', { timeout: 120_000 }, async () => {
    const cases: [string[], RegExp][] = [
      // Before: the run started and died in a kernel ("LoomMatMulBiasGrad: x [1,32,0] ..."), exit 1, FAILED run left.
      [
        ['--set', 'model.layers.1.poolSize=40'],
        /^loom: model\.layers\[1\]: layer "max-pool2d_2" \(max-pool2d\): expected input shape large enough for a non-empty output \(this one would give \[batch, 0, 0, 32\]\), got \[batch, 26, 26, 32\]$/,
      ],
      // Before: a ShapeError at the first step, with a FAILED run left in ./mlruns.
      [
        ['--set', 'model.inputShape.0=4'],
        /^loom: model\.inputShape: is \[4, 28, 1\], but the examples of the training set "mnist:train.*" have shape \[28, 28, 1\]$/,
      ],
      [['--set', 'loss=mse'], /^loom: loss "mse": expected input shape targets of the predictions' shape \[2,10\], got \[2\]$/],
      // Before: 'MNIST: unknown split "nope"', which names no field.
      [['--set', 'data.train=nope'], /^loom: data\.train: data set "mnist" has no split "nope"; its splits: train, test$/],
      [['--set', 'data.test=dev'], /^loom: data\.test: data set "mnist" has no split "dev"/],
    ];
    const cwd = tempCwd();
    const here = process.cwd();
    process.chdir(cwd);
    try {
      for (const [args, message] of cases) {
        const r = await inProcess([...TINY, ...args]);
        expect(r.code, args.join(' ')).toBe(2);
        expect(r.stderr, args.join(' ')).toMatch(message);
        expect(runsIn('mlruns'), args.join(' ')).toEqual([]);
      }
    } finally {
      process.chdir(here);
    }
  });

  it("honours MLFLOW_TRACKING_URI=file:///dir (MLflow's form): the run goes to that store, not ./mlruns", { timeout: 120_000 }, () => {
    // Before: the variable was ignored unless http(s) and the run went to ./mlruns.
    const cwd = tempCwd();
    const store = path.join(cwd, 'elsewhere', 'store');
    const r = spawnSync(process.execPath, [bin, ...TINY, '--json', 'summary.json'], {
      encoding: 'utf8',
      cwd,
      env: { ...process.env, MLFLOW_TRACKING_URI: pathToFileURL(store).href },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`loom: tracking to the local MLflow store ${store} (MLFLOW_TRACKING_URI)`);
    const summary = JSON.parse(fs.readFileSync(path.join(cwd, 'summary.json'), 'utf8'));
    expect(summary.mlflowRunDir).toBe(path.join(store, summary.mlflowExperimentId, summary.mlflowRunId));
    expect(runsIn(store)).toHaveLength(1);
    expect(fs.existsSync(path.join(cwd, 'mlruns'))).toBe(false);
    // The short backend line (issue 18, item 9): name, SIMD level and threads, no kernel list.
    const backendLine = r.stdout.split('\n').find((l) => l.startsWith('loom: backend '))!;
    expect(backendLine).not.toMatch(/Conv2DBackpropFilter|kernels:/);
    expect(backendLine.split(';')[0]!.length).toBeLessThan(80);
  });

  it('honours plain paths (relative to the working directory, as MLflow does) from the variable and from --tracking-uri', { timeout: 120_000 }, async () => {
    const cwd = tempCwd();
    const here = process.cwd();
    process.chdir(cwd);
    try {
      for (const [args, env, dir] of [
        [[], { MLFLOW_TRACKING_URI: 'runs/local' }, 'runs/local'],
        [['--tracking-uri', 'by-flag'], { MLFLOW_TRACKING_URI: undefined }, 'by-flag'],
        // MLflow reads a string without a scheme as a path: `not-a-uri` is the store ./not-a-uri, and the run says so.
        [[], { MLFLOW_TRACKING_URI: 'not-a-uri' }, 'not-a-uri'],
      ] as [string[], Record<string, string | undefined>, string][]) {
        const r = await inProcess([...TINY, ...args], env);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toContain(`loom: tracking to the local MLflow store ${path.join(cwd, dir)}`);
        expect(runsIn(dir), dir).toHaveLength(1);
      }
      expect(fs.existsSync('mlruns')).toBe(false);
    } finally {
      process.chdir(here);
    }
  });

  it('--tracking-uri reaches papers that run their own experiments and the modes that train or read runs', { timeout: 180_000 }, async () => {
    // Before: the variational LSTM and the compression modes logged to ./mlruns, and the modes that read the newest
    // trained run looked in ./mlruns, whatever --tracking-uri said.
    const cwd = tempCwd();
    const here = process.cwd();
    process.chdir(cwd);
    try {
      const lstm = await inProcess([
        'paper',
        'variational-lstm',
        '--preset',
        'smoke',
        '--set',
        'lm.variants=["none"]',
        '--max-steps',
        '2',
        '--tracking-uri',
        'lstm-store',
      ]);
      expect(lstm.code, lstm.stderr).toBe(0);
      expect(runsIn('lstm-store')).toHaveLength(1);
      const quantize = await inProcess(['paper', 'mnist-cnn', '--quantize', 'static', '--tracking-uri', 'empty-store']);
      expect(quantize.code).toBe(2);
      expect(quantize.stderr).toContain(`no finished mnist-cnn run of preset "smoke" in ${path.join(cwd, 'empty-store')}`);
      expect(fs.existsSync('mlruns')).toBe(false);
    } finally {
      process.chdir(here);
    }
  });

  it('rejects any other tracking URI naming MLFLOW_TRACKING_URI or --tracking-uri, exit code 2, before a run starts', async () => {
    const cwd = tempCwd();
    const here = process.cwd();
    process.chdir(cwd);
    try {
      const cases: [string[], Record<string, string>, RegExp][] = [
        [
          [],
          { MLFLOW_TRACKING_URI: 'ftp://mlflow.example' },
          /^loom: MLFLOW_TRACKING_URI: unsupported tracking URI "ftp:\/\/mlflow.example": expected an http\(s\) URL/,
        ],
        [
          [],
          { MLFLOW_TRACKING_URI: 'localhost:5000' },
          /^loom: MLFLOW_TRACKING_URI: unsupported tracking URI "localhost:5000".* Did you mean http:\/\/localhost:5000\?$/,
        ],
        [[], { MLFLOW_TRACKING_URI: 'sqlite:///mlflow.db' }, /MLFLOW_TRACKING_URI: unsupported tracking URI "sqlite:\/\/\/mlflow.db"/],
        [[], { MLFLOW_TRACKING_URI: 'http://' }, /MLFLOW_TRACKING_URI: expected an http\(s\) URL such as http:\/\/localhost:5000, got "http:\/\/"/],
        [[], { MLFLOW_TRACKING_URI: 'file:relative/dir' }, /MLFLOW_TRACKING_URI: a file: URI takes an absolute path/],
        [[], { MLFLOW_TRACKING_URI: 'file://otherhost/srv/mlruns' }, /MLFLOW_TRACKING_URI: "file:\/\/otherhost\/srv\/mlruns" is not a local file: URI/],
        [[], { MLFLOW_TRACKING_URI: '1http://x' }, /MLFLOW_TRACKING_URI: "1http:\/\/x" is neither a URI with a valid scheme nor a plain path/],
        // Before: a warning, and the run went to ./mlruns.
        [['--tracking-uri', 'ftp://x'], {}, /^loom: --tracking-uri: unsupported tracking URI "ftp:\/\/x"/],
        [['--tracking-uri', ''], {}, /^loom: --tracking-uri: is empty/],
      ];
      for (const [args, env, message] of cases) {
        const r = await inProcess([...TINY, ...args], env);
        expect(r.code, JSON.stringify(env) + args.join(' ')).toBe(2);
        expect(r.stderr, JSON.stringify(env)).toMatch(message);
      }
      expect(fs.readdirSync('.')).toEqual([]);
    } finally {
      process.chdir(here);
    }
    const r = spawnSync(process.execPath, [bin, ...TINY], { encoding: 'utf8', cwd, env: { ...process.env, MLFLOW_TRACKING_URI: 'not a scheme://x' } });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^loom: MLFLOW_TRACKING_URI: /);
  });

  it('parses tracking URIs as MLflow does: http(s) servers, file: URIs and paths; an empty variable is unset', async () => {
    expect(parseTrackingUri('http://localhost:5000', 'X')).toEqual({ kind: 'server', uri: 'http://localhost:5000' });
    expect(parseTrackingUri('HTTPS://mlflow.example/prefix', 'X')).toEqual({ kind: 'server', uri: 'HTTPS://mlflow.example/prefix' });
    expect(parseTrackingUri('file:///srv/ml%20runs', 'X')).toEqual({ kind: 'store', dir: '/srv/ml runs' });
    expect(parseTrackingUri('file://localhost/srv/mlruns', 'X')).toEqual({ kind: 'store', dir: '/srv/mlruns' });
    expect(parseTrackingUri('/abs/store', 'X')).toEqual({ kind: 'store', dir: '/abs/store' });
    expect(parseTrackingUri('./rel', 'X')).toEqual({ kind: 'store', dir: path.resolve('rel') });
    const cwd = tempCwd();
    const here = process.cwd();
    process.chdir(cwd);
    try {
      // Empty is unset: the default ./mlruns, which may be absent (a fresh clone: the committed records only).
      const r = await inProcess(['report', '--records', 'none'], { MLFLOW_TRACKING_URI: '' });
      expect(r.code, r.stderr).toBe(0);
      expect(fs.readFileSync(path.join(cwd, 'reports', 'report.md'), 'utf8')).toContain(`the MLflow store \`${path.join(fs.realpathSync(cwd), 'mlruns')}\``);
      const s = await inProcess(['report'], { MLFLOW_TRACKING_URI: 'file:///no/such/store' });
      expect(s.stderr).toMatch(/--store: no MLflow store at \/no\/such\/store$/);
    } finally {
      process.chdir(here);
    }
  });

  it('--verbose adds the kernel list to the backend line; without it the line is short', { timeout: 120_000 }, async () => {
    const cwd = tempCwd();
    const here = process.cwd();
    process.chdir(cwd);
    try {
      const plain = await inProcess(TINY);
      const verbose = await inProcess([...TINY, '--verbose']);
      expect(plain.code).toBe(0);
      expect(verbose.code).toBe(0);
      const line = (out: string) => out.split('\n').find((l) => l.startsWith('loom: backend '))!;
      // Before: one line of ~1,300 characters listing every replaced kernel.
      expect(line(plain.stdout).split('; not used')[0]!.length).toBeLessThan(80);
      expect(plain.stdout).not.toMatch(/^loom: kernels: /m);
      if (line(plain.stdout).startsWith('loom: backend native-cpu')) {
        expect(line(plain.stdout)).toMatch(/^loom: backend native-cpu \(\w+, \d+ threads\)/);
        expect(verbose.stdout).toMatch(/^loom: kernels: loom native \(.*\): .*Conv2D/m);
      }
      expect(process.env.LOOM_VERBOSE).toBeUndefined();
    } finally {
      process.chdir(here);
    }
  });

  it('suggests the closest name only when one is close', () => {
    expect(didYouMean('sed', ['seed', 'set', 'preset'], '--')).toBe(' (did you mean --seed?)');
    expect(didYouMean('trackinguri', ['tracking-uri', 'resume'], '--')).toBe(' (did you mean --tracking-uri?)');
    expect(didYouMean('temp', ['temperature', 'top-k'], '--')).toBe(' (did you mean --temperature?)');
    expect(didYouMean('zzz', ['seed', 'set'])).toBe('');
  });

  it('--set overrides preset fields, into objects and list elements, and the run logs the values it used', { timeout: 300_000 }, () => {
    const cwd = tempCwd();
    const args = [
      'paper',
      'mnist-cnn',
      '--preset',
      'smoke',
      '--json',
      'summary.json',
      '--set',
      'data.trainLimit=300',
      '--set',
      'data.testLimit=100',
      '--set',
      'model.layers.3.units=16',
      '--set',
      'optimizer.lr=0.002',
    ];
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd });
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(fs.readFileSync(path.join(cwd, 'summary.json'), 'utf8'));
    const params = path.join(cwd, 'mlruns', summary.mlflowExperimentId, summary.mlflowRunId, 'params');
    const param = (name: string) => fs.readFileSync(path.join(params, name), 'utf8');
    expect(param('data.trainLimit')).toBe('300');
    expect(param('data.testLimit')).toBe('100');
    expect(param('optimizer.lr')).toBe('0.002');
    expect(param('model.layers.3.units')).toBe('16');
    // Untouched siblings keep the preset's values.
    expect(param('model.layers.3.activation')).toBe('relu');
    expect(param('model.layers.0.filters')).toBe('32');
    expect(param('trainer.epochs')).toBe('1');
    expect(summary.scale).toMatch(/270 training \+ 30 validation images/);
    // The table names its metric column (issue 18, item 9).
    expect(r.stdout).toMatch(/ {2}metric {9}measured {2}reference {2}source/);
  });

  it('--max-steps stops after N steps; --record and `loom record` write the run record under LOOM_RECORDS_ROOT', { timeout: 120_000 }, () => {
    const cwd = tempCwd();
    const root = path.join(cwd, 'checkout');
    const env = { ...process.env, LOOM_RECORDS_ROOT: root, MLFLOW_TRACKING_URI: '' };
    const r = spawnSync(process.execPath, [bin, ...TINY, '--seed', '3', '--max-steps', '1', '--record'], { encoding: 'utf8', cwd, env });
    expect(r.status, r.stderr).toBe(0);
    const file = path.join(root, 'papers', 'mnist-cnn', 'results', 'smoke-seed3.json');
    expect(r.stdout).toContain('loom: recorded ');
    expect(r.stdout).toContain('trainer.maxSteps = 1 (--max-steps) capped training at 1 optimizer steps');
    const rec = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(rec).toMatchObject({ format: 'loom-run-record/1', paper: 'mnist-cnn', preset: 'smoke', seed: 3, config: { trainer: { maxSteps: 1 } } });
    expect(rec.run.metrics.epoch).toEqual([[1, 1]]); // one step, then the epoch's end
    expect(rec.machine.cpu).not.toBe('?');
    fs.rmSync(file);
    // The same from the store afterwards, by run id.
    const again = spawnSync(process.execPath, [bin, 'record', '--run', rec.run.runId], { encoding: 'utf8', cwd, env });
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).run.runId).toBe(rec.run.runId);
    const missing = spawnSync(process.execPath, [bin, 'record', '--run', 'nope'], { encoding: 'utf8', cwd, env });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('--run: no run nope');
    // A run that has not finished (here: marked KILLED) makes a record only with --unfinished, beside the finished one.
    const metaFile = fs
      .readdirSync(path.join(cwd, 'mlruns'))
      .map((e) => path.join(cwd, 'mlruns', e, rec.run.runId, 'meta.yaml'))
      .find((f) => fs.existsSync(f))!;
    const finishedMeta = fs.readFileSync(metaFile, 'utf8');
    fs.writeFileSync(metaFile, finishedMeta.replace(/^status: 3$/m, 'status: 5'));
    const refused = spawnSync(process.execPath, [bin, 'record', '--run', rec.run.runId], { encoding: 'utf8', cwd, env });
    expect(refused.status).toBe(2);
    expect(refused.stderr).toContain('is KILLED, not FINISHED: only finished runs make records (--unfinished records it as unfinished)');
    const partial = spawnSync(process.execPath, [bin, 'record', '--run', rec.run.runId, '--unfinished'], { encoding: 'utf8', cwd, env });
    expect(partial.status, partial.stderr).toBe(0);
    const unfinished = JSON.parse(fs.readFileSync(file.replace(/\.json$/, '.unfinished.json'), 'utf8'));
    expect(unfinished.unfinished).toEqual({ status: 'KILLED', lastStep: 1 });
    expect(unfinished.run.metrics.epoch).toEqual([[1, 1]]);
    fs.writeFileSync(metaFile, finishedMeta);
    fs.rmSync(file.replace(/\.json$/, '.unfinished.json'));
    // A fresh clone has no ./mlruns: the report still shows the committed records.
    fs.rmSync(path.join(cwd, 'mlruns'), { recursive: true });
    const report = spawnSync(process.execPath, [bin, 'report'], { encoding: 'utf8', cwd, env });
    expect(report.status, report.stderr).toBe(0);
    expect(report.stdout).toContain('report of 1 paper run(s)');
    expect(fs.readFileSync(path.join(cwd, 'reports', 'report.md'), 'utf8')).toContain(rec.run.runId);
    const bad = spawnSync(process.execPath, [bin, ...TINY, '--max-steps', '0'], { encoding: 'utf8', cwd, env });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--max-steps: expected a positive integer, got "0"');
  });
});

describe('where run records go', () => {
  it('this checkout when the CLI runs from it, the current directory from an installed package, LOOM_RECORDS_ROOT first', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-records-root-'));
    try {
      // A checkout: the CLI's parent holds the papers' sources. An installed build: node_modules/loom/dist with
      // compiled papers (index.js) and no sources.
      const checkout = path.join(base, 'loom');
      fs.mkdirSync(path.join(checkout, 'papers'), { recursive: true });
      fs.writeFileSync(path.join(checkout, 'papers', 'index.ts'), '');
      const dist = path.join(base, 'project', 'node_modules', 'loom', 'dist');
      fs.mkdirSync(path.join(dist, 'papers'), { recursive: true });
      fs.writeFileSync(path.join(dist, 'papers', 'index.js'), '');
      const project = path.join(base, 'project');
      expect(recordsRoot(path.join(checkout, 'cli'), project, {})).toBe(checkout);
      expect(recordsRoot(path.join(dist, 'cli'), project, {})).toBe(project);
      expect(recordsRoot(path.join(dist, 'cli'), project, { LOOM_RECORDS_ROOT: base })).toBe(base);
      // The real CLI runs from this checkout.
      expect(recordsRoot(path.dirname(fileURLToPath(import.meta.url)), project, {})).toBe(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..'));
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
