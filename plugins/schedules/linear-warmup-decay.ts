import { z } from 'zod';
import { decayEnd, definePlugin } from '../../core';

/**
 * BERT's schedule (Devlin et al. 2018, §A.2): linear warm-up to lr over `warmupSteps`, then linear decay to 0 at
 * `totalSteps`; left out, `totalSteps` is the number of steps the trainer's fit takes (epochs × steps per epoch).
 */
export default definePlugin({
  kind: 'schedule',
  name: 'linear-warmup-decay',
  description: 'linear warmup then linear decay to 0 (BERT); totalSteps defaults to the length of the run',
  schema: z
    .object({ lr: z.number().positive(), warmupSteps: z.number().int().min(0), totalSteps: z.number().int().positive().optional() })
    .refine((o) => o.totalSteps === undefined || o.totalSteps > o.warmupSteps, { message: 'totalSteps must exceed warmupSteps', path: ['totalSteps'] }),
  properties: ['reaches lr after warm-up and 0 at the last step; rejects a warm-up longer than the schedule; ends with the run when totalSteps is left out'],
  examples: [{ options: { lr: 0.1, warmupSteps: 3 } }, { options: { lr: 0.1, warmupSteps: 0, totalSteps: 100_000 } }],
  create: ({ lr, warmupSteps, totalSteps }) => ({
    rate(step: number, _epoch: number, planned?: number) {
      if (step < warmupSteps) return (lr * (step + 1)) / warmupSteps;
      const total = decayEnd('linear-warmup-decay', totalSteps, planned, warmupSteps);
      return lr * Math.max(0, (total - step) / (total - warmupSteps));
    },
  }),
});
