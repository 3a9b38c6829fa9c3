import { z } from 'zod';
import { definePlugin, type Callback, type Logs, type TrainingState } from '../../core';
import { Monitor, monitorOptions, type MonitorState } from './monitor';

/**
 * Multiplies the learning rate by `factor` when a monitored epoch metric has not improved for `patience` epochs,
 * down to `minLr` (Keras's ReduceLROnPlateau). Meant for runs without a step schedule, which would override it.
 */
export default definePlugin({
  kind: 'callback',
  name: 'reduce-on-plateau',
  description: 'lr *= factor after `patience` epochs without improvement',
  schema: z.object({
    ...monitorOptions,
    factor: z.number().positive().lt(1).default(0.1),
    patience: z.number().int().min(0).default(2),
    minLr: z.number().min(0).default(0),
  }),
  properties: ['multiplies the learning rate by factor after `patience` flat epochs, down to minLr'],
  examples: [{ options: { patience: 1, factor: 0.5 } }, { options: { monitor: 'val_accuracy', mode: 'max', patience: 0, factor: 0.5, minLr: 0.1 } }],
  create: ({ monitor, mode, factor, patience, minLr }): Omit<Callback, 'spec'> => {
    const monitored = new Monitor('reduce-on-plateau', monitor, mode);
    return {
      getState: () => monitored.getState(),
      setState: (s) => monitored.setState(s as unknown as MonitorState),
      onEpochEnd(state: TrainingState, logs: Logs) {
        if (!monitored.update(monitored.read(logs)) && monitored.wait > patience) {
          state.optimizer.learningRate = Math.max(minLr, state.optimizer.learningRate * factor);
          monitored.wait = 0;
        }
      },
    };
  },
});
