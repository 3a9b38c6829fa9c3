import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, FUSED_KERNELS, hasKernel, ShapeError } from '../../core';

/**
 * Perplexity of a language model: exp of the mean per-token cross-entropy, exp(−(1/N) Σ_t log p(w_t | w_<t))
 * (Jelinek et al. 1977; the measure of Bengio et al. 2003, Zaremba et al. 2014, Gal & Ghahramani 2016).
 * Accumulated over every token of an evaluation (not averaged per batch), from logits; tokens equal to
 * `ignoreIndex` (padding) are not counted.
 */
export default definePlugin({
  kind: 'metric',
  name: 'perplexity',
  aliases: ['ppl'],
  description: 'exp(mean token cross-entropy) over all tokens seen (language models)',
  schema: z.object({ ignoreIndex: z.number().int().optional() }),
  properties: ['equals exp of the mean token cross-entropy over all tokens, however they are split into batches'],
  examples: [
    { inputShape: [5, 3, 6], target: 'classes' },
    { options: { ignoreIndex: 0 }, inputShape: [7, 4], target: 'classes' },
  ],
  create: ({ ignoreIndex }) => {
    let nll = 0;
    let tokens = 0;
    return {
      key: 'perplexity',
      reset() {
        nll = tokens = 0;
      },
      async update(yTrue: tf.Tensor, yPred: tf.Tensor) {
        const classes = yPred.shape.at(-1)!;
        const n = yPred.size / classes;
        if (yTrue.size !== n) throw new ShapeError('metric "perplexity"', `one token id per row of predictions [${yPred.shape}]`, yTrue.shape);
        const sums = tf.tidy(() => {
          // −log softmax(z)[y] = logsumexp(z) − z_y, without materialising log-probabilities or one-hot rows: the
          // backend's fused cross-entropy kernel where it has one (one pass per row; a language model logs this
          // every training step, and the composite below, through tfjs's own max, was ~6 % of an LSTM run's profile).
          const labels = tf.cast(tf.reshape(yTrue, [n]), 'int32');
          const z = tf.reshape(yPred, [n, classes]);
          const keep = ignoreIndex === undefined ? tf.ones([n]) : tf.cast(tf.notEqual(labels, ignoreIndex), 'float32');
          if (hasKernel(FUSED_KERNELS.crossEntropy) && z.dtype === 'float32') {
            const rows = tf.engine().runKernel(FUSED_KERNELS.crossEntropy, { logits: z, labels }, { labelSmoothing: 0 }) as tf.Tensor;
            return tf.stack([tf.sum(tf.mul(rows, keep)), tf.sum(keep)]);
          }
          const max = tf.max(z, 1);
          const lse = tf.add(max, tf.log(tf.sum(tf.exp(tf.sub(z, tf.reshape(max, [n, 1]))), 1)));
          // An ignored token may hold any id (−100, K): it reads its own row's first logit, counted with weight 0.
          const kept = tf.mul(labels, tf.cast(keep, 'int32'));
          const zy = tf.gather(tf.reshape(z, [-1]), tf.add(tf.mul(tf.range(0, n, 1, 'int32'), tf.scalar(classes, 'int32')), kept));
          return tf.stack([tf.sum(tf.mul(tf.sub(lse, zy), keep)), tf.sum(keep)]);
        });
        const [sum, count] = await sums.data().finally(() => sums.dispose()); // one asynchronous read (GPU backends)
        nll += sum!;
        tokens += count!;
      },
      result: () => (tokens === 0 ? NaN : Math.exp(nll / tokens)),
      getState: () => ({ nll, tokens }),
      setState(s) {
        ({ nll, tokens } = s as { nll: number; tokens: number });
      },
    };
  },
});
