/** Learning-rate schedules against their papers' formulas and shapes (peaks, monotonicity, end points). */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry, PluginSpec } from '../../core';
import { testRegistry } from '../../test/harness';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});
const rateOf = (spec: PluginSpec) => registry.create('schedule', spec).rate.bind(null);
const close = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-12 + 1e-9 * Math.abs(b));

describe('schedules', () => {
  it('noam rises linearly to d^-0.5 · warmup^-0.5 at the warm-up step and then falls as step^-0.5 (Vaswani et al. eq. 3)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 16, max: 1024 }), fc.integer({ min: 1, max: 8000 }), (d, warmup) => {
        const rate = rateOf({ type: 'noam', dModel: d, warmupSteps: warmup });
        close(rate(warmup - 1, 0), d ** -0.5 * warmup ** -0.5);
        close(rate(0, 0), d ** -0.5 * warmup ** -1.5);
        close(rate(4 * warmup - 1, 0), d ** -0.5 * (4 * warmup) ** -0.5);
        expect(rate(warmup - 1, 0)).toBeGreaterThanOrEqual(rate(warmup, 0));
        if (warmup > 1) expect(rate(warmup - 2, 0)).toBeLessThan(rate(warmup - 1, 0));
      }),
    );
  });

  it('cosine-warmup peaks at lr after warm-up, decays monotonically and ends at minLr', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 1e-5, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 1, max: 1000 }),
        fc.double({ min: 0, max: 0.5, noNaN: true }),
        (lr, warmup, rest, frac) => {
          const total = warmup + rest;
          const rate = rateOf({ type: 'cosine-warmup', lr, warmupSteps: warmup, totalSteps: total, minLr: lr * frac });
          close(rate(warmup - 1, 0), lr);
          close(rate(total, 0), lr * frac);
          close(rate(total + 10, 0), lr * frac);
          for (let s = warmup; s < total; s += Math.max(1, Math.floor(rest / 7))) expect(rate(s + 1, 0)).toBeLessThanOrEqual(rate(s, 0) + 1e-15);
        },
      ),
    );
  });

  it('linear-warmup-decay (BERT) reaches lr after warm-up and 0 at the last step', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-5, max: 1, noNaN: true }), fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 1000 }), (lr, warmup, rest) => {
        const rate = rateOf({ type: 'linear-warmup-decay', lr, warmupSteps: warmup, totalSteps: warmup + rest });
        close(rate(warmup - 1, 0), lr);
        close(rate(warmup, 0), lr);
        close(rate(warmup + rest, 0), 0);
        close(rate(warmup + Math.floor(rest / 2), 0), (lr * (rest - Math.floor(rest / 2))) / rest);
      }),
    );
  });

  it('constant, step, exponential and inverse-time decay follow their formulas', () => {
    fc.assert(
      fc.property(fc.double({ min: 1e-6, max: 10, noNaN: true }), fc.nat(), fc.nat(), (lr, s, e) => {
        expect(rateOf({ type: 'constant', lr })(s, e)).toBe(lr);
      }),
    );
    const step = rateOf({ type: 'step-decay', lr: 1, factor: 1 / 1.2, startEpoch: 6 });
    close(step(0, 5), 1);
    close(step(0, 6), 1 / 1.2);
    close(step(0, 8), 1 / 1.2 ** 3);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e5 }), fc.integer({ min: 1, max: 1000 }), (s, k) => {
        close(rateOf({ type: 'exponential-decay', lr: 0.1, rate: 0.96, decaySteps: k })(s, 0), 0.1 * 0.96 ** (s / k));
        close(rateOf({ type: 'exponential-decay', lr: 0.1, rate: 0.96, decaySteps: k, staircase: true })(s, 0), 0.1 * 0.96 ** Math.floor(s / k));
        close(rateOf({ type: 'inverse-time-decay', lr: 0.1, rate: 0.5, decaySteps: k })(s, 0), 0.1 / (1 + (0.5 * s) / k));
      }),
    );
  });

  it('cosine-warmup and linear-warmup-decay without totalSteps end with the run the trainer reports; a set totalSteps wins', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('cosine-warmup', 'linear-warmup-decay'),
        fc.integer({ min: 0, max: 50 }),
        fc.integer({ min: 1, max: 500 }),
        fc.integer({ min: 0, max: 600 }),
        (type, warmup, rest, s) => {
          const derived = rateOf({ type, lr: 0.1, warmupSteps: warmup });
          const fixed = rateOf({ type, lr: 0.1, warmupSteps: warmup, totalSteps: warmup + rest });
          close(derived(s, 0, warmup + rest), fixed(s, 0));
          close(fixed(s, 0, warmup + rest + 7), fixed(s, 0)); // the configured end is kept
        },
      ),
    );
    const open = rateOf({ type: 'linear-warmup-decay', lr: 0.1, warmupSteps: 5 });
    expect(open(2, 0)).toBeCloseTo(0.06, 12); // warm-up needs no end point
    expect(() => open(7, 0)).toThrow(/schedule\.totalSteps: linear-warmup-decay: totalSteps is not set and the trainer did not say/);
    expect(() => open(7, 0, 5)).toThrow(/the run takes 5 steps, no more than warmupSteps = 5/);
  });

  it('rejects a warm-up longer than the schedule, naming the field', () => {
    expect(() => registry.create('schedule', { type: 'cosine-warmup', lr: 1, warmupSteps: 10, totalSteps: 5 })).toThrow(/totalSteps.*must exceed warmupSteps/);
  });
});
