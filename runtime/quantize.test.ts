/**
 * quantizeModel: a Sequential's dense and conv2d layers become quantized ones whose outputs stay close to the float
 * model's (static, calibrated on the inputs; dynamic), the result saves and loads to the same outputs, and bad input
 * is a ConfigError naming the field.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadModel, Rng, saveModel, Sequential, type PluginRegistry } from '../core';
import { testRegistry } from '../test/harness';
import { inferenceBytes, MIN_DEPTH, quantizeModel } from './quantize';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const cnn = (seed: number) => {
  const m = new Sequential(
    {
      inputShape: [8, 8, 1],
      layers: [
        { type: 'conv2d', filters: 4, kernelSize: 3, activation: 'relu' },
        { type: 'max-pool2d', poolSize: 2 },
        { type: 'flatten' },
        { type: 'dense', units: 16, activation: 'relu' },
        { type: 'dense', units: 5 },
      ],
    },
    registry,
  );
  m.build(undefined, new Rng(seed));
  return m;
};

describe('quantizeModel', () => {
  it('static and dynamic: outputs within a few percent of the float model’s range; the same layers, int8 kernels', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.constantFrom<'static' | 'dynamic'>('static', 'dynamic'), (seed, mode) => {
        const float = cnn(seed);
        const x = tf.randomUniform([32, 8, 8, 1], 0, 1, 'float32', seed);
        const { model, report } = quantizeModel(float, registry, { mode, calibration: x, minDepth: 0 });
        try {
          expect(report.layers.map((l) => l.type)).toEqual(['conv2d', 'dense', 'dense']);
          expect((model.spec.layers as { type: string }[]).map((l) => l.type)).toEqual([
            'quantized-conv2d',
            'max-pool2d',
            'flatten',
            'quantized-dense',
            'quantized-dense',
          ]);
          const [yf, yq] = [float, model].map((m) => tf.tidy(() => m.apply(x, { training: false, rng: new Rng(0) }).dataSync()));
          const range = Math.max(...yf!) - Math.min(...yf!);
          let worst = 0;
          for (let i = 0; i < yf!.length; i++) worst = Math.max(worst, Math.abs(yf![i]! - yq![i]!));
          // 8-bit steps through three layers: each rounding is ≤ 1/510 of a range; 5 % of the output's range is loose.
          expect(worst).toBeLessThan(0.05 * range);
          // One byte per kernel weight; per channel a float32 scale and bias.
          const kernels = float.weights().filter((p) => p.name.endsWith('/kernel'));
          const channels = kernels.reduce((a, p) => a + p.variable.shape.at(-1)!, 0);
          expect(inferenceBytes(model)).toEqual({ int8: kernels.reduce((a, p) => a + p.variable.size, 0), float32: 4 * 2 * channels });
        } finally {
          x.dispose();
          float.dispose();
          model.dispose();
        }
      }),
      { numRuns: 6 },
    );
  });

  it('the quantized model saves and loads to the same outputs', () => {
    const float = cnn(3);
    const x = tf.randomUniform([4, 8, 8, 1], 0, 1, 'float32', 3);
    const { model } = quantizeModel(float, registry, { mode: 'static', calibration: x, minDepth: 0 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-quantize-'));
    try {
      saveModel(model, dir);
      const loaded = loadModel(dir, registry);
      const [a, b] = [model, loaded].map((m) => Array.from(tf.tidy(() => m.apply(x, { training: false, rng: new Rng(0) }).dataSync())));
      expect(b).toEqual(a);
      expect(loaded.spec).toEqual(model.spec);
      // The int8 kernels take one byte a weight on disk (padded to whole 4-byte words), the rest float32.
      const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8')) as { version: number; weights: { dtype?: string }[] };
      expect(manifest.version).toBe(4);
      expect(manifest.weights.filter((w) => w.dtype === 'int8').length).toBe(3);
      const words = model.weights().reduce((a, p) => a + (p.int8 ? Math.ceil(p.variable.size / 4) : p.variable.size), 0);
      expect(fs.statSync(path.join(dir, 'weights.bin')).size).toBe(4 * words);
      loaded.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      x.dispose();
      float.dispose();
      model.dispose();
    }
  });

  it('keeps a layer shallower than minDepth float32 (default MIN_DEPTH = 128), reports it, and refuses when none is deep enough', () => {
    // Depths: the convolution 3·3·1 = 9, the first dense 3·3·4 = 36, the second 16.
    const float = cnn(5);
    const x = tf.randomUniform([8, 8, 8, 1], 0, 1, 'float32', 5);
    try {
      const types = (m: { spec: object }) => (m.spec as { layers: { type: string }[] }).layers.map((l) => l.type);
      const { model, report } = quantizeModel(float, registry, { mode: 'static', calibration: x, minDepth: 20 });
      expect(types(model)).toEqual(['conv2d', 'max-pool2d', 'flatten', 'quantized-dense', 'dense']);
      expect(report.layers.map((l) => l.type)).toEqual(['dense']);
      expect(report.kept?.map((k) => [k.type, k.depth])).toEqual([
        ['conv2d', 9],
        ['dense', 16],
      ]);
      // The kept layers are the float model's, weights and all: only the quantized one differs.
      const [yf, yq] = [float, model].map((m) => tf.tidy(() => m.apply(x, { training: false, rng: new Rng(0) }).dataSync()));
      const range = Math.max(...yf!) - Math.min(...yf!);
      for (let i = 0; i < yf!.length; i++) expect(Math.abs(yf![i]! - yq![i]!)).toBeLessThan(0.05 * range);
      model.dispose();
      expect(MIN_DEPTH).toBe(128);
      expect(() => quantizeModel(float, registry, { mode: 'dynamic' })).toThrow(
        /^minDepth: every dense and conv2d layer is shallower than 128 \(.*: 9, .*: 36, .*: 16\)/,
      );
    } finally {
      x.dispose();
      float.dispose();
    }
  });

  it('refuses static mode without calibration data, and a model with nothing to quantize, naming the field', () => {
    const float = cnn(1);
    expect(() => quantizeModel(float, registry, { mode: 'static' })).toThrow(ConfigError);
    expect(() => quantizeModel(float, registry, { mode: 'static' })).toThrow(/calibrationSamples/);
    float.dispose();
    const none = new Sequential({ inputShape: [4], layers: [{ type: 'activation', activation: 'relu' }] }, registry);
    none.build(undefined, new Rng(0));
    expect(() => quantizeModel(none, registry, { mode: 'dynamic' })).toThrow(/model\.layers/);
    none.dispose();
    expect(() => registry.create('layer', { type: 'quantized-dense', units: 2 })).toThrow(/inputScale/);
  });
});
