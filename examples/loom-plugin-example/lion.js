import * as tf from '@tensorflow/tfjs-core';
import { definePlugin, SlotOptimizer, withParamGroups } from 'loom';
import { z } from 'zod';

const schema = withParamGroups(
  z.object({
    lr: z.number().positive().default(1e-4),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.99),
    /** Decoupled weight decay λ (the paper's update subtracts lr·λ·θ). */
    weightDecay: z.number().min(0).default(0),
  }),
);

/**
 * Lion, EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2):
 * c = β₁ m + (1 − β₁) g;  θ ← θ − lr · (sign(c) + λ θ);  m ← β₂ m + (1 − β₂) g.
 * Every coordinate moves by ±lr (the sign), so lr is typically 3-10× smaller than AdamW's.
 */
export class Lion extends SlotOptimizer {
  slotNames = ['m'];

  constructor(opts) {
    super(opts, { beta1: opts.beta1, beta2: opts.beta2, weightDecay: opts.weightDecay });
  }

  update(p, g, s, lr, o) {
    const c = tf.add(tf.mul(s.m, o.beta1), tf.mul(g, 1 - o.beta1));
    const step = o.weightDecay > 0 ? tf.add(tf.sign(c), tf.mul(p.variable, o.weightDecay)) : tf.sign(c);
    p.variable.assign(tf.sub(p.variable, tf.mul(step, lr)));
    s.m.assign(tf.add(tf.mul(s.m, o.beta2), tf.mul(g, 1 - o.beta2)));
  }
}

export default definePlugin({
  kind: 'optimizer',
  name: 'lion',
  description: 'Lion: the sign of interpolated momentum (Chen et al. 2023, Algorithm 2)',
  schema,
  examples: [{ options: { lr: 0.05 } }],
  create: (opts) => new Lion(opts),
});
