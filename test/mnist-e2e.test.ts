/** The mnist-e2e row's arithmetic: samples in the recipe's first steps, and the steady rate read from a run's MLflow log. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { childEnv, samplesIn, steadyRate } from '../benchmarks/mnist-e2e';

describe('samplesIn', () => {
  it("counts each epoch's last batch of 16 (54,000 = 1,687 x 32 + 16)", () => {
    expect(samplesIn(400)).toBe(12800);
    expect(samplesIn(1688)).toBe(54000);
    expect(samplesIn(1689)).toBe(54032);
    expect(samplesIn(5 * 1688)).toBe(270000);
  });
});

describe('steadyRate', () => {
  /** A run's batch_loss log every `every` steps: `msPerStep` a step, slower before `warmup`, a pause after each epoch's end. */
  function log(opts: { steps: number; every: number; msPerStep: number; epochEnds: number[]; pause: number; warmup: number }) {
    const out: { t: number; step: number }[] = [];
    let t = 1_700_000_000_000;
    for (let s = 1; s <= opts.steps; s++) {
      t += s <= opts.warmup ? 3 * opts.msPerStep : opts.msPerStep;
      if (s % opts.every === 0) out.push({ t, step: s });
      if (opts.epochEnds.includes(s)) t += opts.pause; // validation, after step s's log
    }
    return out;
  }

  it('is the rate between logs, leaving out the warm-up and the intervals that hold an epoch end', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 0, max: 10_000 }), fc.constantFrom(10, 50), (msPerStep, pause, every) => {
        const epochEnds = [1688, 3376, 5000];
        const logs = log({ steps: 5000, every, msPerStep, epochEnds, pause, warmup: 200 });
        expect(steadyRate(logs, epochEnds, 200, 32)).toBeCloseTo((32 * 1000) / msPerStep, 6);
      }),
    );
  });

  it('counts an interval that ends on an epoch end (its validation comes after the log) and not the next one', () => {
    const logs = [
      { t: 0, step: 200 },
      { t: 1000, step: 250 },
      { t: 9000, step: 300 }, // 7 s of validation after step 250, the epoch's end
    ];
    expect(steadyRate(logs, [250], 200, 32)).toBe(1600);
  });

  it('is null when no interval is past the warm-up', () => {
    expect(
      steadyRate(
        [
          { t: 0, step: 50 },
          { t: 10, step: 100 },
        ],
        [],
        200,
      ),
    ).toBeNull();
  });
});

describe('childEnv', () => {
  it("tracks to the given store and drops the adapter probe's answer a parent's backend selection left", () => {
    const before = process.env.LOOM_WEBGPU_PEEK;
    process.env.LOOM_WEBGPU_PEEK = '{"ok":false,"reason":"none"}';
    try {
      const env = childEnv('/tmp/store');
      expect(env.MLFLOW_TRACKING_URI).toBe('file:///tmp/store/mlruns');
      expect('LOOM_WEBGPU_PEEK' in env).toBe(false);
      expect(process.env.LOOM_WEBGPU_PEEK).toBeDefined(); // this process's own is left alone
    } finally {
      if (before === undefined) delete process.env.LOOM_WEBGPU_PEEK;
      else process.env.LOOM_WEBGPU_PEEK = before;
    }
  });
});
