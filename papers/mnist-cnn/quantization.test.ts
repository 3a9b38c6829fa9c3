/**
 * `loom paper mnist-cnn --quantize`: a saved CNN quantized statically and dynamically, evaluated beside fp32 on MNIST
 * test images; the JSON table's int8 rows agree with fp32's predictions (same seed's weights) and take a quarter of
 * the bytes. A wrong value exits 2 naming --quantize.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../cli/loom';
import { Rng, saveModel, Sequential } from '../../core';
import { testRegistry } from '../../test/harness';
import papers from '.';

let dir: string;
beforeAll(async () => {
  const registry = await testRegistry();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-mnist-quantize-'));
  const model = new Sequential(papers.presets.full!.model as never, registry);
  model.build(undefined, new Rng(0));
  saveModel(model, path.join(dir, 'model'));
  model.dispose();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('mnist-cnn --quantize', () => {
  it('compares fp32, int8 static and int8 dynamic on the test images', async () => {
    const out: string[] = [],
      err: string[] = [];
    const json = path.join(dir, 'q.json');
    const args = ['paper', 'mnist-cnn', '--quantize', 'all', '--saved-model', path.join(dir, 'model')];
    const code = await run([...args, '--quantize-test-limit', '300', '--calibration-samples', '100', '--json', json], {
      out: (t) => out.push(t),
      err: (t) => err.push(t),
    });
    expect(code, err.join('\n')).toBe(0);
    const { results } = JSON.parse(fs.readFileSync(json, 'utf8')) as { results: { model: string; test_accuracy: number; weightBytes: number }[] };
    expect(results.map((r) => r.model)).toEqual(['fp32', 'int8 static', 'int8 dynamic']);
    // An untrained network's accuracy is near chance, but int8 must predict as fp32 does on nearly every image.
    for (const r of results.slice(1)) {
      expect(Math.abs(r.test_accuracy - results[0]!.test_accuracy)).toBeLessThan(0.05);
      expect(r.weightBytes).toBeLessThan(0.26 * results[0]!.weightBytes);
    }
    expect(out.join('\n')).toMatch(/int8 static/);
  });

  it('refuses an unknown value with exit code 2 naming --quantize', async () => {
    const err: string[] = [];
    const code = await run(['paper', 'mnist-cnn', '--quantize', 'fast', '--saved-model', path.join(dir, 'model')], { out: () => {}, err: (t) => err.push(t) });
    expect(code).toBe(2);
    expect(err.join('\n')).toContain('--quantize');
  });
});
