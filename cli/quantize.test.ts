/**
 * `loom quantize`: a saved model in, a quantized model out (static on a data set's sample, or dynamic) that loads and
 * predicts close to the original; user errors exit with code 2 naming the flag.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, Rng, saveModel, Sequential, type PluginRegistry } from '../core';
import { testRegistry } from '../test/harness';
import { run } from './loom';

let registry: PluginRegistry;
let dir: string;
beforeAll(async () => {
  registry = await testRegistry();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-quantize-cli-'));
  const model = new Sequential(
    {
      inputShape: [28, 28, 1],
      layers: [{ type: 'conv2d', filters: 4, kernelSize: 5, strides: 3, activation: 'relu' }, { type: 'flatten' }, { type: 'dense', units: 10 }],
    },
    registry,
  );
  model.build(undefined, new Rng(0));
  saveModel(model, path.join(dir, 'float'));
  model.dispose();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function cli(...args: string[]) {
  const out: string[] = [],
    err: string[] = [];
  const code = await run(args, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('loom quantize', () => {
  it('static (calibrated on MNIST training images) and dynamic: the saved model loads and predicts close to the float one', async () => {
    const float = loadModel(path.join(dir, 'float'), registry);
    const x = tf.randomUniform([8, 28, 28, 1], 0, 1, 'float32', 1);
    const yf = tf.tidy(() => float.apply(x, { training: false, rng: new Rng(0) }).dataSync());
    const range = Math.max(...yf) - Math.min(...yf);
    for (const mode of ['static', 'dynamic']) {
      const out = path.join(dir, mode);
      const r = await cli(
        'quantize',
        path.join(dir, 'float'),
        '--out',
        out,
        '--mode',
        mode,
        '--data',
        'mnist',
        '--calibration-samples',
        '200',
        '--min-depth',
        '0',
      );
      expect(r.code, r.err).toBe(0);
      expect(r.out).toMatch(/quantized 2 layer\(s\)/);
      const q = loadModel(out, registry);
      expect((q.spec.layers as { type: string }[]).map((l) => l.type)).toEqual(['quantized-conv2d', 'flatten', 'quantized-dense']);
      const yq = tf.tidy(() => q.apply(x, { training: false, rng: new Rng(0) }).dataSync());
      for (let i = 0; i < yf.length; i++) expect(Math.abs(yq[i]! - yf[i]!)).toBeLessThan(0.05 * range);
      q.dispose();
    }
    x.dispose();
    float.dispose();
  });

  it('by default keeps a layer shallower than --min-depth 128 float32 and says so (the 5·5·1 convolution here)', async () => {
    const out = path.join(dir, 'default-depth');
    const r = await cli('quantize', path.join(dir, 'float'), '--out', out, '--mode', 'dynamic');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/kept float32, depth 25 < --min-depth 128/);
    expect(r.out).toMatch(/quantized 1 layer\(s\)/);
    const q = loadModel(out, registry);
    expect((q.spec.layers as { type: string }[]).map((l) => l.type)).toEqual(['conv2d', 'flatten', 'quantized-dense']);
    q.dispose();
  });

  it('refuses a missing --out, static mode without --data, and a bad --mode, with exit code 2', async () => {
    const model = path.join(dir, 'float');
    for (const [args, flag] of [
      [[model], '--out'],
      [[model, '--out', path.join(dir, 'x')], '--data'],
      [[model, '--out', path.join(dir, 'x'), '--mode', 'fast'], '--mode'],
      [[model, '--out', path.join(dir, 'x'), '--data', 'mnist', '--calibration-samples', '0'], '--calibration-samples'],
      [[model, '--out', path.join(dir, 'x'), '--mode', 'dynamic', '--min-depth', '-1'], '--min-depth'],
    ] as [string[], string][]) {
      const r = await cli('quantize', ...args);
      expect(r.code).toBe(2);
      expect(r.err).toContain(flag);
    }
  });
});
