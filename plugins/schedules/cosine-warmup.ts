import { z } from 'zod';
import { decayEnd, definePlugin } from '../../core';

/**
 * Linear warm-up to lr over `warmupSteps`, then cosine decay to `minLr` at `totalSteps` (Loshchilov & Hutter 2017,
 * SGDR without restarts; the GPT-3 recipe of Brown et al. 2020, §B, decays to 10 % of lr). Left out, `totalSteps` is
 * the number of steps the trainer's fit takes.
 */
export default definePlugin({
  kind: 'schedule',
  name: 'cosine-warmup',
  description: 'linear warmup, then cosine decay to minLr (Loshchilov & Hutter 2017; GPT-3)',
  schema: z
    .object({
      lr: z.number().positive(),
      warmupSteps: z.number().int().min(0),
      totalSteps: z.number().int().positive().optional(),
      minLr: z.number().min(0).default(0),
    })
    .refine((o) => o.totalSteps === undefined || o.totalSteps > o.warmupSteps, { message: 'totalSteps must exceed warmupSteps', path: ['totalSteps'] }),
  properties: ['peaks at lr after warm-up, decays monotonically and ends at minLr'],
  examples: [{ options: { lr: 0.1, warmupSteps: 3 } }, { options: { lr: 0.1, warmupSteps: 0, totalSteps: 100_000, minLr: 0.001 } }],
  create: ({ lr, warmupSteps, totalSteps, minLr }) => ({
    rate(step: number, _epoch: number, planned?: number) {
      if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
      const total = decayEnd('cosine-warmup', totalSteps, planned, warmupSteps);
      const progress = Math.min(1, (step - warmupSteps) / (total - warmupSteps));
      return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * progress));
    },
  }),
});
