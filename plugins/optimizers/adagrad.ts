import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, withParamGroups, SlotOptimizer, type Parameter } from '../../core';

const schema = withParamGroups(
  z.object({
    lr: z.number().positive().default(0.01),
    initialAccumulator: z.number().min(0).default(0.1),
    epsilon: z.number().positive().default(1e-7),
  }),
);

/** Adagrad (Duchi, Hazan & Singer 2011): G ← G + g², θ ← θ − α g / (√G + ε), G starting at `initialAccumulator`. */
export class Adagrad extends SlotOptimizer<z.output<typeof schema>> {
  protected readonly slotNames = ['accumulator'] as const;
  constructor(opts: z.output<typeof schema>) {
    super(opts, { initialAccumulator: opts.initialAccumulator, epsilon: opts.epsilon });
  }
  protected update(p: Parameter, g: tf.Tensor, s: Record<string, tf.Variable>, lr: number, o: z.output<typeof schema>): void {
    // Slots start at zero; the initial accumulator is added on the fly so saved states stay comparable.
    const acc = tf.add(s.accumulator!, tf.square(g));
    s.accumulator!.assign(acc);
    const G = tf.add(acc, o.initialAccumulator);
    p.variable.assign(tf.sub(p.variable, tf.mul(tf.div(g, tf.add(tf.sqrt(G), o.epsilon)), lr)));
  }
}

export default definePlugin({
  kind: 'optimizer',
  name: 'adagrad',
  description: 'Adagrad: per-coordinate steps scaled by accumulated squared gradients (Duchi et al. 2011)',
  schema,
  examples: [{ options: { lr: 0.5 } }],
  properties: ["follows Duchi et al.'s update in float32 within 1e-4 of float64", "parameter groups: each parameter follows the rule with its group's options"],
  create: (opts) => new Adagrad(opts),
});
