import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, ShapeError } from '../../core';

/**
 * Fraction of examples whose highest-scoring class is the true one. Labels may be integer classes
 * (one per row of predictions) or one-hot rows of the same shape as the predictions.
 */
export default definePlugin({
  kind: 'metric',
  name: 'accuracy',
  aliases: ['acc'],
  description: 'fraction of rows where argmax(prediction) equals the label',
  properties: ['equals hits / counted rows computed on the host (ties, one-hot labels, ignoreIndex), over several batches'],
  schema: z.object({
    /** Rows whose label is this id are not counted (padding, or the unmasked positions of a masked-LM batch). */
    ignoreIndex: z.number().int().optional(),
  }),
  examples: [
    { inputShape: [9, 4], target: 'classes' },
    { options: { ignoreIndex: 1 }, inputShape: [6, 3, 4], target: 'classes' },
    { inputShape: [7, 3], target: 'same' },
  ],
  create: ({ ignoreIndex }) => {
    let correct = 0;
    let total = 0;
    return {
      key: 'accuracy',
      reset() {
        correct = total = 0;
      },
      async update(yTrue: tf.Tensor, yPred: tf.Tensor) {
        const classes = yPred.shape.at(-1)!;
        const n = yPred.size / classes;
        const oneHot = yTrue.size === yPred.size && classes > 1;
        if (!oneHot && yTrue.size !== n) throw new ShapeError('metric "accuracy"', `labels for [${yPred.shape}]`, yTrue.shape);
        const masked = ignoreIndex !== undefined && !oneHot;
        const counts = tf.tidy(() => {
          const pred = tf.argMax(tf.reshape(yPred, [n, classes]), 1);
          const truth = oneHot ? tf.argMax(tf.reshape(yTrue, [n, classes]), 1) : tf.cast(tf.reshape(yTrue, [n]), 'int32');
          const hit = tf.cast(tf.equal(pred, truth), 'int32');
          // Without a mask every row counts and only the hits are summed: this runs after every training step, and
          // the masked form's four more ops (ones, product, a second sum, stack) would be dispatched for nothing.
          if (!masked) return tf.sum(hit);
          const keep = tf.cast(tf.notEqual(truth, ignoreIndex), 'int32');
          return tf.stack([tf.sum(tf.mul(hit, keep)), tf.sum(keep)]);
        });
        // One asynchronous read (a GPU backend cannot read synchronously), after the checks above threw synchronously.
        const read = await counts.data().finally(() => counts.dispose());
        correct += read[0]!;
        total += masked ? read[1]! : n;
      },
      result: () => (total === 0 ? 0 : correct / total),
      getState: () => ({ correct, total }),
      setState(s) {
        ({ correct, total } = s as { correct: number; total: number });
      },
    };
  },
});
