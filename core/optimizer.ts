/**
 * Shared machinery for optimizers that keep per-parameter state ("slots": Adam's m and v, momentum's velocity):
 * slots are created lazily at a parameter's first update, saved and loaded by name with shape checks, and disposed
 * together. A subclass names its slots and implements one parameter's update.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { ConfigError, ShapeError } from './errors';
import type { JsonObject, Optimizer, OptimizerState, Parameter } from './interfaces';

const roles = z.enum(['kernel', 'bias', 'norm', 'embedding', 'other']);

/**
 * Adds PyTorch-style parameter groups to an optimizer's options schema: `groups` is a list of
 * `{ match?: regex on parameter names, roles?: [...], ...any of the optimizer's own options }`; a parameter takes
 * the options of the first group that selects it, and the top-level options otherwise. A group's `lr` is its rate
 * before any schedule: a schedule scales every group by the same factor (as PyTorch's schedulers do).
 */
export function withParamGroups<T extends z.ZodRawShape & { lr: z.ZodType }>(schema: z.ZodObject<T>) {
  const optional = Object.fromEntries(
    Object.entries(schema.shape).map(([k, v]) => [k, (v instanceof z.ZodDefault ? (v.unwrap() as z.ZodType) : (v as z.ZodType)).optional()]),
  ) as unknown as { [K in keyof T]: z.ZodOptional<T[K] extends z.ZodDefault<infer I extends z.ZodType> ? I : T[K]> };
  const group = z
    .object({
      /** Regular expression tested against parameter names (`dense_1/kernel`). */
      match: z.string().optional(),
      /** Parameter roles this group selects (kernel, bias, norm, embedding, other). */
      roles: z.array(roles).optional(),
      ...optional,
    })
    .strict()
    .refine((g) => (g as GroupSelector).match !== undefined || (g as GroupSelector).roles !== undefined, {
      message: 'a parameter group selects by "match" (a regular expression on names) or "roles"',
    })
    .refine((g) => (g as GroupSelector).match === undefined || isRegex((g as GroupSelector).match!), {
      message: 'invalid regular expression in "match"',
      path: ['match'],
    });
  return schema.extend({ groups: z.array(group).default([]) });
}

function isRegex(s: string): boolean {
  try {
    new RegExp(s);
    return true;
  } catch {
    return false;
  }
}

interface GroupSelector {
  match?: string;
  roles?: string[];
}

/** One parameter's update in a step: its gradient, its slots, and the rate and options that apply to it. */
export interface SlotUpdate<O> {
  p: Parameter;
  g: tf.Tensor;
  slots: Record<string, tf.Variable>;
  lr: number;
  options: O;
}

export abstract class SlotOptimizer<O extends { lr: number; groups?: GroupSelector[] } = { lr: number }> implements Omit<Optimizer, 'spec'> {
  learningRate: number;
  /** Number of steps taken (t in the papers' notation, 1 on the first update). */
  protected t = 0;
  private readonly slots = new Map<string, Record<string, tf.Variable>>();
  private readonly resolved = new Map<string, O>();

  constructor(
    /** Top-level options, possibly with parameter groups (see {@link withParamGroups}). */
    protected readonly options: O,
    /** Hyper-parameters saved with the state (besides the learning rate). */
    private readonly hyper: JsonObject,
  ) {
    this.learningRate = options.lr;
  }

  /** The options that apply to `p`: those of the first group selecting it, else the top-level ones. */
  protected optionsFor(p: Parameter): O {
    let o = this.resolved.get(p.name);
    if (!o) {
      const g = (this.options.groups ?? []).find(
        (g) => (g.match === undefined || new RegExp(g.match).test(p.name)) && (g.roles === undefined || g.roles.includes(p.role)),
      );
      const { match: _m, roles: _r, ...own } = (g ?? {}) as GroupSelector & Record<string, unknown>;
      o = { ...this.options, ...Object.fromEntries(Object.entries(own).filter(([, v]) => v !== undefined)) } as O;
      this.resolved.set(p.name, o);
    }
    return o;
  }

  /** Names of the per-parameter state tensors, each initialised to zeros of the parameter's shape. */
  protected abstract readonly slotNames: readonly string[];

  /**
   * One parameter's update at step `this.t`: assign the new value to `p.variable` and the new slot values to
   * `slots[name]`. Runs inside tf.tidy.
   */
  protected abstract update(p: Parameter, g: tf.Tensor, slots: Record<string, tf.Variable>, lr: number, options: O): void;

