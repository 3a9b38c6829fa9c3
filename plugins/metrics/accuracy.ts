import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, ShapeError } from '../../core';

/**
 * Fraction of examples whose highest-scoring class is the true one. Labels may be integer classes
 * (one per row of predictions) or one-hot rows of the same shape as the predictions (an all-zero row is padding and
 * is not counted, as in categorical-crossentropy). A single output per row is a binary classifier (Keras's
 * binary_accuracy): the prediction is class 1 where the score exceeds `threshold`, and labels are 0/1.
 */
export default definePlugin({
  kind: 'metric',
  name: 'accuracy',
  aliases: ['acc'],
  description: 'fraction of rows where argmax(prediction) equals the label (one output: score > threshold)',
  properties: ['equals hits / counted rows computed on the host (ties, one-hot labels, ignoreIndex), over several batches'],
  schema: z.object({
    /** Rows whose label is this id are not counted (padding, or the unmasked positions of a masked-LM batch). */
    ignoreIndex: z.number().int().optional(),
    /**
     * With one output per row (a binary classifier), the score above which a row is class 1: 0 for logits (what
     * loom's binary-crossentropy takes), 0.5 for probabilities (after a sigmoid).
     */
    threshold: z.number().default(0),
  }),
  examples: [
    { inputShape: [9, 4], target: 'classes' },
    { options: { ignoreIndex: 1 }, inputShape: [6, 3, 4], target: 'classes' },
    { inputShape: [7, 3], target: 'same' },
    { inputShape: [8, 1], target: 'classes' },
  ],
  create: ({ ignoreIndex, threshold }) => {
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
        // One-hot labels may hold all-zero (padding) rows: those are always left out.
        const masked = ignoreIndex !== undefined || oneHot;
        const counts = tf.tidy(() => {
          const scores = tf.reshape(yPred, [n, classes]);
          const pred = classes === 1 ? tf.cast(tf.greater(tf.reshape(scores, [n]), threshold), 'int32') : tf.argMax(scores, 1);
          const labels = oneHot ? tf.reshape(yTrue, [n, classes]) : tf.reshape(yTrue, [n]);
          const truth = oneHot ? tf.argMax(labels, 1) : classes === 1 ? tf.cast(tf.greater(labels, 0.5), 'int32') : tf.cast(labels, 'int32');
          const hit = tf.cast(tf.equal(pred, truth), 'int32');
          // Without a mask every row counts and only the hits are summed: this runs after every training step, and
          // the masked form's four more ops (ones, product, a second sum, stack) would be dispatched for nothing.
          if (!masked) return tf.sum(hit);
          let keep = oneHot ? tf.greater(tf.sum(tf.abs(labels), 1), 0) : tf.cast(tf.onesLike(hit), 'bool');
          if (ignoreIndex !== undefined) keep = tf.logicalAnd(keep, tf.notEqual(oneHot ? truth : tf.cast(labels, 'int32'), ignoreIndex));
          const k = tf.cast(keep, 'int32');
          return tf.stack([tf.sum(tf.mul(hit, k)), tf.sum(k)]);
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
