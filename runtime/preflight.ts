/**
 * A run's dry step: before a run is tracked, the model and the loss run once on the first two training examples,
 * so a config whose parts do not fit together (a `model.inputShape` that is not the data's, a loss that does not
 * take the model's output) is rejected before anything is written, rather than at the first step with a FAILED run
 * left in the store. Costs one forward pass on two examples; draws from no random stream of the run and leaves no
 * state behind (recurrent state is reset), so results are the same with or without it.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError } from '../core/errors';
import type { Dataset, Loss, Model } from '../core/interfaces';
import { Rng } from '../core/random';

/**
 * The model's input shape must be the shape of the training examples: checked before the model is built. A
 * Sequential declares it (`model.inputShape`); a registered model derives it from its options (GPT's context).
 */
export function checkInputShape(model: Model, train: Dataset): void {
  const declared = model.inputShape.slice(1);
  if (declared.length !== train.xShape.length || declared.some((d, i) => d !== train.xShape[i])) {
    const [field, what] = model.spec.type === 'sequential' ? ['model.inputShape', 'is'] : ['model', `"${model.spec.type}" takes examples of shape`];
    const got = `the examples of the training set "${train.name}" have shape [${train.xShape.join(', ')}]`;
    throw new ConfigError(field, `${what} [${declared.join(', ')}], but ${got}`);
  }
}

/** The dry step (see the file comment): the model and the loss on the first two training examples. */
export function preflight(model: Model, train: Dataset, loss: Loss): void {
  if (train.size === 0) return; // the data check names the empty set
  const { x, y } = train.batch(Int32Array.from({ length: Math.min(2, train.size) }, (_, i) => i));
  try {
    tf.tidy(() => {
      loss.compute(y, model.apply(x, { training: false, rng: new Rng(0) }), x);
    });
  } finally {
    x.dispose();
    y.dispose();
    model.resetStates();
  }
}
