import { z } from 'zod';
import { definePlugin, type Rng } from '../../core';
import { sample, truncatedNormal } from './variance-scaling';

/** N(mean, stddev²) with draws beyond two standard deviations redrawn (as Keras and BERT's initializer do). */
export default definePlugin({
  kind: 'initializer',
  name: 'truncated-normal',
  description: 'N(mean, stddev^2) redrawn beyond 2 stddev',
  schema: z.object({ mean: z.number().default(0), stddev: z.number().positive().default(0.05) }),
  properties: ['the sample mean and variance match the formula within 5 standard errors (variance of the normal truncated at 2σ)'],
  create: ({ mean, stddev }) => ({ init: (shape: number[], rng: Rng) => sample(shape, () => mean + stddev * truncatedNormal(rng)) }),
});
