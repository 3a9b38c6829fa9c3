import { z } from 'zod';
import { definePlugin } from '../../core';

/**
 * The Transformer's schedule (Vaswani et al. 2017, §5.3, eq. 3): lr = factor · d_model^{−0.5} ·
 * min(n^{−0.5}, n · warmup^{−1.5}), with n = step + 1 (the paper counts steps from 1).
 */
export default definePlugin({
  kind: 'schedule',
  name: 'noam',
  description: 'd_model^-0.5 * min(step^-0.5, step * warmup^-1.5) (Vaswani et al. 2017, eq. 3)',
  schema: z.object({ dModel: z.number().int().positive(), warmupSteps: z.number().int().positive().default(4000), factor: z.number().positive().default(1) }),
  properties: ['rises linearly to d^-0.5 · warmup^-0.5 at the warm-up step, then falls as step^-0.5 (Vaswani et al. 2017, eq. 3)'],
  examples: [{ options: { dModel: 16, warmupSteps: 5 } }, { options: { dModel: 512, factor: 2 } }],
  create: ({ dModel, warmupSteps, factor }) => ({
    rate(step: number) {
      const n = step + 1;
      return factor * dModel ** -0.5 * Math.min(n ** -0.5, n * warmupSteps ** -1.5);
    },
  }),
});
