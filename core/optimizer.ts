/**
 * Shared machinery for optimizers that keep per-parameter state ("slots": Adam's m and v, momentum's velocity):
 * slots are created lazily at a parameter's first update, saved and loaded by name with shape checks, and disposed
 * together. A subclass names its slots and implements one parameter's update.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ConfigError, ShapeError } from './errors';
import type { JsonObject, Optimizer, OptimizerState, Parameter } from './interfaces';

export abstract class SlotOptimizer implements Omit<Optimizer, 'spec'> {
  learningRate: number;
  /** Number of steps taken (t in the papers' notation, 1 on the first update). */
  protected t = 0;
  private readonly slots = new Map<string, Record<string, tf.Variable>>();

  constructor(
    lr: number,
    /** Hyper-parameters saved with the state (besides the learning rate). */
    private readonly hyper: JsonObject,
  ) {
    this.learningRate = lr;
  }

  /** Names of the per-parameter state tensors, each initialised to zeros of the parameter's shape. */
  protected abstract readonly slotNames: readonly string[];

  /**
   * One parameter's update at step `this.t`: assign the new value to `p.variable` and the new slot values to
   * `slots[name]`. Runs inside tf.tidy.
   */
  protected abstract update(p: Parameter, g: tf.Tensor, slots: Record<string, tf.Variable>, lr: number): void;

  step(params: readonly Parameter[], grads: Record<string, tf.Tensor>): void {
    this.t++;
    for (const p of params) {
      const g = grads[p.name];
      if (!g) continue;
      const s = this.slotsOf(p);
      tf.tidy(() => this.update(p, g, s, this.learningRate));
    }
  }

  private slotsOf(p: Parameter): Record<string, tf.Variable> {
    let s = this.slots.get(p.name);
    if (!s) {
      s = Object.fromEntries(this.slotNames.map((n) => [n, tf.variable(tf.zerosLike(p.variable), false)]));
      this.slots.set(p.name, s);
    }
    return s;
  }

  stateDict(): OptimizerState {
    const slots: OptimizerState['slots'] = {};
    for (const [name, s] of this.slots) {
      slots[name] = Object.fromEntries(Object.entries(s).map(([k, v]) => [k, { shape: v.shape, values: v.dataSync() as Float32Array }]));
    }
    return { step: this.t, hyper: { ...this.hyper, lr: this.learningRate }, slots };
  }

  loadStateDict(state: OptimizerState, params: readonly Parameter[]): void {
    const byName = new Map(params.map((p) => [p.name, p]));
    for (const [name, slot] of Object.entries(state.slots)) {
      const p = byName.get(name);
      if (!p) throw new ConfigError('optimizer state', `slots for unknown parameter "${name}" (parameters: ${[...byName.keys()].join(', ')})`);
      for (const k of this.slotNames) {
        const sh = slot[k]?.shape;
        if (!sh || sh.join() !== p.variable.shape.join()) throw new ShapeError(`optimizer state "${name}.${k}"`, `[${p.variable.shape}]`, sh ?? []);
      }
    }
    this.dispose();
    for (const [name, slot] of Object.entries(state.slots)) {
      this.slots.set(name, Object.fromEntries(this.slotNames.map((k) => [k, tf.variable(tf.tensor(slot[k]!.values, slot[k]!.shape), false)])));
    }
    this.t = state.step;
    this.learningRate = Number(state.hyper.lr ?? this.learningRate);
  }

  dispose(): void {
    for (const s of this.slots.values()) tf.dispose(Object.values(s));
    this.slots.clear();
  }
}
