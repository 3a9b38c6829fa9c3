/** The few-shot grid's parts: its cache keys, epochs for small sets, the statistics and the band test. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cacheKey, curvePoints, fewShotEpochs, FewShotResults, fewShotSchema, separated } from './few-shot';

describe('few-shot grid', () => {
  it('keys a cache by content, whatever the order of object fields', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 })), (o) => {
        const reversed = Object.fromEntries(Object.entries(o).reverse());
        expect(cacheKey(reversed)).toBe(cacheKey(o));
        expect(cacheKey({ ...o, 'another field': 1 })).not.toBe(cacheKey(o));
      }),
    );
  });

  it("gives small sets enough epochs to reach minSteps, and never fewer than the preset's", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 2, max: 5000 }),
        fc.integer({ min: 1, max: 128 }),
        fc.integer({ min: 0, max: 500 }),
        (e, n, bs, min) => {
          const epochs = fewShotEpochs(e, n, bs, min);
          const perEpoch = Math.ceil(n / bs);
          expect(epochs).toBeGreaterThanOrEqual(e);
          expect(epochs * perEpoch).toBeGreaterThanOrEqual(min);
          // The fewest such epochs: one fewer misses minSteps (unless the preset's epochs decided).
          if (epochs > e) expect((epochs - 1) * perEpoch).toBeLessThan(min);
        },
      ),
    );
  });

  it('aggregates mean and sample standard deviation per size and variant, and tests the one-σ bands', () => {
    const o = fewShotSchema.parse({ sizes: [50, 'all'], seeds: [0, 1, 2] });
    const r = Object.create(FewShotResults.prototype) as FewShotResults;
    Object.assign(r, { file: '', done: {} });
    const put = (v: 'finetune-pretrained' | 'finetune-scratch' | 'baseline-bow', size: number | 'all', accs: number[]) =>
      accs.forEach((a, s) => (r.done[FewShotResults.id(v, size, s)] = { accuracy: a, f1: a / 2, examples: size === 'all' ? 4822 : size }));
    put('finetune-pretrained', 50, [0.9, 0.92, 0.94]);
    put('finetune-scratch', 50, [0.8, 0.82, 0.84]);
    put('finetune-pretrained', 'all', [0.96, 0.97]); // a seed not finished: the mean of those that are
    put('finetune-scratch', 'all', [0.965, 0.975]);
    const points = curvePoints(o, r);
    const at = (size: number | 'all', v: string, m: string) => points.find((p) => p.size === size && p.variant === v && p.metric === m)!;
    expect(at(50, 'finetune-pretrained', 'accuracy').mean).toBeCloseTo(0.92, 12);
    expect(at(50, 'finetune-pretrained', 'accuracy').std).toBeCloseTo(0.02, 12);
    expect(at(50, 'finetune-pretrained', 'f1').mean).toBeCloseTo(0.46, 12);
    expect(at('all', 'finetune-pretrained', 'accuracy').n).toBe(2);
    expect(at('all', 'finetune-pretrained', 'accuracy').examples).toBe(4822);
    expect(points.some((p) => p.variant === 'baseline-bow')).toBe(false);
    expect(separated(points, 50, 'accuracy')).toBe(true); // 0.90 > 0.84
    expect(separated(points, 'all', 'accuracy')).toBe(false);
  });
});
