import { z } from 'zod';
import { ConfigError, definePlugin, type Callback, type Logs, type TrainingState } from '../../core';

/**
 * Multiplies the learning rate by `factor` when a monitored epoch metric has not improved for `patience` epochs,
 * down to `minLr` (Keras's ReduceLROnPlateau). Meant for runs without a step schedule, which would override it.
 */
export default definePlugin({
  kind: 'callback',
  name: 'reduce-on-plateau',
  description: 'lr *= factor after `patience` epochs without improvement',
  schema: z.object({
    monitor: z.string().default('val_loss'),
    mode: z.enum(['min', 'max']).default('min'),
    factor: z.number().positive().lt(1).default(0.1),
    patience: z.number().int().min(0).default(2),
    minLr: z.number().min(0).default(0),
  }),
  properties: ['multiplies the learning rate by factor after `patience` flat epochs, down to minLr'],
  examples: [{ options: { patience: 1, factor: 0.5 } }, { options: { monitor: 'val_accuracy', mode: 'max', patience: 0, factor: 0.5, minLr: 0.1 } }],
  create: ({ monitor, mode, factor, patience, minLr }): Omit<Callback, 'spec'> => {
    let best = mode === 'min' ? Infinity : -Infinity;
    let wait = 0;
    return {
      getState: () => ({ best: Number.isFinite(best) ? best : null, wait }),
      setState(s) {
        const o = s as { best: number | null; wait: number };
        best = o.best ?? (mode === 'min' ? Infinity : -Infinity);
        wait = o.wait;
      },
      onEpochEnd(state: TrainingState, logs: Logs) {
        const v = logs[monitor];
        if (v === undefined) throw new ConfigError('reduce-on-plateau.monitor', `no epoch metric "${monitor}"; have ${Object.keys(logs).join(', ')}`);
        if (mode === 'min' ? v < best : v > best) {
          best = v;
          wait = 0;
        } else if (++wait > patience) {
          state.optimizer.learningRate = Math.max(minLr, state.optimizer.learningRate * factor);
          wait = 0;
        }
      },
    };
  },
});
