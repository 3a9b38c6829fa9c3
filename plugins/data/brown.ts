import { z } from 'zod';
import { DataError, definePlugin, type DataSource, type Dataset } from '../../core';
import { brownParagraphs } from './text-corpus';
import { TokenWindows } from './util';

export const BROWN_SPLITS = ['train', 'valid', 'test'] as const;
export const UNK = '<unk>';
export const EOS = '<eos>';

export const brownSchema = z.object({
  /** Fold case. Off by default: Bengio et al. (2003) distinguish upper and lower case. */
  lowercase: z.boolean().default(false),
  /**
   * Where an `<eos>` token is inserted: after every sentence (as in the Penn Treebank streams of Zaremba et al.),
   * after every paragraph (closer to Bengio's stream, which marks texts and paragraphs), or nowhere.
   */
  boundary: z.enum(['sentence', 'paragraph', 'none']).default('sentence'),
  /** Words seen fewer than `minCount` times in the training tokens become `<unk>` (Bengio: ≤ 3 merged, so 4). */
  minCount: z.number().int().positive().default(4),
  trainTokens: z.number().int().positive().default(800_000),
  validTokens: z.number().int().positive().default(200_000),
  /** Keep only the first N tokens of each split (smoke presets); the vocabulary is built from what training keeps. */
  maxTokens: z.number().int().positive().optional(),
  /** Parallel streams (Zaremba et al.: 20); the batch size that keeps each row on one stream. */
  batchSize: z.number().int().positive().default(20),
  /** Tokens per window (truncated BPTT length; Zaremba et al.: 35). */
  unroll: z.number().int().positive().default(35),
});
export type BrownOptions = z.output<typeof brownSchema>;

/** The corpus as ids: the vocabulary (id → word) and each split's token stream. */
export interface BrownCorpus {
  vocab: string[];
  streams: Record<(typeof BROWN_SPLITS)[number], Int32Array>;
  /** Distinct words in the training tokens before merging rare ones, and tokens mapped to <unk> per split. */
  stats: { tokens: number; distinctTrain: number; unk: Record<string, number> };
}

/** A Brown source also exposes the vocabulary (for reports and sampling) and the counts behind it. */
export interface BrownSource extends DataSource {
  readonly vocab: string[];
  readonly stats: BrownCorpus['stats'];
}

/**
 * Tokenizes Brown (tags stripped, see `brownParagraphs`), splits the stream as Bengio et al. (2003, §4.1) did
 * (first 800,000 tokens train, next 200,000 valid, the rest test) and maps words seen fewer than `minCount` times
 * in training to `<unk>`. Vocabulary order: `<unk>`, then by training frequency (descending), ties by code point.
 */
export function brownCorpus(o: Pick<BrownOptions, 'lowercase' | 'boundary' | 'minCount' | 'trainTokens' | 'validTokens' | 'maxTokens'>): BrownCorpus {
  const words: string[] = [];
  for (const para of brownParagraphs()) {
    for (const sent of para) {
      for (const w of sent) words.push(o.lowercase ? w.toLowerCase() : w);
      if (o.boundary === 'sentence') words.push(EOS);
    }
    if (o.boundary === 'paragraph') words.push(EOS);
  }
  const [t, v] = [o.trainTokens, o.trainTokens + o.validTokens];
  if (v >= words.length) throw new DataError(`brown: trainTokens + validTokens = ${v} leaves no test tokens (the stream has ${words.length})`);
  const cap = (a: number, b: number) => words.slice(a, o.maxTokens ? Math.min(b, a + o.maxTokens) : b);
  const parts = { train: cap(0, t), valid: cap(t, v), test: cap(v, words.length) };

  const counts = new Map<string, number>();
  for (const w of parts.train) counts.set(w, (counts.get(w) ?? 0) + 1);
  const kept = [...counts]
    .filter(([, c]) => c >= o.minCount)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([w]) => w);
  const vocab = [UNK, ...kept];
  const id = new Map(vocab.map((w, i) => [w, i]));
  const unk: Record<string, number> = {};
  const encode = (split: string, ws: string[]) => {
    let n = 0;
    const ids = Int32Array.from(ws, (w) => {
      const i = id.get(w);
      if (i === undefined) n++; // an unknown word: <unk> (id 0), counted
      return i ?? 0;
    });
    unk[split] = n;
    return ids;
  };
  const streams = { train: encode('train', parts.train), valid: encode('valid', parts.valid), test: encode('test', parts.test) };
  return { vocab, streams, stats: { tokens: words.length, distinctTrain: counts.size, unk } };
}

/**
 * Stateful truncated-BPTT windows (Zaremba et al. 2014, their `ptb_iterator`): the stream is cut into `batchSize`
 * contiguous streams of L = ⌊N / batchSize⌋ tokens; example i = k·batchSize + j is stream j's k-th window,
 * x = s_j[k·unroll .. (k+1)·unroll), y = the same shifted by one. Visited in order with batches of `batchSize`,
 * row j of batch k+1 continues row j of batch k, so a stateful LSTM can carry its hidden state across batches.
 * K = ⌊(L − 1) / unroll⌋ windows per stream; the leftover tail tokens are not used.
 */
export function bpttWindows(name: string, tokens: Int32Array, batchSize: number, unroll: number): TokenWindows {
  const L = Math.floor(tokens.length / batchSize);
  const K = Math.floor((L - 1) / unroll);
  if (K < 1) throw new DataError(`${name}: ${tokens.length} tokens are too few for ${batchSize} streams of windows of ${unroll} (+1) tokens`);
  return new TokenWindows(name, tokens, unroll, K * batchSize, (i) => (i % batchSize) * L + Math.floor(i / batchSize) * unroll);
}

/** The Brown corpus as word-level language-model data (Bengio et al. 2003 split; Zaremba et al. 2014 batching). */
export default definePlugin({
  kind: 'dataset',
  name: 'brown',
  description: 'Brown corpus word-level LM: Bengio et al. 2003 split, rare words as <unk>, stateful BPTT windows',
  schema: brownSchema,
  create: (o) => {
    let corpus: BrownCorpus | undefined;
    const get = () => (corpus ??= brownCorpus(o));
    const source: Omit<BrownSource, 'spec'> = {
      splits: [...BROWN_SPLITS],
      get vocab() {
        return get().vocab;
      },
      get stats() {
        return get().stats;
      },
      load(split: string): Dataset {
        const stream = get().streams[split as (typeof BROWN_SPLITS)[number]];
        if (!stream) throw new DataError(`brown: unknown split "${split}"; available: ${BROWN_SPLITS.join(', ')}`);
        return bpttWindows(`brown:${split}`, stream, o.batchSize, o.unroll);
      },
    };
    return source;
  },
});
