/** Brown LM data: Bengio's split sizes, the rare-word rule, stream continuation across batches, determinism. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';
import { brownCorpus, bpttWindows, EOS, UNK, type BrownSource } from './brown';
import { brownParagraphs } from './text-corpus';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

const rows = (t: tf.Tensor) => t.arraySync() as number[][];

describe('brown', () => {
  it('splits 800,000 / 200,000 / the rest and merges exactly the words seen < 4 times in training', () => {
    const paras = brownParagraphs();
    const words = paras.flatMap((p) => p.flatMap((s) => [...s, EOS]));
    const src = registry.create('dataset', 'brown') as BrownSource;
    const { streams } = brownCorpus({ lowercase: false, boundary: 'sentence', minCount: 4, trainTokens: 800_000, validTokens: 200_000 });
    expect([streams.train.length, streams.valid.length, streams.test.length]).toEqual([800_000, 200_000, words.length - 1_000_000]);
    const counts = new Map<string, number>();
    for (const w of words.slice(0, 800_000)) counts.set(w, (counts.get(w) ?? 0) + 1);
    const frequent = [...counts].filter(([, c]) => c > 3).map(([w]) => w);
    expect(src.vocab[0]).toBe(UNK);
    expect(new Set(src.vocab.slice(1))).toEqual(new Set(frequent));
    // Every token maps to its own word when frequent, to <unk> otherwise, in all three splits.
    const id = new Map(src.vocab.map((w, i) => [w, i]));
    const all = [...streams.train, ...streams.valid, ...streams.test];
    for (let i = 0; i < words.length; i += 7) expect(all[i]).toBe(id.get(words[i]!) ?? 0);
    expect(src.stats.distinctTrain).toBe(counts.size);
    // Batches are [batch, unroll] int32 windows.
    const b = src.load('valid').batch([0, 1, 2]);
    expect(b.x.shape).toEqual([3, 35]);
    expect(b.y.dtype).toBe('int32');
    tf.dispose([b.x, b.y]);
  });

  it('row j of consecutive in-order batches continues stream j (stateful BPTT), covering it contiguously', () => {
    const tokens = Int32Array.from({ length: 997 }, (_, i) => i);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 12 }), (B, T) => {
        const ds = bpttWindows('t', tokens, B, T);
        const L = Math.floor(tokens.length / B);
        expect(ds.size).toBe(B * Math.floor((L - 1) / T));
        const seen: number[][] = Array.from({ length: B }, () => []);
        for (let k = 0; k * B < ds.size; k++) {
          const b = ds.batch(Array.from({ length: B }, (_, j) => k * B + j));
          const [x, y] = [rows(b.x), rows(b.y)];
          tf.dispose([b.x, b.y]);
          for (let j = 0; j < B; j++) {
            expect(y[j]!.slice(0, -1)).toEqual(x[j]!.slice(1));
            seen[j]!.push(...x[j]!);
          }
        }
        // Stream j is tokens[j·L ..): its windows tile it without gaps or overlaps.
        seen.forEach((s, j) => expect(s).toEqual(Array.from({ length: s.length }, (_, t) => j * L + t)));
      }),
      { numRuns: 40 },
    );
  });

  it('builds the same vocabulary and batches twice; maxTokens caps every split', () => {
    const spec = { type: 'brown', maxTokens: 5000, batchSize: 4, unroll: 10, lowercase: true };
    const [a, b] = [registry.create('dataset', spec) as BrownSource, registry.create('dataset', spec) as BrownSource];
    expect(a.vocab).toEqual(b.vocab);
    expect(a.vocab.every((w) => w === w.toLowerCase())).toBe(true);
    for (const split of a.splits) {
      const [da, db] = [a.load(split), b.load(split)];
      expect(da.size).toBe(4 * Math.floor((1250 - 1) / 10));
      const idx = [0, 5, da.size - 1];
      const [ba, bb] = [da.batch(idx), db.batch(idx)];
      expect(rows(ba.x)).toEqual(rows(bb.x));
      expect(Math.max(...ba.x.dataSync())).toBeLessThan(a.vocab.length);
      tf.dispose([ba.x, ba.y, bb.x, bb.y]);
    }
    expect(() => a.load('dev')).toThrow(/unknown split "dev"; available: train, valid, test/);
  });
});
