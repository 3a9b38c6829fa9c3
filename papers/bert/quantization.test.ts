/**
 * `loom paper bert --quantize`: a saved BERT classifier inside a fine-tuning run's artifacts (config.json beside it)
 * quantized statically and dynamically and scored on that run's SpamAssassin test split beside fp32; a wrong value
 * exits 2 naming --quantize, and a model without its run's config.json is refused saying so.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../cli/loom';
import { buildModel, loadModel, Rng, saveModel, type ModelConfig, type PluginRegistry } from '../../core';
import { spamAssassinTexts, spamTextSchema } from '../../plugins/data/spam-assassin';
import { WordPiece } from '../../plugins/tokenizers/wordpiece';
import { testRegistry } from '../../test/harness';
import { binaryScores } from './scores';

let dir: string;
let registry: PluginRegistry;
const groups = ['hard-ham-1', 'spam-1'];
let source: { type: string; groups: string[]; tokenizer: string; maxLen: number };
beforeAll(async () => {
  registry = await testRegistry();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-bert-quantize-'));
  const texts = spamAssassinTexts('train', spamTextSchema.parse({ groups })).texts;
  const wp = WordPiece.train(texts.slice(0, 40), { vocabSize: 300 });
  const tokenizer = path.join(dir, 'wp.json');
  fs.writeFileSync(tokenizer, JSON.stringify(wp.getState()));
  source = { type: 'spam-assassin', groups, tokenizer, maxLen: 24 };
  const vocabSize = (wp.getState() as unknown as { vocab: string[] }).vocab.length;
  const config = { type: 'bert', name: 'bert', vocabSize, maxLength: 24, dModel: 16, numHeads: 2, layers: 1, dropout: 0, head: 'classifier' };
  const model = buildModel(config as unknown as ModelConfig, registry);
  model.build(model.inputShape, new Rng(0));
  fs.mkdirSync(path.join(dir, 'run', 'artifacts'), { recursive: true });
  saveModel(model, path.join(dir, 'run', 'artifacts', 'model'));
  fs.writeFileSync(path.join(dir, 'run', 'artifacts', 'config.json'), JSON.stringify({ data: { source, train: 'train', test: 'test' } }));
  model.dispose();
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
