import { z } from 'zod';
import { definePlugin } from '../../core';
import { inverseAffine, resample } from './affine';

/**
 * Pads each image by `padding` pixels (with `fill`) and crops a random window of the original size (Krizhevsky et
 * al. 2012, §4.1; the standard CIFAR recipe): an integer shift in [−padding, padding]², with no interpolation.
 */
export default definePlugin({
  kind: 'augmentation',
  name: 'random-crop',
  description: 'pad by `padding` pixels and crop a random window of the original size (Krizhevsky et al. 2012)',
  schema: z.object({ padding: z.number().int().min(0).default(4), fill: z.number().default(0) }),
  properties: ['the output is an exact integer shift of the input, zero-filled', 'seeded, shape- and dtype-preserving'],
  create: ({ padding, fill }) => ({
    apply: (x, rng) =>
      resample(x, rng, 'random-crop', (r, h, w) => inverseAffine(h, w, { dx: r.int(2 * padding + 1) - padding, dy: r.int(2 * padding + 1) - padding }), {
        interpolation: 'nearest',
        fillMode: 'constant',
        fill,
      }),
  }),
});
