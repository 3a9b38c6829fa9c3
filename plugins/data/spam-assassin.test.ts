/** SpamAssassin: the fixed split by checksum hash, labels by group, and the [CLS] ... [SEP] encoding. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';
import { CLS_ID, PAD_ID, SEP_ID, WordPiece } from '../tokenizers/wordpiece';
import fc from 'fast-check';
import { spamAssassinTexts, spamTextSchema, stratifiedSubset } from './spam-assassin';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

describe('spam-assassin', () => {
  it('trainSubset: stratified subsets of the training split, of the asked size, reproducible from the seed, test split unchanged', () => {
    const o = spamTextSchema.parse({});
    const train = spamAssassinTexts('train', o);
    const share = train.labels.filter((l) => l === 1).length / train.labels.length;
    const index = new Map(train.ids.map((id, i) => [id, i]));
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 2000 }), fc.integer({ min: 0, max: 1000 }), (size, seed) => {
        const sub = spamAssassinTexts('train', spamTextSchema.parse({ trainSubset: { size, seed } }));
        expect(sub.ids).toHaveLength(size);
        // Both classes present; the spam count is the rounded proportional share (moved by one only to keep a class).
        const spam = sub.labels.filter((l) => l === 1).length;
        expect(spam).toBeGreaterThan(0);
        expect(spam).toBeLessThan(size);
        expect(Math.abs(spam - size * share)).toBeLessThanOrEqual(1);
        // A subset of the training messages, in their order, each with its own text and label.
        const at = sub.ids.map((id) => index.get(id)!);
        expect(at.every((i, k) => i !== undefined && (k === 0 || i > at[k - 1]!))).toBe(true);
        at.forEach((i, k) => {
          expect(sub.texts[k]).toBe(train.texts[i]);
          expect(sub.labels[k]).toBe(train.labels[i]);
        });
        expect(spamAssassinTexts('train', spamTextSchema.parse({ trainSubset: { size, seed } })).ids).toEqual(sub.ids);
      }),
      { numRuns: 15 },
    );
    const a = stratifiedSubset(train, 100, 1).ids;
    expect(stratifiedSubset(train, 100, 2).ids).not.toEqual(a);
    expect(spamAssassinTexts('test', spamTextSchema.parse({ trainSubset: { size: 50, seed: 0 } })).ids).toEqual(spamAssassinTexts('test', o).ids);
    expect(() => stratifiedSubset(train, train.ids.length + 1, 0)).toThrow(/trainSubset\.size/);
  });

  it('splits the 6,046 messages 80/20 by checksum hash, the same way whichever groups are chosen', () => {
    const o = spamTextSchema.parse({});
    const [train, test] = [spamAssassinTexts('train', o), spamAssassinTexts('test', o)];
    const n = train.ids.length + test.ids.length;
    expect(n).toBe(6046);
    expect(new Set([...train.ids, ...test.ids]).size).toBe(n);
    // Binomial(6046, 0.2): the test share lies within 4 standard deviations of 20 %.
    expect(Math.abs(test.ids.length - 0.2 * n)).toBeLessThan(4 * Math.sqrt(n * 0.2 * 0.8));
    [train, test].forEach((s) => s.ids.forEach((id, i) => expect(s.labels[i]).toBe(id.startsWith('spam') ? 1 : 0)));
    const spamOnly = spamAssassinTexts('test', spamTextSchema.parse({ groups: ['spam-1', 'spam-2'] }));
    expect(spamOnly.ids).toEqual(test.ids.filter((id) => id.startsWith('spam')));
    // By default the text is the Subject line, a blank line, and the body that follows the headers.
    const raw = spamAssassinTexts('test', spamTextSchema.parse({ headers: true }));
    test.texts.forEach((t, i) => {
      const r = raw.texts[i]!;
      const [subject, body] = [t.slice(0, t.indexOf('\n\n')), t.slice(t.indexOf('\n\n') + 2)];
      const head = r.slice(0, r.search(/\n\n/));
      if (subject) expect(head).toMatch(new RegExp(`^Subject:[ \\t]*${subject.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'mi'));
      else expect(head).not.toMatch(/^Subject:[ \t]*\S/im);
      expect(r.trimEnd().endsWith(body)).toBe(true);
      expect(r.length).toBeGreaterThan(t.length);
    });
  });

  it('encodes each message as [CLS] pieces [SEP] padded with [PAD], labels as int32', () => {
    const o = spamTextSchema.parse({ groups: ['hard-ham-1', 'spam-1'] });
    const texts = spamAssassinTexts('train', o).texts;
    const wp = WordPiece.train(texts.slice(0, 40), { vocabSize: 500 });
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'loom-wp-')), 'wp.json');
    fs.writeFileSync(file, JSON.stringify(wp.getState()));
    const ds = registry.create('dataset', { type: 'spam-assassin', groups: ['hard-ham-1', 'spam-1'], tokenizer: file, maxLen: 32 }).load('train');
    expect(ds.size).toBe(texts.length);
    const b = ds.batch([0, 1, 2, 3]);
    const rows = b.x.arraySync() as number[][];
    rows.forEach((r, i) => {
      const ids = wp.encode(texts[i]!).slice(0, 30);
      expect(r).toEqual([CLS_ID, ...ids, SEP_ID, ...new Array(30 - ids.length).fill(PAD_ID)]);
    });
    expect(b.y.dtype).toBe('int32');
    tf.dispose([b.x, b.y]);
    expect(() => registry.create('dataset', 'spam-assassin').load('train')).toThrow(/option "tokenizer"/);
  });
});
