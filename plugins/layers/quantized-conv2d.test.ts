/**
 * quantized-conv2d against the float convolution with its dequantized weights, on every CPU backend: within
 * Σ |W[·, ·, ·, j]|·S_x/2 per output channel (strides, same/valid padding, static and dynamic, relu).
 */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { activationQuant, Rng, selectBackend, type Layer, type PluginRegistry } from '../../core';
import { cpuBackends, testRegistry } from '../../test/harness';

let registry: PluginRegistry;
let backends: string[];
beforeAll(async () => {
  registry = await testRegistry();
  backends = await cpuBackends();
});

describe('quantized-conv2d', () => {
  it('is within the scales’ bound of conv2d with the dequantized weights, on every backend', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.integer({ min: 3, max: 8 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 5 }),
          fc.integer({ min: 1, max: 3 }),
          fc.integer({ min: 1, max: 2 }),
          fc.constantFrom<'valid' | 'same'>('valid', 'same'),
          fc.constantFrom('static', 'dynamic'),
          fc.boolean(),
          fc.integer({ min: 0, max: 1e6 }),
          (size, channels, filters, kernelSize, strides, padding, mode, relu, seed) => {
            const x = tf.randomNormal([2, size, size, channels], 0, 1, 'float32', seed);
            const q = mode === 'static' ? activationQuant(tf.min(x).dataSync()[0]!, tf.max(x).dataSync()[0]!) : null;
            const layer = registry.create('layer', {
              type: 'quantized-conv2d',
              filters,
              kernelSize,
              strides,
              padding,
              activation: relu ? 'relu' : 'linear',
              mode,
              ...(q ? { inputScale: q.scale, inputZeroPoint: q.zeroPoint } : {}),
            }) as Layer;
            layer.build([null, size, size, channels], new Rng(seed));
            const [kernel, scale, bias] = layer.buffers!().map((p) => p.variable);
            bias!.assign(tf.randomNormal([filters], 0, 0.1, 'float32', seed + 1));
            try {
              tf.tidy(() => {
                const w = tf.mul(kernel!, scale!) as tf.Tensor4D;
                const xScale = activationQuant(tf.min(x).dataSync()[0]!, tf.max(x).dataSync()[0]!).scale;
                const bound = tf.mul(tf.sum(tf.abs(w), [0, 1, 2]), xScale / 2).dataSync();
                const got = layer.apply(x, { training: false, rng: new Rng(0) }).dataSync();
                const pre = tf.add(tf.conv2d(x as tf.Tensor4D, w, strides, padding), bias!);
                const want = (relu ? tf.relu(pre) : pre).dataSync();
                expect(got.length).toBe(want.length);
                for (let i = 0; i < want.length; i++)
                  expect(Math.abs(got[i]! - want[i]!), `${backend} ${mode} [${i}]`).toBeLessThanOrEqual(
                    bound[i % filters]! * 1.0001 + 1e-5 * (1 + Math.abs(want[i]!)),
                  );
              });
            } finally {
              x.dispose();
              layer.dispose();
            }
          },
        ),
        { numRuns: 20 },
      );
    }
  });
});
