import { z } from 'zod';
import { definePlugin } from '../../core';

/** lr · rate^{step / decaySteps} (staircase: the exponent floored), as Keras's ExponentialDecay. */
export default definePlugin({
  kind: 'schedule',
  name: 'exponential-decay',
  description: 'lr * rate^(step / decaySteps), optionally staircase',
  schema: z.object({
    lr: z.number().positive(),
    rate: z.number().positive().max(1),
    decaySteps: z.number().int().positive(),
    staircase: z.boolean().default(false),
  }),
  properties: ['follows its formula'],
  examples: [{ options: { lr: 0.1, rate: 0.96, decaySteps: 10 } }, { options: { lr: 0.1, rate: 0.5, decaySteps: 100, staircase: true } }],
  create: ({ lr, rate, decaySteps, staircase }) => ({ rate: (step: number) => lr * rate ** (staircase ? Math.floor(step / decaySteps) : step / decaySteps) }),
});
