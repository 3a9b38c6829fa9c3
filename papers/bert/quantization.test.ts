/**
 * `loom paper bert --quantize`: a saved BERT classifier inside a fine-tuning run's artifacts (config.json beside it)
 * quantized statically and dynamically and scored on that run's SpamAssassin test split beside fp32; a wrong value
 * exits 2 naming --quantize, and a model without its run's config.json is refused saying so.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../cli/loom';
import { loadModel, type PluginRegistry } from '../../core';
import { savedBertRun, type SavedBertRun } from '../../test/fixtures/bert-run';
import { testRegistry } from '../../test/harness';
import { binaryScores } from './scores';

let dir: string;
let registry: PluginRegistry;
let source: SavedBertRun['source'];
beforeAll(async () => {
  registry = await testRegistry();
  ({ dir, source } = savedBertRun(registry, 'loom-bert-quantize-', 1));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('bert --quantize', () => {
  it('scores fp32, int8 static and int8 dynamic on the run’s test split, the int8 model smaller', async () => {
    const out: string[] = [],
      err: string[] = [];
    const json = path.join(dir, 'q.json');
    const model = path.join(dir, 'run', 'artifacts', 'model');
    const code = await run(['paper', 'bert', '--quantize', 'all', '--saved-model', model, '--calibration-samples', '16', '--json', json], {
      out: (t) => out.push(t),
      err: (t) => err.push(t),
    });
    expect(code, err.join('\n')).toBe(0);
    const r = JSON.parse(fs.readFileSync(json, 'utf8')) as {
      testMessages: number;
      results: { model: string; accuracy: number; f1: number; changedFromFp32: number; weightBytes: number }[];
    };
    expect(r.results.map((x) => x.model)).toEqual(['fp32', 'int8 static', 'int8 dynamic']);
    const float = loadModel(model, registry);
    const test = registry.create('dataset', source).load('test');
    expect(r.testMessages).toBe(test.size);
    const predicted = new Int32Array(test.size);
    expect(r.results[0]).toMatchObject({ ...(await binaryScores(float, test, predicted)), changedFromFp32: 0 });
    // q,k,v 16×48, output 16×16, feed-forward 16×64 and 64×16, pooler 16×16, classifier 16×2: a byte a weight, plus a scale a channel.
    const kernels = 16 * 48 + 16 * 16 + 16 * 64 + 64 * 16 + 16 * 16 + 16 * 2;
    const channels = 48 + 16 + 64 + 16 + 16 + 2;
    expect(r.results[0]!.weightBytes - r.results[1]!.weightBytes).toBe(3 * kernels - 4 * channels);
    for (const q of r.results) {
      for (const v of [q.accuracy, q.f1]) expect(v >= 0 && v <= 1).toBe(true);
      expect(q.changedFromFp32 >= 0 && q.changedFromFp32 <= test.size).toBe(true);
    }
    float.dispose();
  });

  it('refuses an unknown value (exit 2, naming --quantize) and a model outside a run', async () => {
    const err: string[] = [];
    const io = { out: () => {}, err: (t: string) => err.push(t) };
    expect(await run(['paper', 'bert', '--quantize', 'fast', '--saved-model', dir], io)).toBe(2);
    expect(err.join('\n')).toContain('--quantize');
    err.length = 0;
    expect(await run(['paper', 'bert', '--quantize', 'dynamic', '--saved-model', path.join(dir, 'nowhere')], io)).not.toBe(0);
    expect(err.join('\n')).toContain('config.json is missing');
  });
});
