/**
 * `loom train <config.yaml|json>` (issue 22, item 5): an experiment from a file, with `extends`, `--set`, tracking,
 * checkpoints and `--resume latest`; a bad config is named with exit code 2 and no run left behind. Runs call the
 * CLI's `run` in process, in a scratch working directory, on MNIST cut to a few dozen images.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { run } from './loom';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const example = path.join(repo, 'examples/configs/mnist-mlp.yaml');

let cwd: string;
let here: string;
beforeEach(() => {
  here = process.cwd();
  cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-train-'));
  process.chdir(cwd);
});
afterEach(() => {
  process.chdir(here);
  fs.rmSync(cwd, { recursive: true, force: true });
});

/** `loom train ...` in process with its output captured (MLFLOW_TRACKING_URI unset: the store is ./mlruns). */
async function train(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const saved = process.env.MLFLOW_TRACKING_URI;
  delete process.env.MLFLOW_TRACKING_URI;
  const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
  try {
    const code = await run(['train', ...args], { out: (t) => out.push(t), err: (t) => err.push(t) });
    return { code, stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    log.mockRestore();
    if (saved !== undefined) process.env.MLFLOW_TRACKING_URI = saved;
  }
}

const TINY = ['--set', 'data.trainLimit=40', '--set', 'data.testLimit=20', '--set', 'trainer.epochs=1', '--set', 'trainer.batchSize=16'];

/** The value of param `name` of the tracked run a `--json` summary names. */
function param(summary: { mlflowRunDir: string }, name: string): string {
  return fs.readFileSync(path.join(summary.mlflowRunDir, 'params', name), 'utf8');
}

describe('loom train', () => {
  it('runs the example YAML config with --set overrides; a JSON file extends it; both are tracked with the values used', { timeout: 120_000 }, async () => {
    const r = await train(example, ...TINY, '--set', 'optimizer.lr=0.002', '--json', 'summary.json');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/mnist-mlp \(mnist-mlp\.yaml, seed 0, backend .+\): MLflow run \w+/);
    expect(r.stdout).toMatch(/ {2}test_accuracy +\d+\.\d+ %/);
    const summary = JSON.parse(fs.readFileSync('summary.json', 'utf8'));
    expect(summary).toMatchObject({ experiment: 'mnist-mlp', seed: 0, history: [{}] });
    expect(summary.metrics.test_accuracy).toBeGreaterThanOrEqual(0);
    expect(param(summary, 'optimizer.lr')).toBe('0.002');
    expect(param(summary, 'data.trainLimit')).toBe('40');
    expect(param(summary, 'model.layers.1.units')).toBe('128');

    fs.writeFileSync('wide.json', JSON.stringify({ extends: example, experiment: 'wide', model: { layers: { 1: { units: 8 } } } }));
    const w = await train('wide.json', ...TINY, '--seed', '2', '--json', 'wide-summary.json');
    expect(w.code, w.stderr).toBe(0);
    const wide = JSON.parse(fs.readFileSync('wide-summary.json', 'utf8'));
    expect(wide).toMatchObject({ experiment: 'wide', seed: 2 });
    expect(param(wide, 'model.layers.1.units')).toBe('8');
    expect(param(wide, 'model.layers.1.activation')).toBe('relu'); // the rest of the layer is the base file's

    // The report lists both runs, each under its experiment, with its test metrics.
    const rep = await run(['report', '--store', 'mlruns', '--out', 'reports', '--records', 'none'], { out: () => undefined, err: () => undefined });
    expect(rep).toBe(0);
    const report = fs.readFileSync('reports/report.md', 'utf8');
    expect(report).toMatch(/## experiment mnist-mlp\n\n### mnist-mlp\.yaml\n/);
    expect(report).toMatch(/## experiment wide\n\n### wide\.json\n/);
    expect(report).toMatch(/\| test_accuracy \| \d+\.\d+ %/);
  });

  it('names a bad config, file or flag with exit code 2 before a run starts', { timeout: 60_000 }, async () => {
    fs.writeFileSync('bad.yaml', `extends: ${example}\ntrainer: { batchSize: 0 }\n`);
    fs.writeFileSync('typo.yaml', `extends: ${example}\noptimiser: adam\n`);
    fs.writeFileSync('a.yaml', 'extends: b.yaml\n');
    fs.writeFileSync('b.yaml', 'extends: a.yaml\n');
    fs.writeFileSync('broken.yaml', 'model: [1, 2\n');
    const cases: [string[], RegExp][] = [
      [['bad.yaml'], /^loom: invalid experiment config: trainer\.batchSize: .*>0/],
      [['typo.yaml'], /^loom: invalid experiment config: .*optimiser/],
      [[example, '--set', 'trainer.epochs=-1'], /^loom: invalid experiment config: trainer\.epochs: /],
      [[example, '--set', 'model.layers.9.units=1'], /^loom: model\.layers\.9: index 9 is out of range: model\.layers has 4 element\(s\)/],
      [['missing.yaml'], /^loom: config: no config file at .*missing\.yaml$/],
      [['config.txt'], /^loom: config: expected a \.yaml, \.yml or \.json file, got "config\.txt"$/],
      [['a.yaml'], /^loom: .*"extends" forms a cycle: a\.yaml -> b\.yaml -> a\.yaml$/],
      [['broken.yaml'], /^loom: broken\.yaml: is not valid YAML: /],
      [[], /^loom: train: name a config file/],
      [[example, '--seed', '-1'], /^loom: --seed: expected a non-negative integer, got "-1"$/],
      [[example, '--resume', 'latest'], /^loom: --resume: no checkpoint of experiment "mnist-mlp" \(.*\) under \.\/checkpoints to resume$/],
    ];
    for (const [args, message] of cases) {
      const r = await train(...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    expect(fs.existsSync('mlruns')).toBe(false);
  });

  it('--resume latest continues the run from its checkpoint and trains it further', { timeout: 120_000 }, async () => {
    const first = await train(example, ...TINY, '--json', 'first.json');
    expect(first.code, first.stderr).toBe(0);
    const again = await train(example, ...TINY, '--set', 'trainer.epochs=2', '--resume', 'latest', '--json', 'second.json');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/loom: resuming run \w+ from .*ckpt-\S+: step 3, 1 of 2 epochs done; training further: trainer\.epochs=2 \(was 1\)/);
    const [a, b] = ['first.json', 'second.json'].map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
    expect(b.mlflowRunId).toBe(a.mlflowRunId);
    expect(b.history).toHaveLength(2);
    expect(b.history[0]).toEqual(a.history[0]);
  });

  it('loads the plugin packages a config names in plugins: [...] before building its parts', { timeout: 120_000 }, async () => {
    // A package in the project's node_modules that discovery skips (no `loom` field, not loom-plugin-*): only the
    // config's `plugins` brings in its callback, which leaves a file when training ends.
    const zod = pathToFileURL(createRequire(import.meta.url).resolve('zod')).href;
    fs.mkdirSync('node_modules/acme-callbacks', { recursive: true });
    fs.writeFileSync('node_modules/acme-callbacks/package.json', JSON.stringify({ name: 'acme-callbacks', type: 'module', main: 'index.js' }));
    fs.writeFileSync(
      'node_modules/acme-callbacks/index.js',
      `import * as fs from 'node:fs';
import { z } from '${zod}';
export default {
  kind: 'callback', name: 'touch-file', description: 'writes a file when training ends (test)',
  schema: z.object({ file: z.string() }).strict(),
  create: ({ file }) => ({ onTrainEnd: (state) => fs.writeFileSync(file, String(state.step)) }),
};
`,
    );
    const withCallback = (plugins: string[]) => ({ extends: example, plugins, callbacks: [{ type: 'touch-file', file: 'done.txt' }] });
    fs.writeFileSync('without.json', JSON.stringify(withCallback([])));
    const missing = await train('without.json', ...TINY);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/callbacks\[0\].*touch-file/);
    fs.writeFileSync('with.json', JSON.stringify(withCallback(['acme-callbacks'])));
    const r = await train('with.json', ...TINY);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync('done.txt', 'utf8')).toBe('3'); // 40 images in batches of 16: 3 steps
  });
});
