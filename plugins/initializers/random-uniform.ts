import { z } from 'zod';
import { definePlugin, type Rng } from '../../core';
import { sample } from './variance-scaling';

/** Uniform on [min, max) (Zaremba et al. 2014 initialise their LSTMs with U[−0.05, 0.05] or U[−0.04, 0.04]). */
export default definePlugin({
  kind: 'initializer',
  name: 'random-uniform',
  description: 'U[min, max)',
  schema: z.object({ min: z.number().default(-0.05), max: z.number().default(0.05) }).refine((o) => o.min < o.max, { message: 'min must be below max' }),
  properties: ['the sample mean and variance match the formula within 5 standard errors'],
  create: ({ min, max }) => ({ init: (shape: number[], rng: Rng) => sample(shape, () => min + (max - min) * rng.next()) }),
});
