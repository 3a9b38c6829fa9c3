import { z } from 'zod';
import { definePlugin, type Rng } from '../../core';
import { sample } from './variance-scaling';

/** Gaussian N(mean, stddev²) (GPT-2/BERT initialise weights with stddev 0.02). */
export default definePlugin({
  kind: 'initializer',
  name: 'random-normal',
  aliases: ['gaussian'],
  description: 'N(mean, stddev^2)',
  schema: z.object({ mean: z.number().default(0), stddev: z.number().positive().default(0.05) }),
  properties: ['the sample mean and variance match the formula within 5 standard errors'],
  create: ({ mean, stddev }) => ({ init: (shape: number[], rng: Rng) => sample(shape, () => mean + stddev * rng.normal()) }),
});
