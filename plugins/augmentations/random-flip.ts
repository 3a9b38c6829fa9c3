import { z } from 'zod';
import { definePlugin } from '../../core';
import { resample } from './affine';

/** Mirrors each image left-right (and/or top-bottom) with probability `probability` (Krizhevsky et al. 2012, §4.1). */
export default definePlugin({
  kind: 'augmentation',
  name: 'random-flip',
  description: 'mirror each image horizontally and/or vertically with a given probability (Krizhevsky et al. 2012)',
  schema: z.object({
    horizontal: z.boolean().default(true),
    vertical: z.boolean().default(false),
    probability: z.number().min(0).max(1).default(0.5),
  }),
  properties: ['flipping twice is the identity', 'probability 1 mirrors every image exactly'],
  create: ({ horizontal, vertical, probability }) => ({
    apply: (x, rng) =>
      resample(
        x,
        rng,
        'random-flip',
        (r, h, w) => {
          const fx = horizontal && r.next() < probability;
          const fy = vertical && r.next() < probability;
          return [fx ? -1 : 1, 0, fx ? w - 1 : 0, 0, fy ? -1 : 1, fy ? h - 1 : 0];
        },
        { interpolation: 'nearest', fillMode: 'constant', fill: 0 },
      ),
  }),
});
