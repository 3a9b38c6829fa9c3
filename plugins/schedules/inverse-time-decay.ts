import { z } from 'zod';
import { definePlugin } from '../../core';

/** lr / (1 + rate · step / decaySteps), as Keras's InverseTimeDecay. */
export default definePlugin({
  kind: 'schedule',
  name: 'inverse-time-decay',
  description: 'lr / (1 + rate * step / decaySteps)',
  schema: z.object({ lr: z.number().positive(), rate: z.number().min(0), decaySteps: z.number().int().positive() }),
  properties: ['follows its formula'],
  examples: [{ options: { lr: 0.1, rate: 0.5, decaySteps: 10 } }],
  create: ({ lr, rate, decaySteps }) => ({ rate: (step: number) => lr / (1 + (rate * step) / decaySteps) }),
});
