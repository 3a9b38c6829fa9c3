/** BERT: the 15 % / 80-10-10 masking distribution, padding invariance, and pretrained weights loading by name. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectModel, readWeights, Rng, writeWeights, type PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';
import { Bert, maskTokens } from './bert';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const V = 50;
function bert(head: 'mlm' | 'classifier', seed: number): Bert {
  const m = expectModel(registry.create('model', { type: 'bert', vocabSize: V, maxLength: 12, dModel: 8, numHeads: 2, layers: 2, dropout: 0, head }), Bert);
  m.build([null, null], new Rng(seed));
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
});
