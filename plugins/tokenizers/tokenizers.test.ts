/** WordPiece and byte-level BPE: decode ∘ encode is the identity up to the documented normalization; training. */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { brownTexts } from '../data/text-corpus';
import { ByteBpe, GPT2_SPLIT, tokenizerFromState, WordPiece } from './index';
import { UNK_ID } from './wordpiece';

let corpus: string[];
let wp: WordPiece;
let bpe: ByteBpe;
beforeAll(() => {
  corpus = [...brownTexts().slice(0, 400), 'Ünïcödé naïve café façade 東京 Ωmega 42 3.14 ##hash #tag [CLS]'];
  wp = WordPiece.train(corpus, { vocabSize: 1500 });
  bpe = ByteBpe.train(corpus, { vocabSize: 600 });
});

/** Text mixing words of the corpus, arbitrary Unicode and whitespace. */
const texts = () =>
  fc
    .array(
      fc.oneof(
        fc.constantFrom(...corpus[0]!.split(' ').slice(0, 60)),
        fc.string({ unit: 'binary', maxLength: 6 }),
        fc.constantFrom(' ', '\n', '\t', '  ', 'É', '—', '🐳'),
      ),
      { maxLength: 25 },
    )
    .map((a) => a.join(''));

describe('wordpiece', () => {
  it('decodes to the normalized words of the text, [UNK] for a word with a character outside the vocabulary', () => {
    const alphabet = new Set(wp.vocab.slice(5).filter((t) => !t.startsWith('##') && Array.from(t).length === 1));
    fc.assert(
      fc.property(texts(), (t) => {
        const expected = wp.words(t).map((w) => (Array.from(w).every((c) => alphabet.has(c)) ? w : '[UNK]'));
        expect(wp.decode(wp.encode(t))).toBe(expected.join(' '));
      }),
      { numRuns: 300 },
    );
    expect(wp.decode(wp.encode('Héllo,  WORLD!\tÜber\u0000 [CLS] 東京'))).toBe('hello , world ! uber [ cls ] 東 京');
    expect(wp.encode('☃')).toEqual([UNK_ID]);
  });

  it('cuts each word into the longest vocabulary pieces from the left', () => {
    const ids = new Set(wp.vocab);
    for (const word of wp.words(corpus.slice(0, 50).join(' '))) {
      const pieces = wp.encode(word).map((i) => wp.vocab[i]!.replace(/^##/, ''));
      let s = 0;
      for (const p of pieces) {
        for (let e = word.length; e > s + p.length; e--) expect(ids.has(s ? `##${word.slice(s, e)}` : word.slice(s, e))).toBe(false);
        s += p.length;
      }
    }
  });

  it('trains deterministically to the requested size and survives getState / fromState', () => {
    expect(wp.vocabSize).toBe(1500);
    expect(WordPiece.train(corpus, { vocabSize: 1500 }).vocab).toEqual(wp.vocab);
    expect(wp.vocab).toContain('the');
    const back = tokenizerFromState(JSON.parse(JSON.stringify(wp.getState())));
    const sample = corpus.slice(100, 110).join(' ');
    expect(back.encode(sample)).toEqual(wp.encode(sample));
    // Subwords compress: fewer tokens than characters on the training text.
    expect(wp.encode(sample).length).toBeLessThan(sample.length / 2.5);
    const cased = WordPiece.train(corpus.slice(0, 50), { vocabSize: 300, lowercase: false });
    expect(cased.decode(cased.encode('The Jury'))).toBe('The Jury');
  });
});

describe('byte-bpe', () => {
  it('round-trips every well-formed string exactly; lone surrogates come back as U+FFFD', () => {
    fc.assert(
      fc.property(fc.oneof(texts(), fc.string({ unit: 'grapheme', maxLength: 40 })), (t) => {
        expect((t.match(GPT2_SPLIT) ?? []).join('')).toBe(t);
        const ids = bpe.encode(t);
        expect(ids.every((i) => i >= 0 && i < bpe.vocabSize)).toBe(true);
        expect(ids.length).toBeLessThanOrEqual(new TextEncoder().encode(t).length);
        expect(bpe.decode(ids)).toBe(t);
      }),
      { numRuns: 300 },
    );
    expect(bpe.decode(bpe.encode('a\ud800b'))).toBe('a\ufffdb');
  });

  it('learns frequent pieces, trains deterministically and survives getState / fromState', () => {
    expect(bpe.vocabSize).toBe(600);
    const the = bpe.encode(' the');
    expect(the).toHaveLength(1);
    expect(new TextDecoder().decode(bpe.tokenBytes(the[0]!))).toBe(' the');
    expect(ByteBpe.train(corpus, { vocabSize: 600 }).merges).toEqual(bpe.merges);
    const back = tokenizerFromState(JSON.parse(JSON.stringify(bpe.getState())));
    const sample = corpus.slice(100, 110).join(' ');
    expect(back.encode(sample)).toEqual(bpe.encode(sample));
    expect(bpe.encode(sample).length).toBeLessThan(sample.length / 2);
    expect(() => tokenizerFromState({ type: 'sentencepiece' })).toThrow(/unknown type "sentencepiece"; known: wordpiece, byte-bpe/);
  });
});
