/** BERT: the 15 % / 80-10-10 masking distribution, padding invariance, and pretrained weights loading by name. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectModel, readWeights, Rng, writeWeights, type PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';
import { Bert, gatherPredictions, maskTokens } from './bert';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const V = 50;
function bert(head: 'mlm' | 'classifier', seed: number, maxPredictions?: number): Bert {
  const spec = {
    type: 'bert',
    vocabSize: V,
    maxLength: 12,
    dModel: 8,
    numHeads: 2,
    layers: 2,
    dropout: 0,
    head,
    ...(maxPredictions ? { maxPredictions } : {}),
  };
  const m = expectModel(registry.create('model', spec), Bert);
  m.build([null, maxPredictions ? 12 + maxPredictions : null], new Rng(seed));
  return m;
}
const ctx = { training: false, rng: new Rng(0) };

describe('bert masking', () => {
  it('selects 15 % of maskable tokens and replaces them 80 / 10 / 10, within 5 standard errors', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), (seed) => {
        const n = 60_000;
        const rng = new Rng(seed);
        const ids = Int32Array.from({ length: n }, () => rng.int(V)); // ids < 5 are special: never masked
        const vocab = 10_000; // random replacements almost never equal the original
        const { input, labels } = maskTokens(ids, new Rng(seed + 1), { vocabSize: vocab, maskId: 4, firstRandom: 5, maskable: (id) => id >= 5 });
        let maskable = 0,
          selected = 0,
          masked = 0,
          random = 0,
          kept = 0,
          violations = 0;
        for (let i = 0; i < n; i++) {
          if (ids[i]! < 5) {
            if (labels[i] !== 0 || input[i] !== ids[i]) violations++; // specials are never selected
            continue;
          }
          maskable++;
          if (labels[i] === 0) {
            if (input[i] !== ids[i]) violations++; // unselected tokens stay as they are
            continue;
          }
          selected++;
          if (labels[i] !== ids[i]) violations++; // the label is the original token
          if (input[i] === 4) masked++;
          else if (input[i] === ids[i]) kept++;
          else random++;
        }
        expect(violations).toBe(0);
        const near = (count: number, total: number, p: number) => expect(Math.abs(count / total - p)).toBeLessThan(5 * Math.sqrt((p * (1 - p)) / total));
        near(selected, maskable, 0.15);
        near(masked, selected, 0.8);
        near(random, selected, 0.1 * (1 - 1 / (vocab - 5)));
        near(kept, selected, 0.1 + 0.1 / (vocab - 5));
      }),
      { numRuns: 5 },
    );
  });
});

describe('bert', () => {
  it('padding changes nothing at the real positions (masked-LM head)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4 }), (seed, len, pad) => {
        const m = bert('mlm', seed);
        const rng = new Rng(seed);
        const ids = Array.from({ length: len }, () => 1 + rng.int(V - 1));
        const [a, b] = [ids, [...ids, ...Array(pad).fill(0)]].map((r) =>
          tf.tidy(() => tf.slice(m.apply(tf.tensor2d([r], undefined, 'int32'), ctx), [0, 0, 0], [1, len, V])),
        );
        Array.from(a!.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(b!.dataSync()[i]!, 4));
        tf.dispose([a!, b!]);
        m.dispose();
      }),
      { numRuns: 10 },
    );
  });

  it('a classifier loads the pretrained encoder by parameter name, and then encodes exactly as the pretrained model', () => {
    const pre = bert('mlm', 1);
    const cls = bert('classifier', 2);
    const names = (m: Bert) => m.encoderParameters().map((p) => `${p.name}:${p.variable.shape}`);
    expect(names(cls)).toEqual(names(pre));
    writeWeights(cls.encoderParameters(), readWeights(pre.encoderParameters()), 'pretrained');
    for (const [i, p] of cls.encoderParameters().entries())
      expect(Array.from(p.variable.dataSync())).toEqual(Array.from(pre.encoderParameters()[i]!.variable.dataSync()));
    const y = cls.apply(tf.tensor2d([[2, 7, 9, 3, 0]], undefined, 'int32'), ctx);
    expect(y.shape).toEqual([1, 2]);
    tf.dispose(y);
    pre.dispose();
    cls.dispose();
  });

  it("the gathered masked-LM head (maxPredictions) gives the full head's logits, loss and gradients at the selected positions", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 4, max: 12 }), (seed, len) => {
        const P = 6;
        const full = bert('mlm', seed);
        const gathered = bert('mlm', seed, P); // the same weights: no parameter depends on P
        const rng = new Rng(seed + 1);
        const rows = 3;
        const ids: number[][] = [];
        const labels: number[][] = [];
        const gx: number[][] = [];
        const gy: number[][] = [];
        for (let r = 0; r < rows; r++) {
          const m = maskTokens(
            Array.from({ length: len }, () => 4 + rng.int(V - 4)),
            rng,
            { vocabSize: V, maskId: 3, firstRandom: 4, maskable: () => true, rate: 0.3 },
          );
          const original = m.input.map((v, i) => (m.labels[i] ? m.labels[i]! : v));
          const g = gatherPredictions(m.labels, P, 0, m.input);
          // No token is corrupted without being predicted: past the P gathered positions the input is the original.
          const gathered = new Set(Array.from(g.positions).filter((_, j) => g.labels[j] !== 0));
          m.input.forEach((v, i) => {
            if (!gathered.has(i)) expect(v).toBe(original[i]);
          });
          // Keep only what the gathered form can carry, so both heads see the same targets.
          const kept = new Int32Array(len);
          g.positions.forEach((pos, j) => {
            if (g.labels[j] !== 0) kept[pos] = g.labels[j]!;
          });
          ids.push(Array.from(m.input));
          labels.push(Array.from(kept));
          gx.push([...m.input, ...g.positions]);
          gy.push(Array.from(g.labels));
        }
        const loss = (logits: tf.Tensor, y: number[][]) => {
          const t = tf.tensor2d(y, undefined, 'int32');
          const w = tf.cast(tf.notEqual(t, 0), 'float32');
          const nll = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(t, V)), -1));
          return tf.div(tf.sum(tf.mul(nll, w)), tf.maximum(tf.sum(w), 1)) as tf.Scalar;
        };
        const run = (m: Bert, x: number[][], y: number[][]) =>
          tf.variableGrads(
            () => loss(m.apply(tf.tensor2d(x, undefined, 'int32'), ctx), y),
            m.parameters().map((p) => p.variable),
          );
        const a = run(full, ids, labels);
        const b = run(gathered, gx, gy);
        expect(b.value.dataSync()[0]).toBeCloseTo(a.value.dataSync()[0]!, 5);
        const names = full.parameters().map((p) => p.variable.name);
        gathered.parameters().forEach((p, i) => {
          const ga = a.grads[names[i]!]!.dataSync();
          const gb = b.grads[p.variable.name]!.dataSync();
          const scale = Math.max(1e-6, ...Array.from(ga, Math.abs));
          for (let k = 0; k < ga.length; k++) expect(Math.abs(gb[k]! - ga[k]!) / scale).toBeLessThan(1e-4);
        });
        // The logits themselves: the gathered row j of sequence r is the full head's row at position positions[j].
        const fl = tf.tidy(() => full.apply(tf.tensor2d(ids, undefined, 'int32'), ctx));
        const gl = tf.tidy(() => gathered.apply(tf.tensor2d(gx, undefined, 'int32'), ctx));
        expect(gl.shape).toEqual([rows, P, V]);
        const [fd, gd] = [fl.dataSync(), gl.dataSync()];
        for (let r = 0; r < rows; r++)
          for (let j = 0; j < P; j++) {
            const pos = gx[r]![len + j]!;
            for (let v = 0; v < V; v++) expect(gd[(r * P + j) * V + v]).toBeCloseTo(fd[(r * len + pos) * V + v]!, 4);
          }
        tf.dispose([a.value, b.value, ...Object.values(a.grads), ...Object.values(b.grads), fl, gl]);
        full.dispose();
        gathered.dispose();
      }),
      { numRuns: 5 },
    );
  });

  it('gatherPredictions lists the selected positions in order, pads with (0, ignore) and counts what it drops', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 40 }), fc.integer({ min: 1, max: 12 }), (labels, max) => {
        const g = gatherPredictions(labels, max);
        const selected = labels.flatMap((l, i) => (l !== 0 ? [i] : []));
        const n = Math.min(selected.length, max);
        expect(g.dropped).toBe(selected.length - n);
        expect(Array.from(g.positions.subarray(0, n))).toEqual(selected.slice(0, n));
        expect(Array.from(g.labels.subarray(0, n))).toEqual(selected.slice(0, n).map((i) => labels[i]));
        expect(Array.from(g.positions.subarray(n)).every((p) => p === 0)).toBe(true);
        expect(Array.from(g.labels.subarray(n)).every((l) => l === 0)).toBe(true);
      }),
    );
  });
});
