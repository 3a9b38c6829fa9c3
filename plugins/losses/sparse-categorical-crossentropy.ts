import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, FUSED_KERNELS, hasKernel, ShapeError } from '../../core';
import { logOfProbabilities } from './categorical-crossentropy';

/**
 * Softmax cross-entropy from logits z [n, K] with targets q = (1 − ε)·onehot(y) + ε/K and row weights w:
 * L = Σ_n w_n (logsumexp(z_n) − Σ_k q_nk z_nk) / Σ_n w_n, with the gradient written out, ∂L/∂z_n = w_n (softmax(z_n) − q_n) / Σ w,
 * so a language model's [tokens, vocabulary] logits take a few passes instead of a dozen (log-softmax, one-hot
 * products and their gradients).
 */
function fusedCrossEntropy(logits: tf.Tensor2D | tf.Tensor, labels: tf.Tensor, weight: tf.Tensor, eps: number): tf.Scalar {
  const [n, classes] = logits.shape as [number, number];
  if (hasKernel(FUSED_KERNELS.crossEntropy) && logits.dtype === 'float32') {
    // The backend's kernels: one pass per row each way, the softmax recomputed in the backward pass, not stored.
    const attrs = { labelSmoothing: eps };
    const k = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [z, save] = args as [tf.Tensor, tf.GradSaveFunc];
      const total = tf.maximum(tf.sum(weight), 1);
      const rows = tf.engine().runKernel(FUSED_KERNELS.crossEntropy, { logits: z, labels }, attrs) as tf.Tensor;
      save([z, total, weight, labels]); // labels and weight too: the caller's tidy disposes them before the backward pass
      return {
        value: tf.div(tf.sum(tf.mul(rows, weight)), total) as tf.Scalar,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [sz, tot, w, y] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
          const scale = tf.div(tf.mul(w, dy), tot);
          return tf.engine().runKernel(FUSED_KERNELS.crossEntropyGrad, { logits: sz, labels: y, scale }, attrs) as tf.Tensor;
        },
      };
    });
    return k(logits) as tf.Scalar;
  }
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [z, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const max = tf.max(z, 1, true);
    const shifted = tf.exp(tf.sub(z, max));
    const sum = tf.sum(shifted, 1, true);
    const lse = tf.add(tf.reshape(max, [n]), tf.log(tf.reshape(sum, [n])));
    // An ignored row may hold any label (PyTorch's −100, or K): it indexes its own column 0 (weight 0), never a
    // neighbouring row's entry, whose gradient the scatter below would otherwise change.
    const kept = tf.mul(labels, tf.cast(tf.greater(weight, 0), 'int32'));
    const flat = tf.add(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(classes, 'int32')), kept);
    const zy = tf.gather(tf.reshape(z, [-1]), flat);
    const targetDot = eps > 0 ? tf.add(tf.mul(zy, 1 - eps), tf.mul(tf.mean(z, 1), eps)) : zy;
    const total = tf.maximum(tf.sum(weight), 1);
    save([tf.div(shifted, sum), flat, total, weight]);
    return {
      value: tf.div(tf.sum(tf.mul(tf.sub(lse, targetDot), weight)), total) as tf.Scalar,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [p, idx, tot, w] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        const q = tf.reshape(tf.scatterND(tf.reshape(idx, [n, 1]), tf.fill([n], 1 - eps), [n * classes]), [n, classes]);
        const diff = eps > 0 ? tf.sub(tf.sub(p, q), eps / classes) : tf.sub(p, q);
        return tf.mul(diff, tf.reshape(tf.div(tf.mul(w, dy), tot), [n, 1]));
      },
    };
  });
  return f(logits) as tf.Scalar;
}

