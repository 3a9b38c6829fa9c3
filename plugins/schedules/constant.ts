import { z } from 'zod';
import { definePlugin } from '../../core';

/** A fixed learning rate. */
export default definePlugin({
  kind: 'schedule',
  name: 'constant',
  description: 'lr at every step',
  schema: z.object({ lr: z.number().positive() }),
  examples: [{ options: { lr: 0.1 } }],
  create: ({ lr }) => ({ rate: () => lr }),
});
