/**
 * quantized-dense against the float dense layer with its dequantized weights, on every CPU backend (native-cpu's int8
 * kernel, tfjs's reference path elsewhere): within Σ_p |W[p, j]|·S_x/2 per output (static: the input inside the
 * calibrated range; dynamic: each batch's own), with the activation applied after; sequences [b, t, in] too.
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

describe('quantized-dense', () => {
  it('is within the scales’ bound of dense with the dequantized weights, static and dynamic, on every backend', async () => {
    for (const backend of backends) {
      await selectBackend(registry, backend);
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 30 }),
          fc.integer({ min: 1, max: 20 }),
          fc.constantFrom('static', 'dynamic'),
          fc.constantFrom('linear', 'relu', 'tanh'),
          fc.boolean(),
          fc.integer({ min: 0, max: 1e6 }),
          (inF, units, mode, activation, seq, seed) => {
            const shape = seq ? [2, 3, inF] : [4, inF];
            const x = tf.randomNormal(shape, 0, 1, 'float32', seed);
            const q = mode === 'static' ? activationQuant(tf.min(x).dataSync()[0]!, tf.max(x).dataSync()[0]!) : null;
            const opts = { type: 'quantized-dense', units, activation, mode, ...(q ? { inputScale: q.scale, inputZeroPoint: q.zeroPoint } : {}) };
            const layer = registry.create('layer', opts) as Layer;
            layer.build([null, ...shape.slice(1)], new Rng(seed));
            const [kernel, scale, bias] = layer.buffers!().map((p) => p.variable);
            bias!.assign(tf.randomNormal([units], 0, 0.1, 'float32', seed + 1));
            try {
              tf.tidy(() => {
                const w = tf.mul(kernel!, scale!);
                const xScale = q ? q.scale : activationQuant(tf.min(x).dataSync()[0]!, tf.max(x).dataSync()[0]!).scale;
                const bound = tf.mul(tf.sum(tf.abs(w), 0), xScale / 2).dataSync();
                const got = layer.apply(x, { training: false, rng: new Rng(0) }).dataSync();
                const pre = tf.add(tf.matMul(tf.reshape(x, [-1, inF]), w), bias!);
                const want = (activation === 'relu' ? tf.relu(pre) : activation === 'tanh' ? tf.tanh(pre) : pre).dataSync();
                // relu and tanh are 1-Lipschitz, so the bound carries through them.
                for (let i = 0; i < want.length; i++)
                  expect(Math.abs(got[i]! - want[i]!), `${backend} ${mode} [${i}]`).toBeLessThanOrEqual(
                    bound[i % units]! * 1.0001 + 1e-5 * (1 + Math.abs(want[i]!)),
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

  it('needs the calibrated input scale in static mode, naming the field', () => {
    expect(() => registry.create('layer', { type: 'quantized-dense', units: 2, inputScale: 0.1 })).toThrow(/inputZeroPoint/);
    expect(() => registry.create('layer', { type: 'quantized-dense', units: 2, mode: 'static' })).toThrow(/inputScale/);
    expect(() => registry.create('layer', { type: 'quantized-dense', units: 2, mode: 'dynamic', inputZeroPoint: 256 })).toThrow(/inputZeroPoint/);
  });
});
