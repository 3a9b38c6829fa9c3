import { z } from 'zod';
import { definePlugin } from '../../core';

/**
 * Epoch-wise step decay: lr · factor^{max(0, epoch − startEpoch + 1)}, `startEpoch` the first decayed epoch, as Zaremba
 * et al. (2014) train their LSTMs (medium: lr 1, ×1/1.2 per epoch after epoch 6: startEpoch 6). Epochs are 0-based;
 * the default startEpoch 1 gives lr · factor^epoch, PyTorch's ExponentialLR (the first epoch at lr).
 */
export default definePlugin({
  kind: 'schedule',
  name: 'step-decay',
  description: 'lr * factor^(epochs since startEpoch), per epoch (Zaremba et al. 2014)',
  schema: z.object({ lr: z.number().positive(), factor: z.number().positive().max(1), startEpoch: z.number().int().min(0).default(1) }),
  properties: ['follows its formula'],
  examples: [{ options: { lr: 1, factor: 0.8, startEpoch: 2 } }],
  create: ({ lr, factor, startEpoch }) => ({ rate: (_step: number, epoch: number) => lr * factor ** Math.max(0, epoch - startEpoch + 1) }),
});
