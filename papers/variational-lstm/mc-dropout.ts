/**
 * Monte-Carlo dropout evaluation (Gal & Ghahramani 2016, §4: "MC dropout"; Gal 2016, §3.3): the predictive
 * distribution is the average of T forward passes with dropout on, p(w_t | w_<t) ≈ (1/T) Σ_s softmax(f_s(x))_w,
 * and perplexity is exp of the mean −log of that average. Each sample keeps its own recurrent state across the
 * stream of windows, as a stateful language model does. With `training` false (and one sample) it is the usual
 * weight-scaling perplexity of the same stream, for comparison.
 *
 * Reads are asynchronous (`await data()`, and {@link readToHost} before a sample's carried state is taken as JSON),
 * so that it runs on a backend without synchronous reads (webgpu in Node); on the cpu backends the operations, their
 * order and the random draws are those of the synchronous version, so the values are the same.
 */
import * as tf from '@tensorflow/tfjs-core';
import { batchesOf, carriedStateTensors, epochOrder, readToHost, type Dataset, type Json, type Model, type Rng } from '../../core';

export async function mcDropoutPerplexity(model: Model, data: Dataset, samples: number, batchSize: number, rng: Rng, training = true): Promise<number> {
  const states: (Json | null)[] = Array.from({ length: samples }, () => null);
  let nll = 0;
  let tokens = 0;
  for (const idx of batchesOf(epochOrder(data.size, 0, 0, false), batchSize)) {
    const { x, y } = data.batch(idx);
    let sum: tf.Tensor | null = null;
    try {
      for (let s = 0; s < samples; s++) {
        model.resetStates();
        if (states[s]) model.setState(states[s]!);
        const p = tf.tidy(() => tf.softmax(model.apply(x, { training, rng })));
        // The state the pass carries, on the host before getState reads it (a no-op where reads are synchronous).
        await readToHost(carriedStateTensors(model));
        states[s] = model.getState();
        const next: tf.Tensor = sum ? tf.add(sum, p) : p;
        if (sum) tf.dispose([sum, p]);
        sum = next;
      }
      const total = sum!;
      const mean = tf.tidy(() => {
        const classes = total.shape.at(-1)!;
        const flat = tf.reshape(tf.div(total, samples), [-1, classes]);
        const picked = tf.sum(tf.mul(flat, tf.oneHot(tf.cast(tf.reshape(y, [-1]), 'int32'), classes)), 1);
        return tf.sum(tf.neg(tf.log(tf.maximum(picked, 1e-30))));
      });
      try {
        nll += (await mean.data())[0]!;
      } finally {
        mean.dispose();
      }
      tokens += y.size;
    } finally {
      tf.dispose([x, y, ...(sum ? [sum] : [])]);
    }
  }
  model.resetStates();
  return Math.exp(nll / tokens);
}
