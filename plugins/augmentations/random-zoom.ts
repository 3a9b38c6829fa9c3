import { z } from 'zod';
import { definePlugin } from '../../core';
import { inverseAffine, resample, resampling, uniform } from './affine';

/** Scales each image about its centre by a factor drawn uniformly from [minScale, maxScale] (the seed's scaling). */
export default definePlugin({
  kind: 'augmentation',
  name: 'random-zoom',
  aliases: ['random-scale'],
  description: 'scale each image about its centre by a uniform random factor in [minScale, maxScale]',
  schema: z
    .object({ minScale: z.number().positive().default(0.9), maxScale: z.number().positive().default(1.1), ...resampling })
    .refine((o) => o.minScale <= o.maxScale, { message: 'minScale must not exceed maxScale', path: ['minScale'] }),
  properties: ['scale 1 is the identity', 'seeded, shape- and dtype-preserving'],
  create: ({ minScale, maxScale, ...opts }) => ({
    apply: (x, rng) => resample(x, rng, 'random-zoom', (r, h, w) => inverseAffine(h, w, { scale: uniform(r, minScale, maxScale) }), opts),
  }),
});
