/** The raw corpora: Brown's published counts with tags stripped, and the documents of sotu and Moby Dick. */
import { describe, expect, it } from 'vitest';
import { brownParagraphs, corpusTexts, mobyDickText, sotuTexts } from './text-corpus';

describe('text corpora', () => {
  it('reads Brown as 15,667 paragraphs, 57,340 sentences and 1,161,192 words without POS tags', () => {
    const paras = brownParagraphs();
    const sents = paras.flat();
    const words = sents.flat();
    expect([paras.length, sents.length, words.length]).toEqual([15_667, 57_340, 1_161_192]);
    expect(words.slice(0, 5)).toEqual(['The', 'Fulton', 'County', 'Grand', 'Jury']);
    // Tags are lower-case letters, digits and symbols after the last '/'; no word keeps one.
    expect(words.filter((w) => /\/(at|nn|np|vbd|in|jj)(-tl|-hl)?$/.test(w))).toEqual([]);
  });

  it('gives one document per Brown paragraph, per State of the Union address, and Moby Dick whole', () => {
    const moby = mobyDickText();
    expect(moby.startsWith('CONTENTS')).toBe(true);
    expect(moby).toContain('Call me Ishmael.');
    expect(moby.indexOf('CHAPTER 1. Loomings.')).toBeLessThan(moby.indexOf('CHAPTER 135.'));
    expect(moby.trimEnd().endsWith('another orphan.')).toBe(true); // the epilogue's last words
    expect(sotuTexts()).toHaveLength(233);
    const docs = corpusTexts(['moby-dick', 'sotu', 'brown']);
    expect(docs).toHaveLength(1 + 233 + 15_667);
    expect(
      docs[234]!.startsWith('The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced " no evidence "'),
    ).toBe(true);
    expect(() => corpusTexts(['ptb' as 'brown'])).toThrow(/unknown corpus "ptb"; available: brown, sotu, moby-dick/);
  });
});
