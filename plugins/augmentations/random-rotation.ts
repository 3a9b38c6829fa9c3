import { z } from 'zod';
import { definePlugin } from '../../core';
import { inverseAffine, resample, resampling, uniform } from './affine';

/**
 * Rotates each image about its centre by an angle drawn uniformly from [−maxDegrees, maxDegrees] (the seed's
 * rotation augmentation; Simard et al. 2003 used small rotations of MNIST digits).
 */
export default definePlugin({
  kind: 'augmentation',
  name: 'random-rotation',
  description: 'rotate each image by a uniform random angle in [-maxDegrees, maxDegrees] (Simard et al. 2003)',
  schema: z.object({ maxDegrees: z.number().min(0).max(180).default(10), ...resampling }),
  properties: ['rotation by 0 is the identity', 'rotation by 90° equals transposing and flipping the pixel grid', 'seeded, shape- and dtype-preserving'],
  create: ({ maxDegrees, ...opts }) => ({
    apply: (x, rng) =>
      resample(x, rng, 'random-rotation', (r, h, w) => inverseAffine(h, w, { angle: (uniform(r, -maxDegrees, maxDegrees) * Math.PI) / 180 }), opts),
  }),
});
