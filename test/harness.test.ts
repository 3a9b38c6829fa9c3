/** The checkers must be able to fail: a wrong gradient and a leak are caught. */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../core';
import { expectNoLeak, gradCheck, randomNormal, testRegistry } from './harness';

beforeAll(async () => {
  await testRegistry();
});

describe('gradCheck', () => {
  it('accepts a correct gradient and rejects a wrong one', () => {
    const rng = new Rng(1);
    const x = tf.variable(randomNormal([4, 3], rng));
    // d/dx sin(x) = cos(x); the wrong version claims 1.1·cos(x).
    const wrong = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [a, save] = args as [tf.Tensor, tf.GradSaveFunc];
      save([a]);
      return { value: tf.sin(a), gradFunc: (dy: tf.Tensor, [s]: tf.Tensor[]) => tf.mul(dy, tf.mul(tf.cos(s!), 1.1)) };
    });
    gradCheck('sin', () => tf.sin(x), [x], rng);
    expect(() => gradCheck('wrong sin', () => wrong(x) as tf.Tensor, [x], rng)).toThrow(/numeric/);
    x.dispose();
  });
});

describe('expectNoLeak', () => {
  it('catches a step that keeps a tensor alive', () => {
    const kept: tf.Tensor[] = [];
    expect(() => expectNoLeak(() => kept.push(tf.ones([2])))).toThrow(/live tensors/);
    tf.dispose(kept);
  });
});
