import { z } from 'zod';
import { definePlugin } from '../../core';
import { inverseAffine, resample, resampling, uniform } from './affine';

/** Shifts each image by up to `maxFraction` of its height and width in each direction, filling with `fill`. */
export default definePlugin({
  kind: 'augmentation',
  name: 'random-translation',
  description: 'shift each image by a uniform random offset of up to maxFraction of its size',
  schema: z.object({ maxFraction: z.number().min(0).max(1).default(0.1), ...resampling }),
  properties: ['an integer shift moves pixels exactly and fills the uncovered border', 'seeded, shape- and dtype-preserving'],
  create: ({ maxFraction, ...opts }) => ({
    apply: (x, rng) =>
      resample(
        x,
        rng,
        'random-translation',
        (r, h, w) => inverseAffine(h, w, { dx: uniform(r, -maxFraction, maxFraction) * w, dy: uniform(r, -maxFraction, maxFraction) * h }),
        opts,
      ),
  }),
});
