/** Batch norm: normalised outputs in training, running statistics that converge to the data's, used at inference. */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng, type Layer, type PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

describe('batch-norm', () => {
  it('normalises each channel in training, tracks running statistics, and uses them at inference', () => {
    const bn = registry.create('layer', { type: 'batch-norm', momentum: 0.9, epsilon: 1e-5 }) as Layer;
    bn.build([null, 2], new Rng(0));
    // Channel 0 ~ N(3, 2²), channel 1 ~ N(−1, 0.5²).
    const rng = new Rng(1);
    const batch = () => tf.tensor2d(Array.from({ length: 256 }, () => [3 + 2 * rng.normal(), -1 + 0.5 * rng.normal()]));
    for (let i = 0; i < 80; i++) {
      const x = batch();
      const y = bn.apply(x, { training: true, rng });
      const { mean, variance } = tf.moments(y, 0);
      Array.from(mean.dataSync()).forEach((m) => expect(Math.abs(m)).toBeLessThan(1e-4));
      Array.from(variance.dataSync()).forEach((v) => expect(Math.abs(v - 1)).toBeLessThan(1e-3));
      tf.dispose([x, y, mean, variance]);
    }
    const [mm, mv] = bn.buffers!().map((b) => Array.from(b.variable.dataSync()));
    expect(Math.abs(mm![0]! - 3)).toBeLessThan(0.3);
    expect(Math.abs(mm![1]! + 1)).toBeLessThan(0.1);
    expect(Math.abs(mv![0]! - 4)).toBeLessThan(0.8);
    expect(Math.abs(mv![1]! - 0.25)).toBeLessThan(0.05);
    // Inference: (x − running mean) / √(running var + ε), with γ = 1 and β = 0 untouched by this test.
    const probe = tf.tensor2d([
      [3, -1],
      [5, -0.5],
    ]);
    const out = bn.apply(probe, { training: false, rng }).arraySync() as number[][];
    expect(out[0]![0]).toBeCloseTo((3 - mm![0]!) / Math.sqrt(mv![0]! + 1e-5), 4);
    expect(out[1]![1]).toBeCloseTo((-0.5 - mm![1]!) / Math.sqrt(mv![1]! + 1e-5), 4);
    probe.dispose();
    bn.dispose();
  });
});
