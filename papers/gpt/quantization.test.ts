/**
 * `loom paper gpt --quantize`: a saved GPT (the smoke preset's architecture) quantized statically and dynamically,
 * its validation loss beside fp32's on the preset's validation windows; a wrong value exits 2 naming --quantize.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../cli/loom';
import { buildModel, loadModel, Rng, saveModel, type ModelConfig } from '../../core';
import { testRegistry } from '../../test/harness';
import charText from '../../plugins/data/char-text';
import papers from '.';
import { validationLoss } from './quantization';

let dir: string;
beforeAll(async () => {
  const registry = await testRegistry();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-gpt-quantize-'));
  const model = buildModel(papers.presets.smoke!.model as unknown as ModelConfig, registry);
  model.build(model.inputShape, new Rng(0));
  saveModel(model, path.join(dir, 'model'));
  model.dispose();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('gpt --quantize', () => {
  it('compares fp32, int8 static and int8 dynamic validation losses, with the int8 weights a byte each', async () => {
    const out: string[] = [],
      err: string[] = [];
    const json = path.join(dir, 'q.json');
    const args = ['paper', 'gpt', '--preset', 'smoke', '--quantize', 'all', '--saved-model', path.join(dir, 'model')];
    const code = await run([...args, '--quantize-limit', '40', '--calibration-samples', '16', '--json', json], {
      out: (t) => out.push(t),
      err: (t) => err.push(t),
    });
    expect(code, err.join('\n')).toBe(0);
    const r = JSON.parse(fs.readFileSync(json, 'utf8')) as { windows: number; results: { model: string; val_loss: number; weightBytes: number }[] };
    expect(r.windows).toBe(40);
    expect(r.results.map((x) => x.model)).toEqual(['fp32', 'int8 static', 'int8 dynamic']);
    // The fp32 row is the saved model's own loss on those windows.
    const registry = await testRegistry();
    const float = loadModel(path.join(dir, 'model'), registry);
    const source = registry.build(charText, (papers.presets.smoke!.data as { source: never }).source, 'data.source');
    expect(r.results[0]!.val_loss).toBeCloseTo(validationLoss(float, source.load('valid'), 40), 6);
    // One block of 32 wide: q,k,v (32×96), output (32×32), MLP (32×128, 128×32) become a byte a weight.
    const int8 = 32 * 96 + 32 * 32 + 32 * 128 + 128 * 32;
    expect(r.results[0]!.weightBytes - r.results[1]!.weightBytes).toBe(3 * int8 - 4 * (96 + 32 + 128 + 32));
    expect(r.results[2]!.weightBytes).toBe(r.results[1]!.weightBytes);
    for (const q of r.results.slice(1)) expect(Math.abs(q.val_loss - r.results[0]!.val_loss)).toBeLessThan(0.05);
    float.dispose();
  });

  it('refuses an unknown value with exit code 2 naming --quantize', async () => {
    const err: string[] = [];
    const code = await run(['paper', 'gpt', '--quantize', 'fast', '--saved-model', path.join(dir, 'model')], { out: () => {}, err: (t) => err.push(t) });
    expect(code).toBe(2);
    expect(err.join('\n')).toContain('--quantize');
  });
});
