import { z } from 'zod';
import { definePlugin } from '../../core';

/** BERT's schedule (Devlin et al. 2018, §A.2): linear warm-up to lr over `warmupSteps`, then linear decay to 0 at `totalSteps`. */
export default definePlugin({
  kind: 'schedule',
  name: 'linear-warmup-decay',
  description: 'linear warmup then linear decay to 0 (BERT)',
  schema: z
    .object({ lr: z.number().positive(), warmupSteps: z.number().int().min(0), totalSteps: z.number().int().positive() })
    .refine((o) => o.totalSteps > o.warmupSteps, { message: 'totalSteps must exceed warmupSteps', path: ['totalSteps'] }),
  properties: ['reaches lr after warm-up and 0 at the last step; rejects a warm-up longer than the schedule'],
  create: ({ lr, warmupSteps, totalSteps }) => ({
    rate: (step: number) => (step < warmupSteps ? (lr * (step + 1)) / warmupSteps : lr * Math.max(0, (totalSteps - step) / (totalSteps - warmupSteps))),
  }),
});
