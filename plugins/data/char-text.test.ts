/** Character-level LM data: the 90/10 split of the text, windows shifted by one, the character vocabulary. */
import * as tf from '@tensorflow/tfjs-core';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PluginRegistry } from '../../core';
import { testRegistry } from '../../test/harness';
import type { CharTextSource } from './char-text';
import { mobyDickText } from './text-corpus';

let registry: PluginRegistry;
beforeAll(async () => {
  registry = await testRegistry();
});

describe('char-text', () => {
  it('splits Moby Dick at 90 % and serves windows x = text[s, s+ctx), y = text[s+1, s+ctx+1)', () => {
    const chars = Array.from(mobyDickText());
    const cut = Math.floor(chars.length * 0.9);
    const src = registry.create('dataset', { type: 'char-text', context: 16 }) as CharTextSource;
    expect(src.vocab).toEqual([...new Set(chars)].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!));
    const [train, valid] = [src.load('train'), src.load('valid')];
    expect([train.size, valid.size]).toEqual([cut - 16, chars.length - cut - 16]);
    fc.assert(
      fc.property(fc.boolean(), fc.nat(), (isTrain, k) => {
        const ds = isTrain ? train : valid;
        const s = k % ds.size;
        const b = ds.batch([s]);
        const [x, y] = [src.decode(b.x.dataSync()), src.decode(b.y.dataSync())];
        tf.dispose([b.x, b.y]);
        const at = (isTrain ? 0 : cut) + s;
        expect(x).toBe(chars.slice(at, at + 16).join(''));
        expect(y).toBe(chars.slice(at + 1, at + 17).join(''));
      }),
      { numRuns: 50 },
    );
  });

  it('round-trips text through the vocabulary; stride and maxChars set the number of windows', () => {
    const src = registry.create('dataset', { type: 'char-text', context: 8, stride: 5, maxChars: 1000 }) as CharTextSource;
    const text = mobyDickText();
    fc.assert(
      fc.property(fc.nat(text.length - 200), fc.nat(200), (a, n) => {
        const s = text.slice(a, a + n).replace(/[\ud800-\udfff]/g, '');
        expect(src.decode(src.encode(s))).toBe(s);
      }),
    );
    expect(src.load('train').size).toBe(Math.floor((1000 - 9) / 5) + 1);
    const b = src.load('valid').batch([0, 1]);
    expect(Array.from(b.x.dataSync()).slice(8, 11)).toEqual(Array.from(b.y.dataSync()).slice(4, 7)); // window 1 starts 5 after window 0
    tf.dispose([b.x, b.y]);
    expect(() => src.encode('☃')).toThrow(/character "☃" \(U\+2603\) is not in the moby-dick vocabulary/);
    expect(() => src.load('test')).toThrow(/unknown split "test"; available: train, valid/);
  });
});
