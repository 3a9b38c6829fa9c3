import { z } from 'zod';
import { definePlugin, type Rng } from '../../core';
import { varianceScaling } from './variance-scaling';

/** He et al. (2015), eq. 10: Var(W) = 2 / fanIn, for ReLU layers; uniform on [−√(6/fanIn), √(6/fanIn)]. */
export default definePlugin({
  kind: 'initializer',
  name: 'he-uniform',
  aliases: ['kaiming-uniform'],
  description: 'U[-sqrt(6/fanIn), sqrt(6/fanIn)] (He et al. 2015)',
  schema: z.object({}),
  properties: ['the sample mean and variance match the formula within 5 standard errors'],
  create: () => ({ init: (shape: number[], rng: Rng) => varianceScaling(shape, rng, 2, 'fanIn', 'uniform') }),
});