/**
 * Cross-entropy between integer class labels and predicted scores, averaged over the counted rows:
 * L = -(1/N) Σ_n log softmax(z_n)[y_n]. With `fromLogits` (the default) it takes raw scores and computes
 * log-softmax as z - logsumexp(z), which is stable for any magnitude of z and invariant to shifting z; without it,
 * the predictions are probabilities, normalised per row and clipped to [1e-7, 1 − 1e-7] as Keras does.
 * `labelSmoothing` ε replaces the one-hot target by (1 − ε)·onehot + ε/K (Szegedy et al. 2016, §7), so
 * L = (1 − ε)·CE + ε·mean_k(−log p_k). `ignoreIndex` drops rows whose label equals it (padding in sequences)
 * from both the sum and the count. For a sequence model every token is a row, so the loss is the per-token mean:
 * a recipe written for the loss summed over T time steps (Zaremba et al. 2014's LSTM code, lr 1 and clipping at 5)
 * takes lr × T, clipNorm / T and weightDecay / T here for the same SGD step (papers/variational-lstm: T = 35).
 */
export default definePlugin({
  kind: 'loss',
  name: 'sparse-categorical-crossentropy',
  aliases: ['sparse-ce'],
  description: '-mean(log softmax(z)[y]) for integer labels y (stable log-sum-exp form)',
  schema: z.object({
    fromLogits: z.boolean().default(true),
    labelSmoothing: z.number().min(0).lt(1).default(0),
    ignoreIndex: z.number().int().optional(),
  }),
  examples: [
    { inputShape: [4, 5], target: 'classes' },
    { options: { labelSmoothing: 0.1 }, inputShape: [2, 3, 4], target: 'classes' },
    { options: { ignoreIndex: 0 }, inputShape: [6, 3], target: 'classes' },
  ],
  properties: [
    'equals the mean of −log softmax(z)[y] computed in float64',
    'invariant to adding a constant to a row of logits; finite for huge logits',
    'label smoothing equals (1 − ε)·CE + ε·mean_k(−log p_k)',
    'ignoreIndex averages over the other rows only (masked sequences)',
  ],
  create: ({ fromLogits, labelSmoothing, ignoreIndex }) => ({
    // Labels must index the model's outputs: a label outside [0, classes) would make a zero one-hot row (or read
    // past a row in a fused kernel) and train on nothing, silently.
    checkTargets(labels, outputShape) {
      const classes = outputShape.at(-1)!;
      for (let i = 0; i < labels.length; i++) {
        const v = labels[i]!;
        if (v === ignoreIndex) continue;
        if (!(Number.isInteger(v) && v >= 0 && v < classes)) {
          return {
            index: i,
            reason: `label ${v} is outside the class range 0..${classes - 1} (the model has ${classes} outputs${ignoreIndex === undefined ? '' : `; ignoreIndex is ${ignoreIndex}`})`,
          };
        }
      }
      return null;
    },
    compute(yTrue: tf.Tensor, yPred: tf.Tensor): tf.Scalar {
      const classes = yPred.shape.at(-1)!;
      const n = yPred.size / classes;
      if (yTrue.size !== n || yPred.rank < 2) {
        throw new ShapeError('loss "sparse-categorical-crossentropy"', `labels with one entry per row of predictions [${yPred.shape}]`, yTrue.shape);
      }
      return tf.tidy(() => {
        const logits = tf.reshape(yPred, [n, classes]);
        const labels = tf.cast(tf.reshape(yTrue, [n]), 'int32');
        const weight = ignoreIndex === undefined ? tf.ones([n]) : tf.cast(tf.notEqual(labels, ignoreIndex), 'float32');
        if (fromLogits) return fusedCrossEntropy(logits, labels, weight, labelSmoothing);
        const logp = logOfProbabilities(logits);
        let target = tf.oneHot(labels, classes);
        if (labelSmoothing > 0) target = tf.add(tf.mul(target, 1 - labelSmoothing), labelSmoothing / classes);
        const perRow = tf.neg(tf.sum(tf.mul(target, logp), 1));
        return tf.div(tf.sum(tf.mul(perRow, weight)), tf.maximum(tf.sum(weight), 1)) as tf.Scalar;
      });
    },
  }),
});
