import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { definePlugin, readToHost, saveModel, type Callback, type Logs, type TrainingState } from '../../core';
import { Monitor, monitorOptions } from './monitor';

/**
 * Saves the model at the end of epochs (Keras's ModelCheckpoint): every epoch into `<dir>/epoch-<n>` keeping the
 * last `keep`, or, with `saveBestOnly`, into `<dir>/best` whenever the monitored metric improves. Files are written
 * atomically (temporary file, fsync, rename), so a crash never leaves a half-written model. In a multi-process run
 * only rank 0 writes.
 */
export default definePlugin({
  kind: 'callback',
  name: 'model-checkpoint',
  description: 'save the model each epoch or when a monitored metric improves (atomic writes)',
  schema: z.object({
    dir: z.string().min(1).default('checkpoints'),
    ...monitorOptions,
    saveBestOnly: z.boolean().default(false),
    /** How many per-epoch checkpoints to keep (oldest deleted first). */
    keep: z.number().int().positive().default(3),
  }),
  properties: ['saveBestOnly keeps the weights of the best epoch; per-epoch mode keeps the last `keep`'],
  examples: [{ options: { keep: 2 } }, { options: { saveBestOnly: true, monitor: 'val_accuracy', mode: 'max' } }],
  create: ({ dir, monitor, mode, saveBestOnly, keep }): Omit<Callback, 'spec'> => {
    const monitored = new Monitor('model-checkpoint', monitor, mode);
    const saved: string[] = [];
    return {
      getState: () => ({ best: monitored.getState().best, saved: [...saved] }),
      setState(s) {
        const o = s as { best: number | null; saved: string[] };
        monitored.setState({ best: o.best });
        saved.splice(0, saved.length, ...o.saved);
      },
      onTrainBegin() {
        monitored.reset();
      },
      async onEpochEnd(state: TrainingState, logs: Logs) {
        if (state.isGlobalZero === false) return; // one writer: rank 0 (all ranks hold the same weights)
        if (!saveBestOnly) {
          const target = path.join(dir, `epoch-${state.epoch + 1}`);
          await readToHost(state.model); // the weights and masks on the host first where the backend reads asynchronously (webgpu)
          saveModel(state.model, target);
          saved.push(target);
          while (saved.length > keep) fs.rmSync(saved.shift()!, { recursive: true, force: true });
          return;
        }
        if (monitored.update(monitored.read(logs))) {
          await readToHost(state.model);
          saveModel(state.model, path.join(dir, 'best'));
        }
      },
    };
  },
});
