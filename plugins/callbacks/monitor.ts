import { z } from 'zod';
import { ConfigError, type Logs } from '../../core';

/** The options of a callback that watches an epoch metric: which one, and whether lower (`min`) or higher is better. */
export const monitorOptions = {
  monitor: z.string().default('val_loss'),
  /**
   * Whether lower (`min`) or higher (`max`) is better; `auto` (the default, as in Keras) is `max` for a metric whose
   * name ends in acc, accuracy, auc, f1, precision or recall (after a `val_` prefix) and `min` for the rest (losses,
   * perplexity, error rates).
   */
  mode: z.enum(['auto', 'min', 'max']).default('auto'),
};

/** The direction `auto` takes for a monitored metric's name (Keras's rule, with loom's metric names). */
export function autoMode(key: string): 'min' | 'max' {
  return /(^|_)(acc|accuracy|auc|f1|precision|recall)$/.test(key.replace(/^val_/, '')) ? 'max' : 'min';
}

/** A monitored value's best so far as callbacks save it: JSON has no infinities, so "none yet" is null. */
export type MonitorState = { best: number | null; wait: number };

/**
 * The best value so far of a monitored epoch metric and the epochs since it last improved (`wait`): what early
 * stopping, reduce-on-plateau and model checkpoints decide by (Keras's `monitor`, `mode`, `min_delta`). A value
 * improves when it beats the best by more than `minDelta` (lower is better in `min` mode, higher in `max`).
 */
export class Monitor {
  best: number;
  wait = 0;
  readonly mode: 'min' | 'max';

  constructor(
    /** The callback's name, for the error that names its `monitor` option. */
    private readonly owner: string,
    readonly key: string,
    mode: 'auto' | 'min' | 'max',
    private readonly minDelta = 0,
  ) {
    this.mode = mode === 'auto' ? autoMode(key) : mode;
    this.best = this.none();
  }

  /** The monitored metric in an epoch's logs; a missing one is the user's mistake, named by field. */
  read(logs: Logs): number {
    const v = logs[this.key];
    if (v === undefined) throw new ConfigError(`${this.owner}.monitor`, `no epoch metric "${this.key}"; have ${Object.keys(logs).join(', ')}`);
    return v;
  }

  /** Records `v`: when it improves, it becomes the best and `wait` restarts at 0; otherwise `wait` grows by one. */
  update(v: number): boolean {
    const improved = this.mode === 'min' ? v < this.best - this.minDelta : v > this.best + this.minDelta;
    if (improved) {
      this.best = v;
      this.wait = 0;
    } else this.wait++;
    return improved;
  }

  /** Forgets the best and the wait (a new training). */
  reset(): void {
    this.best = this.none();
    this.wait = 0;
  }

  getState(): MonitorState {
    return { best: Number.isFinite(this.best) ? this.best : null, wait: this.wait };
  }

  /** Restores a saved state; a `wait` left out (model-checkpoint saves none) restarts at 0. */
  setState(s: { best: number | null; wait?: number }): void {
    this.best = s.best ?? this.none();
    this.wait = s.wait ?? 0;
  }

  private none(): number {
    return this.mode === 'min' ? Infinity : -Infinity;
  }
}
