import { z } from 'zod';
import { definePlugin, type Rng } from '../../core';
import { varianceScaling } from './variance-scaling';

/** He et al. (2015), eq. 10: Var(W) = 2 / fanIn, for ReLU layers; truncated normal. */
export default definePlugin({
  kind: 'initializer',
  name: 'he-normal',
  aliases: ['kaiming-normal'],
  description: 'N(0, 2/fanIn) truncated at 2 sd (He et al. 2015)',
  schema: z.object({}),
  properties: ['the sample mean and variance match the formula within 5 standard errors'],
  create: () => ({ init: (shape: number[], rng: Rng) => varianceScaling(shape, rng, 2, 'fanIn', 'truncatedNormal') }),
});
