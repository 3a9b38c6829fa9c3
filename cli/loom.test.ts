/** The command line as a user meets it: plugin listing, and clear errors with exit code 2 for bad input. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const loom = (...args: string[]) => spawnSync(process.execPath, [path.join(repo, 'cli/bin.mjs'), ...args], { encoding: 'utf8', cwd: repo });

describe('loom CLI', () => {
  it('lists every registered plugin with kind, name and options schema as JSON', () => {
    const r = loom('plugins', '--json');
    expect(r.status).toBe(0);
    const list = JSON.parse(r.stdout) as { kind: string; name: string; options: { type: string } }[];
    const names = list.map((p) => `${p.kind}:${p.name}`);
    for (const n of ['layer:conv2d', 'layer:dense', 'optimizer:adam', 'loss:sparse-categorical-crossentropy', 'tracker:mlflow-file', 'dataset:mnist', 'backend:cpu']) {
      expect(names).toContain(n);
    }
    expect(list.find((p) => p.name === 'adam')!.options).toMatchObject({ type: 'object', properties: { lr: { type: 'number' } } });
  });

  it('rejects bad input with a message naming it and exit code 2', () => {
    const cases: [string[], RegExp][] = [
      [['paper', 'nope'], /unknown paper "nope"; papers: mnist-cnn/],
      [['paper', 'mnist-cnn', '--preset', 'huge'], /--preset: paper "mnist-cnn" has no preset "huge"; presets: .*smoke/],
      [['paper', 'mnist-cnn', '--seed', 'abc'], /--seed: expected a non-negative integer, got "abc"/],
      [['paper', 'mnist-cnn', '--bogus'], /Unknown option '--bogus'/],
      [['paper', 'mnist-cnn', '--backend', 'quantum'], /--backend.type: unknown backend "quantum"; registered backends: .*cpu/],
      [['paper', 'mnist-cnn', '--backend', 'tfjs-node'], /backend "tfjs-node" is not available here: @tensorflow\/tfjs-node is not installed/],
      [['plugins', '--kind', 'widget'], /--kind: unknown kind "widget"/],
      [['sync', '--tracking-uri', 'ftp://mlflow'], /--tracking-uri: expected an http\(s\) URL such as http:\/\/localhost:5000, got "ftp:\/\/mlflow"/],
      [['sync', '--dir', 'no/such/store'], /--dir: no MLflow file store at .*no\/such\/store/],
      [['fly'], /unknown command "fly"/],
      [['paper', 'mnist-cnn', '--set', 'trainer.epochs'], /--set: expected FIELD=VALUE with a dotted field path such as trainer.epochs=1, got "trainer.epochs"/],
      [['paper', 'mnist-cnn', '--set', 'trainer..epochs=1'], /--set: expected FIELD=VALUE/],
      [['paper', 'mnist-cnn', '--set', 'trainer=1', '--set', 'trainer.epochs=2'], /--set: "trainer.epochs=2" sets inside trainer, which another --set gave a value/],
      [['paper', 'mnist-cnn', '--set', 'trainer.epoch=1'], /trainer: .*epoch/],
      [['paper', 'mnist-cnn', '--set', 'trainer.epochs=many'], /trainer.epochs: .*number/],
    ];
    for (const [args, message] of cases) {
      const r = loom(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
  });

  it('--set overrides preset fields, into objects and list elements, and the run logs the values it used', { timeout: 300_000 }, () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-set-'));
    try {
      const args = ['paper', 'mnist-cnn', '--preset', 'smoke', '--json', 'summary.json', '--set', 'data.trainLimit=300', '--set', 'data.testLimit=100', '--set', 'model.layers.3.units=16', '--set', 'optimizer.lr=0.002'];
      const r = spawnSync(process.execPath, [path.join(repo, 'cli/bin.mjs'), ...args], { encoding: 'utf8', cwd });
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
    } finally {
      fs.rmSync(cwd, { recursive: true, force: true });
    }
  });
});