  /**
   * Every parameter's update at step `this.t` at once, where the subclass and the backend can (a multi-tensor fused
   * kernel: Adam on webgpu); false to update them one at a time with `update`. Nothing is done before it returns
   * false.
   */
  protected updateAll(_updates: readonly SlotUpdate<O>[]): boolean {
    return false;
  }

  step(params: readonly Parameter[], grads: Record<string, tf.Tensor>): void {
    this.t++;
    const updates: SlotUpdate<O>[] = [];
    for (const p of params) {
      const g = grads[p.name];
      if (!g) continue;
      const o = this.optionsFor(p);
      // A group's own rate, scaled by whatever factor the schedule applies to the top-level rate.
      const lr = o.lr === this.options.lr ? this.learningRate : (o.lr * this.learningRate) / this.options.lr;
      updates.push({ p, g, slots: this.slotsOf(p), lr, options: o });
    }
    if (this.updateAll(updates)) return;
    for (const { p, g, slots, lr, options } of updates) tf.tidy(() => this.update(p, g, slots, lr, options));
  }

  private slotsOf(p: Parameter): Record<string, tf.Variable> {
    let s = this.slots.get(p.name);
    if (!s) {
      s = Object.fromEntries(this.slotNames.map((n) => [n, tf.tidy(() => tf.variable(tf.zerosLike(p.variable), false))])); // see setState
      this.slots.set(p.name, s);
    }
    return s;
  }

  getState(): OptimizerState {
    const slots: OptimizerState['slots'] = {};
    for (const [name, s] of this.slots) {
      slots[name] = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, { shape: v.shape, values: v.dataSync() as Float32Array }]));
    }
    return { step: this.t, hyper: { ...this.hyper, lr: this.learningRate }, slots };
  }

  setState(state: OptimizerState, params: readonly Parameter[]): void {
    const byName = new Map(params.map((p) => [p.name, p]));
    for (const [name, slot] of Object.entries(state.slots)) {
      const p = byName.get(name);
      if (!p) throw new ConfigError('optimizer state', `slots for unknown parameter "${name}" (parameters: ${[...byName.keys()].join(', ')})`);
      const saved = Object.keys(slot);
      const missing = this.slotNames.filter((k) => !saved.includes(k));
      const foreign = saved.filter((k) => !this.slotNames.includes(k));
      if (missing.length || foreign.length) {
        throw new ConfigError(
          'optimizer state',
          `parameter "${name}" has the slots ${saved.length ? saved.join(', ') : 'none'} where this optimizer keeps ${this.slotNames.length ? this.slotNames.join(', ') : 'none'}: was it saved by another optimizer or configuration (e.g. momentum)?`,
        );
      }
      for (const k of this.slotNames) {
        const sh = slot[k]?.shape;
        if (!sh || sh.join() !== p.variable.shape.join()) throw new ShapeError(`optimizer state "${name}.${k}"`, `[${p.variable.shape}]`, sh ?? []);
      }
    }
    this.dispose();
    for (const [name, slot] of Object.entries(state.slots)) {
      // tf.variable keeps its initial value as a tensor of its own: dispose it (one leaked tensor per slot otherwise).
      this.slots.set(name, Object.fromEntries(this.slotNames.map((k) => [k, tf.tidy(() => tf.variable(tf.tensor(slot[k]!.values, slot[k]!.shape), false))])));
    }
    this.t = state.step;
    this.learningRate = Number(state.hyper.lr ?? this.learningRate);
  }

  dispose(): void {
    for (const s of this.slots.values()) tf.dispose(Object.values(s));
    this.slots.clear();
  }
}

/**
 * The step a decaying schedule ends at: its configured `totalSteps`, else the length of the run the trainer
 * reported; a clear error when neither is known or the end falls inside the warm-up.
 */
export function decayEnd(name: string, configured: number | undefined, planned: number | undefined, warmupSteps: number): number {
  const total = configured ?? planned;
  if (total === undefined)
    throw new ConfigError('schedule.totalSteps', `${name}: totalSteps is not set and the trainer did not say how many steps the run takes; set totalSteps`);
  if (total <= warmupSteps)
    throw new ConfigError(
      'schedule.totalSteps',
      `${name}: the run takes ${total} steps, no more than warmupSteps = ${warmupSteps}; shorten the warm-up or train longer`,
    );
  return total;
}
