import { z } from 'zod';
import { ConfigError, definePlugin, type Callback, type Logs, type TrainingState } from '../../core';

/**
 * Stops training when a monitored epoch metric has not improved by more than `minDelta` for `patience` epochs
 * (Prechelt 1998, "early stopping"; Keras's EarlyStopping).
 */
export default definePlugin({
  kind: 'callback',
  name: 'early-stopping',
  description: 'stop when a monitored metric stops improving for `patience` epochs',
  schema: z.object({
    monitor: z.string().default('val_loss'),
    mode: z.enum(['min', 'max']).default('min'),
    patience: z.number().int().min(0).default(3),
    minDelta: z.number().min(0).default(0),
  }),
  properties: ['stops after `patience` epochs without improvement, and not before; names a missing metric'],
  create: ({ monitor, mode, patience, minDelta }): Omit<Callback, 'spec'> => {
    let best = mode === 'min' ? Infinity : -Infinity;
    let wait = 0;
    return {
      getState: () => ({ best: Number.isFinite(best) ? best : null, wait }),
      setState(s) {
        const o = s as { best: number | null; wait: number };
        best = o.best ?? (mode === 'min' ? Infinity : -Infinity);
        wait = o.wait;
      },
      onTrainBegin() {
        best = mode === 'min' ? Infinity : -Infinity;
        wait = 0;
      },
      onEpochEnd(state: TrainingState, logs: Logs) {
        const v = logs[monitor];
        if (v === undefined) throw new ConfigError('early-stopping.monitor', `no epoch metric "${monitor}"; have ${Object.keys(logs).join(', ')}`);
        const improved = mode === 'min' ? v < best - minDelta : v > best + minDelta;
        if (improved) {
          best = v;
          wait = 0;
        } else if (++wait > patience) state.stopTraining = true;
      },
    };
  },
});
