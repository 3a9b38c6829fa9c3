import { z } from 'zod';
import { definePlugin, type Callback, type Logs, type TrainingState } from '../../core';
import { Monitor, monitorOptions, type MonitorState } from './monitor';

/**
 * Multiplies the learning rate by `factor` when a monitored epoch metric has not improved (by more than `minDelta`)
 * for `patience` epochs, down to `minLr`, then waits `cooldown` epochs before counting again: Keras's
 * ReduceLROnPlateau, step for step (the count restarts after each cut). Meant for runs without a step schedule,
 * which would override it.
 */
export default definePlugin({
  kind: 'callback',
  name: 'reduce-on-plateau',
  description: 'lr *= factor after `patience` epochs without improvement (Keras ReduceLROnPlateau)',
  schema: z.object({
    ...monitorOptions,
    factor: z.number().positive().lt(1).default(0.1),
    patience: z.number().int().min(0).default(2),
    /** An improvement must beat the best by more than this (Keras's min_delta, 1e-4). */
    minDelta: z.number().min(0).default(1e-4),
    /** Epochs after a cut during which flat epochs are not counted. */
    cooldown: z.number().int().min(0).default(0),
    minLr: z.number().min(0).default(0),
  }),
  properties: ['multiplies the learning rate by factor after `patience` flat epochs, down to minLr, with a cooldown'],
  examples: [
    { options: { patience: 1, factor: 0.5 } },
    { options: { monitor: 'val_accuracy', mode: 'max', patience: 0, factor: 0.5, minLr: 0.1, cooldown: 1 } },
  ],
  create: ({ monitor, mode, factor, patience, minDelta, cooldown, minLr }): Omit<Callback, 'spec'> => {
    const monitored = new Monitor('reduce-on-plateau', monitor, mode, minDelta);
    let cooling = 0;
    return {
      getState: () => ({ ...monitored.getState(), cooldown: cooling }),
      setState: (s) => {
        monitored.setState(s as unknown as MonitorState);
        cooling = (s as { cooldown?: number }).cooldown ?? 0; // checkpoints before the cooldown option had none
      },
      onEpochEnd(state: TrainingState, logs: Logs) {
        const v = monitored.read(logs);
        if (cooling > 0) {
          cooling--;
          monitored.wait = 0;
        }
        if (monitored.update(v)) return;
        if (cooling > 0) {
          monitored.wait = 0; // a flat epoch in the cooldown is not counted
          return;
        }
        if (monitored.wait >= patience) {
          state.optimizer.learningRate = Math.max(minLr, state.optimizer.learningRate * factor);
          cooling = cooldown;
          monitored.wait = 0;
        }
      },
    };
  },
});
