import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, withParamGroups, FUSED_KERNELS, hasKernel, SlotOptimizer, type Parameter, type SlotUpdate } from '../../core';

const schema = withParamGroups(
  z.object({
    lr: z.number().positive().default(1e-3),
    beta1: z.number().min(0).lt(1).default(0.9),
    beta2: z.number().min(0).lt(1).default(0.999),
    epsilon: z.number().positive().default(1e-8),
    /**
     * AdamW's decoupled weight decay λ (Loshchilov & Hutter 2019, Algorithm 2, line 12), in PyTorch's and Keras's
     * form: θ ← θ − α·λ·θ before the Adam step, α the current learning rate. The paper writes θ ← θ − η_t(α·m̂/(√v̂+ε)
     * + λθ), the decay scaled by the schedule multiplier η_t and not by α: the same update with λ_paper = α·λ here
     * at a constant rate.
     */
    weightDecay: z.number().min(0).default(0),
    /** Parameter roles exempt from weight decay (biases and normalisation scales, as BERT and GPT do). */
    noDecay: z.array(z.enum(['kernel', 'bias', 'norm', 'embedding', 'other'])).default(['bias', 'norm']),
  }),
);
type AdamOptions = z.output<typeof schema>;

/**
 * Adam, Kingma & Ba (2015), Algorithm 1, with bias correction:
 *   m_t = β1 m_{t-1} + (1-β1) g_t,   v_t = β2 v_{t-1} + (1-β2) g_t²,
 *   m̂_t = m_t / (1-β1^t),   v̂_t = v_t / (1-β2^t),   θ_t = θ_{t-1} - α m̂_t / (√v̂_t + ε).
 * The seed document prints this update with ε added to the moment and without the square root of v̂; that
 * formula is a misprint and is not what we implement. (Keras moves ε inside the bias correction, the
 * "ε̂" variant of the paper's §2; the difference only matters when v̂ is tiny.)
 * With `weightDecay` > 0 it is AdamW: the decay is applied to θ directly, not through the gradient.
 * Where the backend has `FUSED_KERNELS.adamMulti` (webgpu) a step updates every parameter in one kernel call (one GPU
 * dispatch per as many tensors as the GPU binds at once), else each parameter with `FUSED_KERNELS.adam` where the
 * backend has it (native-cpu), else with tfjs ops.
 */
export class Adam extends SlotOptimizer<z.output<typeof schema>> {
  protected readonly slotNames = ['m', 'v'] as const;

  constructor(opts: AdamOptions) {
    super(opts, { beta1: opts.beta1, beta2: opts.beta2, epsilon: opts.epsilon, weightDecay: opts.weightDecay });
  }

  private decayOf(p: Parameter, o: AdamOptions): number {
    return o.weightDecay > 0 && !o.noDecay.includes(p.role) ? o.weightDecay : 0;
  }

  /** Where the backend has `FUSED_KERNELS.adamMulti` (webgpu): every float32 parameter's step in one kernel call. */
  protected override updateAll(updates: readonly SlotUpdate<AdamOptions>[]): boolean {
    if (updates.length === 0 || !hasKernel(FUSED_KERNELS.adamMulti)) return false;
    if (updates.some(({ p, g }) => p.variable.dtype !== 'float32' || g.dtype !== 'float32')) return false;
    const inputs: Record<string, tf.Tensor> = {};
    const attrs: Record<'lr' | 'beta1' | 'beta2' | 'epsilon' | 'c1' | 'c2' | 'decay', number[]> = {
      lr: [],
      beta1: [],
      beta2: [],
      epsilon: [],
      c1: [],
      c2: [],
      decay: [],
    };
    updates.forEach(({ p, g, slots, lr, options: o }, k) => {
      Object.assign(inputs, { [`param${k}`]: p.variable, [`grad${k}`]: g, [`m${k}`]: slots.m!, [`v${k}`]: slots.v! });
      attrs.lr.push(lr);
      attrs.beta1.push(o.beta1);
      attrs.beta2.push(o.beta2);
      attrs.epsilon.push(o.epsilon);
      attrs.c1.push(1 - o.beta1 ** this.t);
      attrs.c2.push(1 - o.beta2 ** this.t);
      attrs.decay.push(1 - lr * this.decayOf(p, o));
    });
    tf.tidy(() => {
      const out = tf.engine().runKernel(FUSED_KERNELS.adamMulti, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      updates.forEach(({ p, slots }, k) => {
        p.variable.assign(out[3 * k]!);
        slots.m!.assign(out[3 * k + 1]!);
        slots.v!.assign(out[3 * k + 2]!);
      });
    });
    return true;
  }

  protected update(p: Parameter, g: tf.Tensor, s: Record<string, tf.Variable>, lr: number, o: z.output<typeof schema>): void {
    const { beta1: b1, beta2: b2, epsilon } = o;
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    const decay = this.decayOf(p, o);
    const theta = decay > 0 ? tf.mul(p.variable, 1 - lr * decay) : p.variable;
    if (hasKernel(FUSED_KERNELS.adam)) {
      // The backend's fused kernel: the same update in one pass per tensor.
      const attrs = { lr, beta1: b1, beta2: b2, epsilon, c1, c2 };
      const [p2, m2, v2] = tf.engine().runKernel(FUSED_KERNELS.adam, { param: theta, grad: g, m: s.m!, v: s.v! }, attrs) as tf.Tensor[];
      p.variable.assign(p2!);
      s.m!.assign(m2!);
      s.v!.assign(v2!);
      return;
    }
    const m = tf.add(tf.mul(s.m!, b1), tf.mul(g, 1 - b1));
    const v = tf.add(tf.mul(s.v!, b2), tf.mul(tf.square(g), 1 - b2));
    s.m!.assign(m);
    s.v!.assign(v);
    p.variable.assign(tf.sub(theta, tf.mul(tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), epsilon)), lr)));
  }
}

export default definePlugin({
  kind: 'optimizer',
  name: 'adam',
  aliases: ['adamw'],
  description: 'Adam with bias correction (Kingma & Ba 2015, Algorithm 1); decoupled weight decay = AdamW (Loshchilov & Hutter 2019)',
  schema,
  properties: [
    'follows Kingma & Ba (2015) Algorithm 1 in float32 within 1e-4 of float64',
    'bias correction: the first step moves each weight by about lr',
    'AdamW: Loshchilov & Hutter (2019) Algorithm 2, no decay for biases and norms',
    "parameter groups: each parameter follows the rule with its group's options",
  ],
  create: (opts) => new Adam(opts),
});
