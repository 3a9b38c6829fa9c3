/**
 * `loom paper bert --prune-heads`: a saved BERT classifier (2 layers × 2 heads) inside a run's artifacts, its heads
 * ranked by importance on the training split and pruned 0..4 without retraining, each row scored on the test split.
 * The table is checked against the plugin's functions applied directly: the ranking, and each row's scores; a bad
 * value exits 2 naming --prune-heads.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../cli/loom';
import { batchesOf, epochOrder, loadModel, type PluginRegistry } from '../../core';
import { headImportance, headsToPrune, pruneHeads } from '../../plugins/callbacks/head-pruning';
import { savedBertRun, type SavedBertRun } from '../../test/fixtures/bert-run';
import { testRegistry } from '../../test/harness';
import type { HeadPruningRow } from './head-pruning';
import { binaryScores } from './scores';

let dir: string;
let registry: PluginRegistry;
let source: SavedBertRun['source'];
beforeAll(async () => {
  registry = await testRegistry();
  ({ dir, source } = savedBertRun(registry, 'loom-bert-heads-', 2));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('bert --prune-heads', () => {
  it('ranks the heads by normalized importance and scores the model with the 0..4 least important pruned', { timeout: 300_000 }, async () => {
    const out: string[] = [];
    const err: string[] = [];
    const json = path.join(dir, 'heads.json');
    const saved = path.join(dir, 'run', 'artifacts', 'model');
    const code = await run(['paper', 'bert', '--prune-heads', 'all', '--saved-model', saved, '--importance-samples', '48', '--json', json], {
      out: (t) => out.push(t),
      err: (t) => err.push(t),
    });
    expect(code, err.join('\n')).toBe(0);
    const r = JSON.parse(fs.readFileSync(json, 'utf8')) as { heads: number; order: string[]; rows: HeadPruningRow[] };
    expect(r.heads).toBe(4);
    expect(r.rows.map((x) => x.pruned)).toEqual([0, 1, 2, 3, 4]);
    // The same ranking from the plugin's functions on the same sample (seed 0, 48 messages, batches of 32).
    const data = registry.create('dataset', source);
    const train = data.load('train');
    const test = data.load('test');
    const model = loadModel(saved, registry);
    const batches = [...batchesOf(epochOrder(train.size, 0, 0, true).subarray(0, 48), 32)].map((i) => train.batch(i));
    const ranked = headsToPrune(await headImportance(model, registry.create('loss', 'sparse-categorical-crossentropy'), batches), 4);
    for (const b of batches) tf.dispose([b.x, b.y]);
    model.dispose();
    expect(r.order).toEqual(ranked.map((h) => `${h.layer.split('/')[1]}/head ${h.head}`));
    for (const row of r.rows) {
      expect(row.heads).toEqual(r.order.slice(0, row.pruned));
      const m = loadModel(saved, registry);
      pruneHeads(m, ranked.slice(0, row.pruned));
      expect(row).toMatchObject(await binaryScores(m, test));
      m.dispose();
    }
    expect(out.join('\n')).toMatch(/^\s+4\s+\d+\.\d\d %/m);
  });

  it('refuses a number of heads the model does not have (exit 2, naming --prune-heads)', async () => {
    const err: string[] = [];
    const saved = path.join(dir, 'run', 'artifacts', 'model');
    expect(
      await run(['paper', 'bert', '--prune-heads', '5', '--saved-model', saved, '--importance-samples', '8'], { out: () => {}, err: (t) => err.push(t) }),
    ).toBe(2);
    expect(err.join('\n')).toContain('--prune-heads');
    expect(err.join('\n')).toContain('from 0 to 4');
  });
});
