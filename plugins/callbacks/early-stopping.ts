import { z } from 'zod';
import { applyMasks, definePlugin, readWeights, writeWeights, type Callback, type Logs, type NamedWeights, type TrainingState } from '../../core';
import { Monitor, monitorOptions } from './monitor';

/** Weights as JSON (base64 float32 per parameter), so they travel in a checkpoint with the callback's state. */
const toJson = (w: NamedWeights) =>
  Object.fromEntries(
    [...w].map(([k, { shape, values }]) => [k, { shape, data: Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64') }]),
  );
function fromJson(j: Record<string, { shape: number[]; data: string }>): NamedWeights {
  return new Map(
    Object.entries(j).map(([k, { shape, data }]) => {
      const b = Buffer.from(data, 'base64');
      return [k, { shape, values: new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)) }];
    }),
  );
}

/**
 * Stops training when a monitored epoch metric has not improved by more than `minDelta` for `patience` epochs
 * (Prechelt 1998, "early stopping"): the `patience`-th epoch in a row without improvement is the last, as with
 * Keras's EarlyStopping and Lightning's (0 stops at the first such epoch, as 1 does). Before 2026-11-30 loom trained
 * one epoch more (it stopped when the count exceeded `patience`). With `restoreBest`, the weights of the best epoch are
 * kept (a copy in memory, and in the callback's state, so checkpoints carry them and a resumed run restores the
 * same ones) and put back when training ends, whether it stopped early or ran all its epochs: the model tested is
 * the one validation chose (Prechelt's "stop and return the best network").
 */
export default definePlugin({
  kind: 'callback',
  name: 'early-stopping',
  description: 'stop when a monitored metric stops improving for `patience` epochs',
  schema: z.object({
    ...monitorOptions,
    patience: z.number().int().min(0).default(3),
    minDelta: z.number().min(0).default(0),
    /** Put the best epoch's weights back when training ends. */
    restoreBest: z.boolean().default(false),
  }),
  properties: [
    'stops after `patience` epochs without improvement, and not before; names a missing metric',
    "restoreBest ends training with the best epoch's weights, also across a resume",
  ],
  examples: [{ options: { patience: 1 } }, { options: { monitor: 'val_accuracy', mode: 'max', patience: 2, minDelta: 0.01, restoreBest: true } }],
  create: ({ monitor, mode, patience, minDelta, restoreBest }): Omit<Callback, 'spec'> => {
    const monitored = new Monitor('early-stopping', monitor, mode, minDelta);
    let bestEpoch: number | null = null;
    let bestWeights: NamedWeights | null = null;
    return {
      getState: () => ({ ...monitored.getState(), bestEpoch, ...(restoreBest && bestWeights ? { weights: toJson(bestWeights) } : {}) }),
      setState(s) {
        const o = s as { best: number | null; wait: number; bestEpoch?: number | null; weights?: Record<string, { shape: number[]; data: string }> };
        monitored.setState(o);
        bestEpoch = o.bestEpoch ?? null;
        bestWeights = restoreBest && o.weights ? fromJson(o.weights) : null;
      },
      onTrainBegin() {
        monitored.reset();
        bestEpoch = null;
        bestWeights = null;
      },
      onTrainEnd(state: TrainingState) {
        if (restoreBest && bestWeights) {
          // Parameters and buffers (batch norm's moving statistics, as Keras's restore_best_weights); a state saved
          // before buffers were kept holds parameters only.
          const saved = bestWeights;
          const weights = state.model.weights().filter((p) => saved.has(p.name));
          writeWeights(weights, saved, `early-stopping: the best epoch's (${bestEpoch}) weights`);
          // Weights pruned since (their masks kept) stay 0: the model tested is the pruned one the masks describe.
          applyMasks(state.model.parameters());
          state.restoredEpoch = bestEpoch;
        }
      },
      onEpochEnd(state: TrainingState, logs: Logs) {
        if (monitored.update(monitored.read(logs))) {
          bestEpoch = state.epoch + 1;
          if (restoreBest) bestWeights = readWeights(state.model.weights());
        } else if (monitored.wait >= Math.max(patience, 1)) state.stopTraining = true;
      },
    };
  },
});
