/**
 * Monte-Carlo dropout evaluation (Gal & Ghahramani 2016, §4: "MC dropout"; Gal 2016, §3.3): the predictive
 * distribution is the average of T forward passes with dropout on, p(w_t | w_<t) ≈ (1/T) Σ_s softmax(f_s(x))_w,
 * and perplexity is exp of the mean −log of that average. Each sample keeps its own recurrent state across the
 * stream of windows, as a stateful language model does.
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchesOf, epochOrder, type Dataset, type Json, type Model, type Rng } from '../../core';

export function mcDropoutPerplexity(model: Model, data: Dataset, samples: number, batchSize: number, rng: Rng): number {
  const states: (Json | null)[] = Array.from({ length: samples }, () => null);
  let nll = 0;
  let tokens = 0;
  for (const idx of batchesOf(epochOrder(data.size, 0, 0, false), batchSize)) {
    const { x, y } = data.batch(idx);
    const mean = tf.tidy(() => {
      let sum: tf.Tensor | null = null;
      for (let s = 0; s < samples; s++) {
        model.resetStates();
        if (states[s]) model.setState(states[s]!);
        const p = tf.softmax(model.apply(x, { training: true, rng }));
        states[s] = model.getState();
        sum = sum ? tf.add(sum, p) : p;
      }
      const classes = sum!.shape.at(-1)!;
      const flat = tf.reshape(tf.div(sum!, samples), [-1, classes]);
      const picked = tf.sum(tf.mul(flat, tf.oneHot(tf.cast(tf.reshape(y, [-1]), 'int32'), classes)), 1);
      return tf.sum(tf.neg(tf.log(tf.maximum(picked, 1e-30))));
    });
    nll += mean.dataSync()[0]!;
    tokens += y.size;
    tf.dispose([mean, x, y]);
  }
  model.resetStates();
  return Math.exp(nll / tokens);
}
