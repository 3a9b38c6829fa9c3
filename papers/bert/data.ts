/**
 * The data of the BERT paper reproduction, as dataset plugins the paper registers: masked-LM examples from the
 * pretraining corpora (static masking, as the original BERT pre-generated its masks), and bag-of-words features of
 * the SpamAssassin split for the logistic-regression baseline.
 */
import * as fs from 'node:fs';
import { z } from 'zod';
import { DataError, definePlugin, Rng, TensorDataset, type JsonObject } from '../../core';
import { gatherPredictions, maskTokens } from '../../plugins/models/bert';
import { CORPORA, corpusTexts } from '../../plugins/data/text-corpus';
import { spamAssassinTexts, spamTextSchema } from '../../plugins/data/spam-assassin';
import { CLS_ID, MASK_ID, SEP_ID, WORDPIECE_SPECIALS, WordPiece } from '../../plugins/tokenizers/wordpiece';

/** Masked-LM windows: [CLS] + seqLen − 2 tokens of the concatenated corpora + [SEP]; labels 0 where not selected. */
export const mlmData = definePlugin({
  kind: 'dataset',
  name: 'bert-mlm',
  description: 'masked-LM examples (15 %, 80/10/10) from Brown, the State of the Union addresses and Moby Dick',
  schema: z.object({
    tokenizer: z.string(),
    seqLen: z.number().int().min(4).default(128),
    maxChars: z.number().int().positive().optional(),
    validFraction: z.number().gt(0).lt(1).default(0.05),
    seed: z.number().int().default(0),
    /**
     * BERT's gathered form (the `bert` model's `maxPredictions`): each example is the seqLen ids followed by P
     * selected positions, its labels the P original ids (0-padded). Unset: labels at every position.
     */
    maxPredictions: z.number().int().positive().optional(),
    /**
     * BERT's dupe_factor (create_pretraining_data.py): each training sequence appears this many times, each with its
     * own masking, so an epoch is that many passes over the text, each with new masks (Devlin et al. used 10;
     * Liu et al. 2019, RoBERTa §4.1, found that masks drawn anew do as well or slightly better than repeated static
     * ones). The validation sequences appear once, masked as with 1.
     */
    dupeFactor: z.number().int().positive().default(1),
  }),
  create: (o) => {
    let cache: { train: TensorDataset; valid: TensorDataset } | undefined;
    const build = () => {
      if (!fs.existsSync(o.tokenizer)) throw new DataError(`bert-mlm: tokenizer file ${o.tokenizer} (option "tokenizer") does not exist`);
      const wp = WordPiece.fromState(JSON.parse(fs.readFileSync(o.tokenizer, 'utf8')) as JsonObject);
      let text = corpusTexts(CORPORA).join('\n\n');
      if (o.maxChars) text = text.slice(0, o.maxChars);
      const ids = wp.encode(text);
      const w = o.seqLen - 2;
      const n = Math.floor(ids.length / w);
      const p = o.maxPredictions ?? 0;
      const xw = o.seqLen + p; // ids, then (gathered form) the positions to predict
      const yw = p || o.seqLen;
      const cut = Math.floor(n * (1 - o.validFraction));
      const valid = n - cut;
      // Masked in this order: the n sequences once (training then validation, as with dupeFactor 1), then the
      // training sequences' further maskings. Stored with the validation rows last, so each split is one range.
      const rows = n + (o.dupeFactor - 1) * cut;
      const x = new Int32Array(rows * xw);
      const y = new Int32Array(rows * yw);
      const rng = new Rng(o.seed);
      const specials = WORDPIECE_SPECIALS.length;
      for (let r = 0; r < rows; r++) {
        const i = r < n ? r : (r - n) % cut; // the sequence
        const at = r < cut ? r : r < n ? rows - valid + (r - cut) : r - valid; // its row
        const { input, labels } = maskTokens([CLS_ID, ...ids.slice(i * w, (i + 1) * w), SEP_ID], rng, {
          vocabSize: wp.vocabSize,
          maskId: MASK_ID,
          firstRandom: specials,
          maskable: (id) => id >= specials,
        });
        if (p) {
          const g = gatherPredictions(labels, p, 0, input); // selections past p are not predicted: not corrupted either
          x.set(input, at * xw);
          x.set(g.positions, at * xw + o.seqLen);
          y.set(g.labels, at * yw);
        } else {
          x.set(input, at * xw);
          y.set(labels, at * yw);
        }
      }
      const part = (name: string, a: number, b: number) =>
        new TensorDataset(`bert-mlm:${name}`, x.subarray(a * xw, b * xw), [xw], y.subarray(a * yw, b * yw), [yw]);
      return { train: part('train', 0, rows - valid), valid: part('valid', rows - valid, rows) };
    };
    return {
      splits: ['train', 'valid'],
      load(split: string) {
        cache ??= build();
        const d = cache[split as 'train' | 'valid'];
        if (!d) throw new DataError(`bert-mlm: unknown split "${split}"; available: train, valid`);
        return d;
      },
    };
  },
});

/** Lower-cased word tokens, as the bag-of-words baseline counts them. */
export const words = (t: string) => t.toLowerCase().match(/[a-z0-9']+/g) ?? [];

/**
 * Binary bag-of-words features over the `features` words most frequent (by document) in the training messages.
 * Vectors always have `features` entries, so the baseline's model keeps one input shape across the few-shot
 * grid: a training subset with fewer distinct words than `features` leaves the trailing columns zero.
 */
export const bowData = definePlugin({
  kind: 'dataset',
  name: 'spam-bow',
  description: 'SpamAssassin as binary bag-of-words vectors (the logistic-regression baseline of Géron 2019, ch. 3)',
  schema: z.object({
    features: z.number().int().positive().default(5000),
    groups: spamTextSchema.shape.groups,
    /** As `spam-assassin`'s: the same stratified subset of the training messages (and the vocabulary is theirs). */
    trainSubset: spamTextSchema.shape.trainSubset,
  }),
  create: ({ features, groups, trainSubset }) => {
    const opts = spamTextSchema.parse({ groups, trainSubset });
    const train = spamAssassinTexts('train', opts);
    const df = new Map<string, number>();
    for (const t of train.texts) for (const w of new Set(words(t))) df.set(w, (df.get(w) ?? 0) + 1);
    const vocab = [...df]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .slice(0, features)
      .map(([w]) => w);
    const index = new Map(vocab.map((w, i) => [w, i]));
    return {
      splits: ['train', 'test'],
      load(split: string) {
        const d = split === 'train' ? train : spamAssassinTexts(split as 'test', opts);
        const x = new Float32Array(d.texts.length * features);
        d.texts.forEach((t, r) => {
          for (const w of words(t)) {
            const i = index.get(w);
            if (i !== undefined) x[r * features + i] = 1;
          }
        });
        return new TensorDataset(`spam-bow:${split}`, x, [features], Int32Array.from(d.labels), []);
      },
    };
  },
});
