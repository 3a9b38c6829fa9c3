/**
 * The spam classifier's test scores, shared by the paper's runs (binaryScores through their evaluate hook) and its
 * `--quantize` mode: accuracy, and precision, recall and F1 of the spam class (1).
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchesOf, epochOrder, Rng, type Dataset, type Model } from '../../core';

export interface SpamScores {
  accuracy: number;
  precision: number;
  recall: number;
  f1: number;
}

/**
 * Scores of `model`'s most likely class on `data`, in batches of 256, in inference mode. Predictions are read with
 * `await data()` (webgpu in Node has no synchronous read); with `predictions`, each example's class is written into it.
 */
export async function binaryScores(model: Model, data: Dataset, predictions?: Int32Array): Promise<SpamScores> {
  let [tp, fp, fn, tn] = [0, 0, 0, 0];
  let at = 0;
  for (const idx of batchesOf(epochOrder(data.size, 0, 0, false), 256)) {
    const { x, y } = data.batch(idx);
    const best = tf.tidy(() => tf.argMax(model.apply(x, { training: false, rng: new Rng(0) }), 1));
    try {
      const [pred, truth] = await Promise.all([best.data(), y.data()]);
      predictions?.set(pred, at);
      at += pred.length;
      pred.forEach((p, i) => (p === 1 ? (truth[i] === 1 ? tp++ : fp++) : truth[i] === 1 ? fn++ : tn++));
    } finally {
      tf.dispose([best, x, y]);
    }
  }
  const precision = tp / Math.max(tp + fp, 1);
  const recall = tp / Math.max(tp + fn, 1);
  return {
    accuracy: (tp + tn) / Math.max(tp + fp + fn + tn, 1),
    precision,
    recall,
    f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0,
  };
}
