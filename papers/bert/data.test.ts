/** The bag-of-words baseline's vectors: fixed length, binary, one column per vocabulary word. */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TensorDataset } from '../../core/data';
import type { PluginRegistry } from '../../core/registry';
import { testRegistry } from '../../test/harness';
import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CORPORA, corpusTexts } from '../../plugins/data/text-corpus';
import { gatherPredictions } from '../../plugins/models/bert';
import { WordPiece } from '../../plugins/tokenizers/wordpiece';
import { spamAssassinTexts, spamTextSchema } from '../../plugins/data/spam-assassin';
import { bowData, mlmData, words } from './data';

/** All of a split's vectors, through the public batch(). */
const vectors = (d: TensorDataset) => tf.tidy(() => d.batch(Array.from({ length: d.size }, (_, i) => i)).x.dataSync() as Float32Array);

let registry: PluginRegistry;
beforeAll(async () => {
  registry = (await testRegistry()).register(bowData).register(mlmData);
});

const build = (options: object) => registry.create('dataset', { type: 'spam-bow', ...options });

describe('spam-bow', () => {
  it('has `features` columns whatever the training subset, so the few-shot grid keeps one input shape', () => {
    fc.assert(
      fc.property(fc.integer({ min: 4, max: 40 }), fc.integer({ min: 0, max: 1000 }), (size, seed) => {
        const features = 5000; // far more distinct words than a few messages hold
        const data = build({ features, trainSubset: { size, seed } });
        for (const split of ['train', 'test']) {
          const d = data.load(split) as TensorDataset;
          expect(d.xShape).toEqual([features]);
          const x = vectors(d);
          expect(x.length).toBe(d.size * features);
          expect(x.every((v) => v === 0 || v === 1)).toBe(true);
        }
        // Only the subset's words have columns, each used by some training message: exactly the first
        // min(features, distinct words of the subset) columns are ever 1 in the training vectors.
        const x = vectors(data.load('train') as TensorDataset);
        let last = -1;
        for (let i = 0; i < x.length; i++) if (x[i] === 1) last = Math.max(last, i % features);
        const distinct = new Set(spamAssassinTexts('train', spamTextSchema.parse({ trainSubset: { size, seed } })).texts.flatMap(words)).size;
        expect(last).toBe(Math.min(features, distinct) - 1);
      }),
      { numRuns: 3 },
    );
  });
});

describe('bert-mlm', () => {
  // One small WordPiece vocabulary for the dataset's tests, in a scratch folder.
  let dir = '';
  let tokenizer = '';
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-mlm-'));
    tokenizer = path.join(dir, 'wp.json');
    const text = corpusTexts(CORPORA).join('\n\n').slice(0, 200_000);
    fs.writeFileSync(tokenizer, JSON.stringify(WordPiece.train([text], { vocabSize: 600 }).getState()));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("the gathered form (maxPredictions) holds the full form's corrupted ids at its positions, the original tokens past the cap, and the full form's labels", () => {
    const seqLen = 32;
    const P = 6; // above the 4.5 selections expected of 30 tokens, below the count of some sequences: the cap is exercised
    const make = (extra: object) =>
      (registry.create('dataset', { type: 'bert-mlm', tokenizer, seqLen, maxChars: 20_000, ...extra }) as unknown as { load(s: string): TensorDataset }).load(
        'train',
      );
    const full = make({});
    const gathered = make({ maxPredictions: P });
    expect(gathered.size).toBe(full.size);
    expect(gathered.xShape).toEqual([seqLen + P]);
    expect(gathered.yShape).toEqual([P]);
    const all = (d: TensorDataset) =>
      tf.tidy(() => {
        const b = d.batch(Array.from({ length: d.size }, (_, i) => i));
        return { x: b.x.dataSync() as Int32Array, y: b.y.dataSync() as Int32Array };
      });
    const [f, g] = [all(full), all(gathered)];
    let overflowed = 0;
    for (let r = 0; r < full.size; r++) {
      // The full form's input, with the selections past the cap put back to their tokens (not predicted, not corrupted).
      const input = Int32Array.from(f.x.subarray(r * seqLen, (r + 1) * seqLen));
      const expected = gatherPredictions(f.y.subarray(r * seqLen, (r + 1) * seqLen), P, 0, input);
      expect(Array.from(g.x.subarray(r * (seqLen + P), r * (seqLen + P) + seqLen))).toEqual(Array.from(input));
      expect(Array.from(g.x.subarray(r * (seqLen + P) + seqLen, (r + 1) * (seqLen + P)))).toEqual(Array.from(expected.positions));
      expect(Array.from(g.y.subarray(r * P, (r + 1) * P))).toEqual(Array.from(expected.labels));
      if (expected.dropped > 0) overflowed++;
    }
    expect(overflowed).toBeGreaterThan(0); // the cap was exercised
  });

  it('dupeFactor K: the training sequences K times with new masks, the validation split unchanged', () => {
    const seqLen = 24;
    const make = (split: string, extra: object) =>
      (registry.create('dataset', { type: 'bert-mlm', tokenizer, seqLen, maxChars: 12_000, ...extra }) as unknown as { load(s: string): TensorDataset }).load(
        split,
      );
    const all = (d: TensorDataset) =>
      tf.tidy(() => {
        const b = d.batch(Array.from({ length: d.size }, (_, i) => i));
        return { x: Array.from(b.x.dataSync() as Int32Array), y: Array.from(b.y.dataSync() as Int32Array) };
      });
    const [once, thrice] = [all(make('train', {})), all(make('train', { dupeFactor: 3 }))];
    expect(all(make('valid', { dupeFactor: 3 }))).toEqual(all(make('valid', {})));
    const n = once.x.length / seqLen;
    expect(thrice.x.length).toBe(3 * n * seqLen);
    // The first copy is the dupeFactor-1 data; every copy holds the same text (the original id is the label where
    // one was selected, the input elsewhere) under its own masks.
    expect(thrice.x.slice(0, n * seqLen)).toEqual(once.x);
    expect(thrice.y.slice(0, n * seqLen)).toEqual(once.y);
    const text0 = (x: number[], y: number[], r: number) => x.slice(r * seqLen, (r + 1) * seqLen).map((v, j) => y[r * seqLen + j] || v);
    let differ = 0;
    for (let r = 0; r < n; r++)
      for (const k of [1, 2]) {
        expect(text0(thrice.x, thrice.y, k * n + r)).toEqual(text0(once.x, once.y, r));
        if (thrice.y.slice((k * n + r) * seqLen, (k * n + r + 1) * seqLen).join() !== once.y.slice(r * seqLen, (r + 1) * seqLen).join()) differ++;
      }
    expect(differ).toBeGreaterThan(n); // new masks, not copies
  });
});
