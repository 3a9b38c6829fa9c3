/** The file store matches MLflow's layout (shared/ARCHITECTURE.md), for a finished and for a failed run. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import YAML from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { runExperiment } from '../../runtime';
import { testRegistry } from '../../test/harness';
import toyBlobs, { toyConfig } from '../../test/toy-data';
import { MlflowFileTracker } from './mlflow-file';

let registry: PluginRegistry;
let root: string;
beforeEach(async () => {
  registry = (await testRegistry()).register(toyBlobs);
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-mlruns-'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const readYaml = (f: string) => YAML.parse(fs.readFileSync(f, 'utf8')) as Record<string, unknown>;

describe('mlflow-file tracker', () => {
  it('writes a finished run exactly in MLflow file-store layout', async () => {
    const r = await runExperiment({ registry, config: toyConfig(root), runName: 'toy-run', tags: { preset: 'unit' } });
    const { experimentId, runId } = r.run;
    expect(typeof experimentId).toBe('string');
    expect(readYaml(path.join(root, '0', 'meta.yaml'))).toMatchObject({ experiment_id: '0', name: 'Default', lifecycle_stage: 'active' });

    const exp = readYaml(path.join(root, experimentId, 'meta.yaml'));
    expect(Object.keys(exp).sort()).toEqual(['artifact_location', 'creation_time', 'experiment_id', 'last_update_time', 'lifecycle_stage', 'name']);
    expect(exp).toMatchObject({ experiment_id: experimentId, name: 'toy', lifecycle_stage: 'active' });
    expect(fs.readFileSync(path.join(root, experimentId, 'meta.yaml'), 'utf8')).toMatch(new RegExp(`experiment_id: ["']${experimentId}["']`));

    const runDir = path.join(root, experimentId, runId);
    const meta = readYaml(path.join(runDir, 'meta.yaml'));
    expect(Object.keys(meta).sort()).toEqual([
      'artifact_uri',
      'end_time',
      'entry_point_name',
      'experiment_id',
      'lifecycle_stage',
      'run_id',
      'run_name',
      'run_uuid',
      'source_name',
      'source_type',
      'source_version',
      'start_time',
      'status',
      'tags',
      'user_id',
    ]);
    expect(runId).toMatch(/^[0-9a-f]{32}$/);
    expect(meta).toMatchObject({
      run_id: runId,
      run_uuid: runId,
      run_name: 'toy-run',
      experiment_id: experimentId,
      status: 3,
      source_type: 4,
      lifecycle_stage: 'active',
      tags: [],
    });
    expect(meta.end_time as number).toBeGreaterThanOrEqual(meta.start_time as number);
    expect(meta.artifact_uri).toBe(`file://${path.join(runDir, 'artifacts')}`);

    // Metrics: one line per value, "<epoch ms> <value> <step>"; every metric on the optimizer-step axis (per-epoch
    // ones at the step that ends the epoch: 72 training examples in batches of 16 = 5 steps an epoch).
    for (const key of ['loss', 'accuracy', 'val_loss', 'val_accuracy', 'batch_loss', 'test_accuracy']) {
      const lines = fs
        .readFileSync(path.join(runDir, 'metrics', key), 'utf8')
        .trimEnd()
        .split('\n');
      for (const l of lines) expect(l).toMatch(/^\d{13} (-?\d+(\.\d+)?(e[-+]\d+)?|nan|inf) \d+$/);
    }
    const loss = fs
      .readFileSync(path.join(runDir, 'metrics', 'loss'), 'utf8')
      .trimEnd()
      .split('\n');
    expect(loss.map((l) => Number(l.split(' ')[2]))).toEqual([5, 10, 15]);
    const epochs = fs
      .readFileSync(path.join(runDir, 'metrics', 'epoch'), 'utf8')
      .trimEnd()
      .split('\n');
    expect(epochs.map((l) => Number(l.split(' ')[1]))).toEqual([1, 2, 3]);
    expect(Number(loss[0]!.split(' ')[1])).toBeCloseTo(r.history[0]!.loss, 10);

    // Params: the flattened resolved config, raw values without a newline.
    expect(fs.readFileSync(path.join(runDir, 'params', 'trainer.batchSize'), 'utf8')).toBe('16');
    expect(fs.readFileSync(path.join(runDir, 'params', 'optimizer.type'), 'utf8')).toBe('adam');
    expect(fs.readFileSync(path.join(runDir, 'params', 'seed'), 'utf8')).toBe('7');

    // Tags: the run name, and what the run ran on.
    const tag = (k: string) => fs.readFileSync(path.join(runDir, 'tags', k), 'utf8');
    expect(tag('mlflow.runName')).toBe('toy-run');
    for (const k of ['backend', 'seed', 'git.commit', 'node.version', 'host', 'preset']) expect(tag(k).length, k).toBeGreaterThan(0);
    expect(tag('seed')).toBe('7');

    for (const a of ['config.json', 'summary.json', 'model/model.json', 'model/weights.bin'])
      expect(fs.existsSync(path.join(runDir, 'artifacts', a)), a).toBe(true);
  });

  it('marks a run that throws as FAILED with its reason and an end time', async () => {
    const config = toyConfig(root, { trainer: { epochs: 1, batchSize: 16 } });
    // A learning rate of 1e30 makes the loss infinite within a step or two.
    const bad = { ...config, optimizer: { type: 'adam', lr: 1e30 } };
    await expect(runExperiment({ registry, config: bad })).rejects.toThrow(
      /non-finite loss \(NaN\) at step \d+ \(epoch 1\); layers with non-finite gradients: .*; last finite loss: \d/,
    );
    const exp = fs.readdirSync(root).find((d) => d !== '0')!;
    const run = fs.readdirSync(path.join(root, exp)).find((d) => d !== 'meta.yaml')!;
    const meta = readYaml(path.join(root, exp, run, 'meta.yaml'));
    expect(meta.status).toBe(4);
    expect(meta.end_time).toEqual(expect.any(Number));
    expect(fs.readFileSync(path.join(root, exp, run, 'tags', 'loom.status_reason'), 'utf8')).toMatch(/non-finite loss/);
  });

  it('keeps params immutable and reuses an experiment by name', async () => {
    const t = new MlflowFileTracker(root);
    const a = await t.startRun({ experiment: 'same', runName: 'a' });
    t.logParams({ lr: 0.1 });
    t.logParams({ lr: 0.1 });
    expect(() => t.logParams({ lr: 0.2 })).toThrow(/immutable/);
    const b = await new MlflowFileTracker(root).startRun({ experiment: 'same', runName: 'b' });
    expect(b.experimentId).toBe(a.experimentId);
    expect(b.runId).not.toBe(a.runId);
  });
});
