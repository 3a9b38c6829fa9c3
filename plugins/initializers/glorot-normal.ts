import { z } from 'zod';
import { definePlugin, type Rng } from '../../core';
import { varianceScaling } from './variance-scaling';

/** Glorot \& Bengio (2010), eq. 16, normal form: Var(W) = 2 / (fanIn + fanOut). */
export default definePlugin({
  kind: 'initializer',
  name: 'glorot-normal',
  aliases: ['xavier-normal'],
  description: 'N(0, 2/(fanIn+fanOut)) truncated at 2 sd (Glorot & Bengio 2010)',
  schema: z.object({}),
  properties: ['the sample mean and variance match the formula within 5 standard errors'],
  create: () => ({ init: (shape: number[], rng: Rng) => varianceScaling(shape, rng, 1, 'fanAvg', 'truncatedNormal') }),
});
