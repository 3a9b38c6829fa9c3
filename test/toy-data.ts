/**
 * A tiny synthetic data set for tests, written as a user would write a data plugin: three Gaussian blobs in 2-D
 * (or images of a given size whose mean brightness encodes the class). Deterministic from its seed.
 */
import { z } from 'zod';
import { definePlugin, Rng, TensorDataset } from '../core';

export default definePlugin({
  kind: 'dataset',
  name: 'toy-blobs',
  description: 'test data: k Gaussian blobs, as vectors or as constant-brightness images',
  schema: z.object({
    size: z.number().int().positive().default(96),
    classes: z.number().int().min(2).default(3),
    imageSize: z.number().int().positive().optional(),
    seed: z.number().int().default(0),
  }),
  create: ({ size, classes, imageSize, seed }) => ({
    splits: ['train', 'test'],
    load(split: string) {
      const rng = new Rng(seed + (split === 'test' ? 1 : 0));
      const xShape = imageSize ? [imageSize, imageSize, 1] : [2];
      const per = xShape.reduce((a, b) => a * b, 1);
      const x = new Float32Array(size * per);
      const y = new Int32Array(size);
      for (let i = 0; i < size; i++) {
        const c = i % classes;
        y[i] = c;
        const angle = (2 * Math.PI * c) / classes;
        for (let j = 0; j < per; j++) {
          x[i * per + j] = imageSize ? c / classes + 0.1 * rng.normal() : (j === 0 ? Math.cos(angle) : Math.sin(angle)) * 2 + 0.3 * rng.normal();
        }
      }
      return new TensorDataset(`toy-blobs:${split}`, x, xShape, y, []);
    },
  }),
});

/** A complete experiment config on toy data, small enough to train in a second. */
export function toyConfig(root: string, overrides: Record<string, unknown> = {}) {
  return {
    experiment: 'toy',
    seed: 7,
    data: { source: { type: 'toy-blobs', size: 96 } },
    model: {
      inputShape: [2],
      layers: [
        { type: 'dense', units: 16, activation: 'relu' },
        { type: 'dense', units: 3 },
      ],
    },
    loss: 'sparse-categorical-crossentropy',
    optimizer: { type: 'adam', lr: 0.05 },
    metrics: ['accuracy'],
    trackers: [{ type: 'mlflow-file', root }],
    trainer: { epochs: 3, batchSize: 16, validationSplit: 0.25, logEvery: 2 },
    ...overrides,
  };
}
