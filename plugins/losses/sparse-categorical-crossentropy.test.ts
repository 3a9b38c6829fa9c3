/** Cross-entropy from logits: equals −log softmax at the label, is invariant to shifting logits, and is stable. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Loss, PluginRegistry } from '../../core';
import { conformanceRegistry, onEachBackend, testRegistry } from '../../test/harness';

let registry: PluginRegistry;
let loss: Loss;
beforeAll(async () => {
  registry = await testRegistry();
  loss = registry.create('loss', 'sparse-categorical-crossentropy');
});

const logitsAndLabels = fc.integer({ min: 2, max: 7 }).chain((classes) =>
  fc.integer({ min: 1, max: 5 }).chain((rows) =>
    fc.record({
      classes: fc.constant(classes),
      logits: fc.array(fc.array(fc.double({ min: -20, max: 20, noNaN: true }), { minLength: classes, maxLength: classes }), {
        minLength: rows,
        maxLength: rows,
      }),
      labels: fc.array(fc.integer({ min: 0, max: classes - 1 }), { minLength: rows, maxLength: rows }),
    }),
  ),
);

const value = (labels: number[], logits: number[][]) => {
  const [y, z] = [tf.tensor(labels, [labels.length], 'int32'), tf.tensor(logits)];
  const l = loss.compute(y, z);
  const v = l.dataSync()[0]!;
  tf.dispose([y, z, l]);
  return v;
};

describe('sparse-categorical-crossentropy', () => {
  it('equals the mean of −log softmax(z)[y], computed in float64', () => {
    fc.assert(
      fc.property(logitsAndLabels, ({ logits, labels }) => {
        const ref =
          logits.reduce((s, row, i) => {
            const max = Math.max(...row);
            const lse = max + Math.log(row.reduce((a, z) => a + Math.exp(z - max), 0));
            return s + lse - row[labels[i]!]!;
          }, 0) / logits.length;
        expect(Math.abs(value(labels, logits) - ref)).toBeLessThanOrEqual(1e-5 * Math.max(1, ref));
      }),
      { numRuns: 100 },
    );
  });

  it('does not change when a constant is added to every logit of a row', () => {
    fc.assert(
      fc.property(logitsAndLabels, fc.double({ min: -50, max: 50, noNaN: true }), ({ logits, labels }, c) => {
        const shifted = logits.map((row) => row.map((z) => z + c));
        expect(Math.abs(value(labels, shifted) - value(labels, logits))).toBeLessThanOrEqual(1e-4 * Math.max(1, value(labels, logits)));
      }),
      { numRuns: 100 },
    );
  });

  it('stays finite for huge logits', () => {
    expect(
      Number.isFinite(
        value(
          [0, 1],
          [
            [1e4, -1e4],
            [1e4, -1e4],
          ],
        ),
      ),
    ).toBe(true);
    expect(
      value(
        [0, 1],
        [
          [1e4, -1e4],
          [1e4, -1e4],
        ],
      ),
    ).toBeCloseTo(1e4, -1);
  });

  it('with label smoothing ε equals (1 − ε)·CE + ε·mean_k(−log p_k) (Szegedy et al. 2016)', () => {
    fc.assert(
      fc.property(logitsAndLabels, fc.double({ min: 0.01, max: 0.5, noNaN: true }), ({ logits, labels }, eps) => {
        const smooth = registry.create('loss', { type: 'sparse-categorical-crossentropy', labelSmoothing: eps });
        const [y, z] = [tf.tensor(labels, [labels.length], 'int32'), tf.tensor(logits)];
        const l = smooth.compute(y, z);
        const got = l.dataSync()[0]!;
        tf.dispose([y, z, l]);
        const ref =
          logits.reduce((acc, row, i) => {
            const max = Math.max(...row);
            const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
            const nll = row.map((v) => lse - v);
            return acc + (1 - eps) * nll[labels[i]!]! + (eps * nll.reduce((a, b) => a + b, 0)) / row.length;
          }, 0) / logits.length;
        expect(Math.abs(got - ref)).toBeLessThanOrEqual(1e-5 * Math.max(1, ref));
      }),
      { numRuns: 100 },
    );
  });

  it('with ignoreIndex averages over the other rows only, whatever the ignored rows predict', () => {
    fc.assert(
      fc.property(logitsAndLabels, fc.double({ min: -50, max: 50, noNaN: true }), ({ logits, labels, classes }, junk) => {
        const masked = registry.create('loss', { type: 'sparse-categorical-crossentropy', ignoreIndex: -1 });
        const padded = [...logits, new Array(classes).fill(junk)];
        const [y1, z1, y2, z2] = [
          tf.tensor(labels, [labels.length], 'int32'),
          tf.tensor(logits),
          tf.tensor([...labels, -1], [labels.length + 1], 'int32'),
          tf.tensor(padded),
        ];
        const [a, b] = [loss.compute(y1, z1), masked.compute(y2, z2)];
        expect(Math.abs(b.dataSync()[0]! - a.dataSync()[0]!)).toBeLessThanOrEqual(1e-5 * Math.max(1, a.dataSync()[0]!));
        tf.dispose([y1, z1, y2, z2, a, b]);
      }),
      { numRuns: 100 },
    );
  });
});

describe('sparse-categorical-crossentropy on each CPU backend', async () => {
  const { registry: reg, backends } = await conformanceRegistry();
  // Before, tfjs's composite (the cpu backend's path) indexed an ignored row's label as i·K + label: −1 or K reached a
  // neighbouring row, whose gradient then lost 1/Σw, and −100 threw in gather.
  onEachBackend(reg, backends, 'ignored rows (ignoreIndex −1, −100 or K, first or in the middle) add nothing to the loss or its gradient', async () => {
    fc.assert(
      fc.property(
        logitsAndLabels,
        fc.constantFrom(-1, -100, 'K' as const),
        fc.boolean(),
        fc.double({ min: 0, max: 0.3, noNaN: true }),
        ({ logits, labels, classes }, ig, first, eps) => {
          const ignoreIndex = ig === 'K' ? classes : ig;
          const junk = logits.map((r) => r.map((z) => -z));
          const at = first ? 0 : Math.floor(labels.length / 2);
          // The real rows with an ignored row put in at `at`.
          const allLogits = [...logits.slice(0, at), junk[0]!, ...logits.slice(at)];
          const allLabels = [...labels.slice(0, at), ignoreIndex, ...labels.slice(at)];
          const masked = reg.create('loss', { type: 'sparse-categorical-crossentropy', ignoreIndex, labelSmoothing: eps });
          const z = tf.tensor(allLogits);
          const y = tf.tensor(allLabels, [allLabels.length], 'int32');
          const { value: l, grads } = tf.valueAndGrads((t: tf.Tensor) => masked.compute(y, t))([z]);
          const g = grads[0]!.arraySync() as number[][];
          const got = l.dataSync()[0]!;
          tf.dispose([z, y, l, ...grads]);
          // Reference in float64: L = mean over real rows of Σ_k q_k (lse − z_k), ∂L/∂z = (softmax − q) / rows.
          let ref = 0;
          const want = allLogits.map((row, i) => {
            if (i === at) return row.map(() => 0);
            const label = allLabels[i]!;
            const max = Math.max(...row);
            const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
            const q = row.map((_, k) => (k === label ? 1 - eps : 0) + eps / classes);
            ref += q.reduce((a, qk, k) => a + qk * (lse - row[k]!), 0) / labels.length;
            return row.map((v, k) => (Math.exp(v - lse) - q[k]!) / labels.length);
          });
          expect(Math.abs(got - ref)).toBeLessThanOrEqual(1e-5 * Math.max(1, ref));
          for (const [i, row] of want.entries()) for (const [k, v] of row.entries()) expect(Math.abs(g[i]![k]! - v), `∂L/∂z[${i}][${k}]`).toBeLessThan(1e-6);
        },
      ),
      { numRuns: 60 },
    );
  });
});
