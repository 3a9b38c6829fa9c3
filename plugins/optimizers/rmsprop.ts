import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, withParamGroups, SlotOptimizer, type Parameter } from '../../core';

const schema = withParamGroups(
  z.object({
    lr: z.number().positive().default(1e-3),
    rho: z.number().min(0).lt(1).default(0.9),
    epsilon: z.number().positive().default(1e-7),
  }),
);

/** RMSprop (Tieleman & Hinton 2012, lecture 6e): s ← ρ s + (1 − ρ) g², θ ← θ − α g / (√s + ε). */
export class RMSprop extends SlotOptimizer<z.output<typeof schema>> {
  protected readonly slotNames = ['square'] as const;
  constructor(opts: z.output<typeof schema>) {
    super(opts, { rho: opts.rho, epsilon: opts.epsilon });
  }
  protected update(p: Parameter, g: tf.Tensor, s: Record<string, tf.Variable>, lr: number, o: z.output<typeof schema>): void {
    const sq = tf.add(tf.mul(s.square!, o.rho), tf.mul(tf.square(g), 1 - o.rho));
    s.square!.assign(sq);
    p.variable.assign(tf.sub(p.variable, tf.mul(tf.div(g, tf.add(tf.sqrt(sq), o.epsilon)), lr)));
  }
}

export default definePlugin({
  kind: 'optimizer',
  name: 'rmsprop',
  description: 'RMSprop: divide the gradient by a running RMS of its recent values (Tieleman & Hinton 2012)',
  schema,
  properties: [
    "follows Tieleman & Hinton's update in float32 within 1e-4 of float64",
    "parameter groups: each parameter follows the rule with its group's options",
  ],
  create: (opts) => new RMSprop(opts),
});
