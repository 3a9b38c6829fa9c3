import { z } from 'zod';
import { DataError, definePlugin, type DataSource, type Dataset } from '../../core';
import { CORPORA, corpusTexts } from './text-corpus';
import { once, TokenWindows } from './util';

export const charTextSchema = z.object({
  /** Which text: Moby Dick (default), the State of the Union addresses or Brown, documents joined by a blank line. */
  corpus: z.enum(CORPORA).default('moby-dick'),
  /** Context length (block size): x = chars[i .. i+context), y = chars[i+1 .. i+context+1). */
  context: z.number().int().positive().default(64),
  /** Distance between the starts of consecutive windows (1: every position, as nanoGPT samples them). */
  stride: z.number().int().positive().default(1),
  /** Fraction of the text, from its start, used for training; the rest is validation. */
  trainFraction: z.number().gt(0).lt(1).default(0.9),
  /** Keep only the first N characters of each split (smoke presets). */
  maxChars: z.number().int().positive().optional(),
});

export interface CharTextSource extends DataSource {
  /** Characters (Unicode code points) by id, sorted by code point. */
  readonly vocab: string[];
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
}

/**
 * Character-level language-model data (as nanoGPT's shakespeare_char): the vocabulary is every code point of the
 * whole text (train and validation, as nanoGPT does), the first `trainFraction` of the text trains and the rest
 * validates, and examples are overlapping windows of `context` characters with the next characters as targets.
 */
export default definePlugin({
  kind: 'dataset',
  name: 'char-text',
  description: 'character-level LM windows over Moby Dick (or sotu / brown), first 90 % train, last 10 % valid',
  schema: charTextSchema,
  create: (o) => {
    const text = once(() => {
      const chars = Array.from(corpusTexts([o.corpus]).join('\n\n'));
      const vocab = [...new Set(chars)].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
      return { chars, vocab, id: new Map(vocab.map((c, i) => [c, i])) };
    });
    const encode = (s: string) =>
      Array.from(s, (c) => {
        const i = text().id.get(c);
        if (i === undefined)
          throw new DataError(`char-text: character ${JSON.stringify(c)} (U+${c.codePointAt(0)!.toString(16)}) is not in the ${o.corpus} vocabulary`);
        return i;
      });
    const source: Omit<CharTextSource, 'spec'> = {
      splits: ['train', 'valid'],
      get vocab() {
        return text().vocab;
      },
      encode,
      decode: (ids) => Array.from(ids, (i) => text().vocab[i] ?? '\ufffd').join(''),
      load(split: string): Dataset {
        const { chars, id } = text();
        const cut = Math.floor(chars.length * o.trainFraction);
        const range = split === 'train' ? [0, cut] : split === 'valid' ? [cut, chars.length] : null;
        if (!range) throw new DataError(`char-text: unknown split "${split}"; available: train, valid`);
        const end = o.maxChars ? Math.min(range[1]!, range[0]! + o.maxChars) : range[1]!;
        const tokens = Int32Array.from(chars.slice(range[0], end), (c) => id.get(c)!);
        if (tokens.length < o.context + 1)
          throw new DataError(`char-text:${split}: ${tokens.length} characters are too few for a context of ${o.context} (+1)`);
        const size = Math.floor((tokens.length - o.context - 1) / o.stride) + 1;
        return new TokenWindows(`char-text:${o.corpus}:${split}`, tokens, o.context, size, (i) => i * o.stride);
      },
    };
    return source;
  },
});
