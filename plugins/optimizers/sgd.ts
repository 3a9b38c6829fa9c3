import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, FUSED_KERNELS, hasKernel, withParamGroups, SlotOptimizer, type Parameter } from '../../core';

const schema = withParamGroups(
  z.object({
    lr: z.number().positive().default(0.01),
    momentum: z.number().min(0).lt(1).default(0),
    /** Nesterov momentum in the form of Sutskever et al. (2013), eq. 3-4, as PyTorch implements it. */
    nesterov: z.boolean().default(false),
    /**
     * Weight decay λ as PyTorch's SGD applies it: g ← g + λθ before momentum, the gradient of the L2 penalty
     * (λ/2)‖θ‖² (Krogh & Hertz 1992); zero for the roles in `noDecay`.
     */
    weightDecay: z.number().min(0).default(0),
    noDecay: z.array(z.enum(['kernel', 'bias', 'norm', 'embedding', 'other'])).default(['bias', 'norm']),
  }),
).refine((o) => !o.nesterov || o.momentum > 0, {
  // It would run plain SGD without a word; PyTorch refuses it too.
  message: 'Nesterov momentum needs a momentum above 0',
  path: ['nesterov'],
});

/**
 * Stochastic gradient descent, θ ← θ − α g. With momentum μ (Polyak 1964; Sutskever et al. 2013):
 * b ← μ b + g, θ ← θ − α b; Nesterov: θ ← θ − α (g + μ b). Zaremba et al. (2014) and Gal & Ghahramani (2016)
 * train their LSTMs with plain SGD (μ = 0) and a decaying α. Where the backend has `FUSED_KERNELS.sgd` (native-cpu)
 * each parameter's step is one kernel call that rounds as the composed ops do.
 */
export class SGD extends SlotOptimizer<z.output<typeof schema>> {
  protected readonly slotNames: readonly string[];
  constructor(opts: z.output<typeof schema>) {
    super(opts, { momentum: opts.momentum, nesterov: opts.nesterov, weightDecay: opts.weightDecay });
    this.slotNames = [opts, ...opts.groups].some((g) => (g.momentum ?? 0) > 0) ? ['momentum'] : [];
  }
  protected update(p: Parameter, g: tf.Tensor, s: Record<string, tf.Variable>, lr: number, o: z.output<typeof schema>): void {
    const { momentum: mu, nesterov } = o;
    const decay = o.weightDecay > 0 && !o.noDecay.includes(p.role) ? o.weightDecay : 0;
    if (hasKernel(FUSED_KERNELS.sgd) && p.variable.dtype === 'float32' && g.dtype === 'float32') {
      // The backend's fused kernel (native-cpu): the same update, rounded alike, in one pass per tensor.
      const inputs: tf.NamedTensorMap = mu === 0 ? { param: p.variable, grad: g } : { param: p.variable, grad: g, momentum: s.momentum! };
      const attrs = { lr, decay, momentum: mu, nesterov: nesterov ? 1 : 0 };
      const [p2, b2] = tf.engine().runKernel(FUSED_KERNELS.sgd, inputs, attrs) as tf.Tensor[];
      if (b2) s.momentum!.assign(b2);
      return void p.variable.assign(p2!);
    }
    if (decay > 0) g = tf.add(g, tf.mul(p.variable, decay));
    if (mu === 0) return void p.variable.assign(tf.sub(p.variable, tf.mul(g, lr)));
    const b = tf.add(tf.mul(s.momentum!, mu), g);
    s.momentum!.assign(b);
    p.variable.assign(tf.sub(p.variable, tf.mul(nesterov ? tf.add(g, tf.mul(b, mu)) : b, lr)));
  }
}

export default definePlugin({
  kind: 'optimizer',
  name: 'sgd',
  description: 'SGD with optional (Nesterov) momentum (Polyak 1964; Sutskever et al. 2013)',
  schema,
  examples: [{ options: { lr: 0.05, momentum: 0.9, nesterov: true } }],
  properties: [
    'follows its update rule (momentum, Nesterov) in float32 within 1e-4 of float64',
    "parameter groups: each parameter follows the rule with its group's options; a schedule scales every group",
  ],
  create: (opts) => new SGD(opts),
});
