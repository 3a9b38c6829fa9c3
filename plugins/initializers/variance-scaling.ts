import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { computeFans, definePlugin, type Rng } from '../../core';

export type FanMode = 'fanIn' | 'fanOut' | 'fanAvg';
export type Distribution = 'uniform' | 'normal' | 'truncatedNormal';

/** Standard deviation of a unit normal truncated to [−2, 2], to rescale truncated draws back to unit variance. */
const TRUNCATED_STD = 0.8796256610342398;

/** One draw from N(0, 1) truncated to [−2, 2] (resampling outside, as Keras's TruncatedNormal does). */
export function truncatedNormal(rng: Rng): number {
  for (;;) {
    const z = rng.normal();
    if (Math.abs(z) <= 2) return z;
  }
}

/** Fills `shape` with `draw()`, in float32. */
export function sample(shape: number[], draw: () => number): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) v[i] = draw();
  return tf.tensor(v, shape, 'float32');
}

/**
 * Variance scaling (He et al. 2015, eq. 10 and 14; Glorot & Bengio 2010, eq. 16): zero-mean weights with
 * Var(W) = scale / n, n = fanIn, fanOut or their mean. Uniform draws use the limit √(3·scale/n); truncated
 * normals are rescaled so the variance after truncation is still scale / n.
 */
export function varianceScaling(shape: number[], rng: Rng, scale: number, mode: FanMode, distribution: Distribution): tf.Tensor {
  const { fanIn, fanOut } = computeFans(shape);
  const n = mode === 'fanIn' ? fanIn : mode === 'fanOut' ? fanOut : (fanIn + fanOut) / 2;
  const variance = scale / Math.max(1, n);
  if (distribution === 'uniform') {
    const limit = Math.sqrt(3 * variance);
    return sample(shape, () => (2 * rng.next() - 1) * limit);
  }
  const std = Math.sqrt(variance);
  return distribution === 'normal' ? sample(shape, () => rng.normal() * std) : sample(shape, () => (truncatedNormal(rng) * std) / TRUNCATED_STD);
}

export const varianceScalingOptions = z.object({
  scale: z.number().positive().default(1),
  mode: z.enum(['fanIn', 'fanOut', 'fanAvg']).default('fanIn'),
  distribution: z.enum(['uniform', 'normal', 'truncatedNormal']).default('truncatedNormal'),
});

export default definePlugin({
  kind: 'initializer',
  name: 'variance-scaling',
  description: 'zero-mean weights with variance scale/n, n = fan in, fan out or their mean (He et al. 2015)',
  schema: varianceScalingOptions,
  properties: ['the sample mean and variance match the formula within 5 standard errors'],
  create: ({ scale, mode, distribution }) => ({ init: (shape: number[], rng: Rng) => varianceScaling(shape, rng, scale, mode, distribution) }),
});
