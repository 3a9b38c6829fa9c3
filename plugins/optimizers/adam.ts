import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError, definePlugin, FUSED_KERNELS, hasKernel, ShapeError, type Optimizer, type OptimizerState, type Parameter } from '../../core';

const schema = z.object({
  lr: z.number().positive().default(1e-3),
  beta1: z.number().min(0).lt(1).default(0.9),
  beta2: z.number().min(0).lt(1).default(0.999),
  epsilon: z.number().positive().default(1e-8),
});
type AdamOptions = z.output<typeof schema>;

/**
 * Adam, Kingma & Ba (2015), Algorithm 1, with bias correction:
 *   m_t = β1 m_{t-1} + (1-β1) g_t,   v_t = β2 v_{t-1} + (1-β2) g_t²,
 *   m̂_t = m_t / (1-β1^t),   v̂_t = v_t / (1-β2^t),   θ_t = θ_{t-1} - α m̂_t / (√v̂_t + ε).
 * The seed document prints this update with ε added to the moment and without the square root of v̂; that
 * formula is a misprint and is not what we implement. (Keras moves ε inside the bias correction, the
 * "ε̂" variant of the paper's §2; the difference only matters when v̂ is tiny.)
 */
export class Adam implements Omit<Optimizer, 'spec'> {
  learningRate: number;
  private t = 0;
  private readonly slots = new Map<string, { m: tf.Variable; v: tf.Variable }>();

  constructor(private readonly opts: AdamOptions) {
    this.learningRate = opts.lr;
  }

  step(params: readonly Parameter[], grads: Record<string, tf.Tensor>): void {
    this.t++;
    const { beta1: b1, beta2: b2, epsilon } = this.opts;
    const c1 = 1 - b1 ** this.t;
    const c2 = 1 - b2 ** this.t;
    const lr = this.learningRate;
    if (hasKernel(FUSED_KERNELS.adam)) {
      // The backend's fused kernel: the same update in one pass per tensor.
      for (const p of params) {
        const g = grads[p.name];
        if (!g) continue;
        const s = this.slot(p);
        const attrs = { lr, beta1: b1, beta2: b2, epsilon, c1, c2 };
        const [p2, m2, v2] = tf.engine().runKernel(FUSED_KERNELS.adam, { param: p.variable, grad: g, m: s.m, v: s.v }, attrs) as tf.Tensor[];
        p.variable.assign(p2!);
        s.m.assign(m2!);
        s.v.assign(v2!);
        tf.dispose([p2!, m2!, v2!]);
      }
      return;
    }
    tf.tidy(() => {
      for (const p of params) {
        const g = grads[p.name];
        if (!g) continue;
        const s = this.slot(p);
        const m = tf.add(tf.mul(s.m, b1), tf.mul(g, 1 - b1));
        const v = tf.add(tf.mul(s.v, b2), tf.mul(tf.square(g), 1 - b2));
        s.m.assign(m);
        s.v.assign(v);
        const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), epsilon));
        p.variable.assign(tf.sub(p.variable, tf.mul(update, lr)));
      }
    });
  }

  private slot(p: Parameter): { m: tf.Variable; v: tf.Variable } {
    let s = this.slots.get(p.name);
    if (!s) {
      s = { m: tf.variable(tf.zerosLike(p.variable), false), v: tf.variable(tf.zerosLike(p.variable), false) };
      this.slots.set(p.name, s);
    }
    return s;
  }

  stateDict(): OptimizerState {
    const slots: OptimizerState['slots'] = {};
    for (const [name, s] of this.slots) {
      slots[name] = {
        m: { shape: s.m.shape, values: s.m.dataSync() as Float32Array },
        v: { shape: s.v.shape, values: s.v.dataSync() as Float32Array },
      };
    }
    return { step: this.t, hyper: { ...this.opts, lr: this.learningRate }, slots };
  }

  loadStateDict(state: OptimizerState, params: readonly Parameter[]): void {
    const byName = new Map(params.map((p) => [p.name, p]));
    for (const name of Object.keys(state.slots)) {
      if (!byName.has(name)) throw new ConfigError('optimizer state', `slots for unknown parameter "${name}"`);
    }
    this.dispose();
    for (const [name, slot] of Object.entries(state.slots)) {
      const p = byName.get(name)!;
      for (const k of ['m', 'v'] as const) {
        const sh = slot[k]?.shape;
        if (!sh || sh.join() !== p.variable.shape.join()) throw new ShapeError(`optimizer state "${name}.${k}"`, `[${p.variable.shape}]`, sh ?? []);
      }
      this.slots.set(name, {
        m: tf.variable(tf.tensor(slot.m!.values, slot.m!.shape), false),
        v: tf.variable(tf.tensor(slot.v!.values, slot.v!.shape), false),
      });
    }
    this.t = state.step;
    this.learningRate = Number(state.hyper.lr ?? this.learningRate);
  }

  dispose(): void {
    for (const s of this.slots.values()) tf.dispose([s.m, s.v]);
    this.slots.clear();
  }
}

export default definePlugin({
  kind: 'optimizer',
  name: 'adam',
  description: 'Adam with bias correction (Kingma & Ba 2015, Algorithm 1)',
  schema,
  create: (opts) => new Adam(opts),
});
