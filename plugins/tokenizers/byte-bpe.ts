import { DataError, type JsonObject, type Tokenizer } from '../../core';
import { learnMerges, type WordCount } from './merges';

/** GPT-2's pre-tokenizer (Radford et al. 2019, openai/gpt-2 encoder.py): contractions, words, numbers, symbols, spaces. */
export const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

export interface ByteBpeTrainOptions {
  /** Target vocabulary size: 256 byte tokens plus the merges. */
  vocabSize?: number;
  minFrequency?: number;
}

/**
 * Byte-level BPE as in GPT-2 (Radford et al. 2019): text is cut by {@link GPT2_SPLIT} into pieces that merges never
 * cross, each piece is taken as its UTF-8 bytes (ids 0-255), and learned merges (id 256 + rank) are applied lowest
 * rank first. Every string is encodable without an unknown token, and `decode(encode(t)) === t` for every
 * well-formed string (a lone UTF-16 surrogate cannot be written in UTF-8 and comes back as U+FFFD).
 */
export class ByteBpe implements Tokenizer {
  readonly type = 'byte-bpe';
  private readonly rank = new Map<number, number>(); // pair key → merged id
  private readonly bytes: Uint8Array[];
  private readonly cache = new Map<string, number[]>();
  private readonly encoder = new TextEncoder();
  private readonly decoder = new TextDecoder();

  constructor(readonly merges: readonly (readonly [number, number])[]) {
    this.bytes = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    merges.forEach(([a, b], r) => {
      const id = 256 + r;
      if (!(a < id && b < id && a >= 0 && b >= 0)) throw new DataError(`byte-bpe: merge ${r} joins ids ${a} and ${b}, expected ids below ${id}`);
      this.rank.set(a * 0x100000 + b, id);
      this.bytes.push(Uint8Array.from([...this.bytes[a]!, ...this.bytes[b]!]));
    });
  }

  get vocabSize(): number {
    return 256 + this.merges.length;
  }

  /** The UTF-8 bytes a token stands for (for display and tests). */
  tokenBytes(id: number): Uint8Array {
    const t = this.bytes[id];
    if (!t) throw new RangeError(`byte-bpe: id ${id} outside the vocabulary of ${this.vocabSize}`);
    return t;
  }

  encode(text: string): number[] {
    const out: number[] = [];
    for (const piece of text.match(GPT2_SPLIT) ?? []) out.push(...this.encodePiece(piece));
    return out;
  }

  decode(ids: ArrayLike<number>): string {
    const parts = Array.from(ids, (i) => this.tokenBytes(i));
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) all.set(p, (o += p.length) - p.length);
    return this.decoder.decode(all);
  }

  private encodePiece(piece: string): number[] {
    const hit = this.cache.get(piece);
    if (hit) return hit;
    let syms = Array.from(this.encoder.encode(piece));
    for (;;) {
      let best = Infinity;
      for (let i = 0; i + 1 < syms.length; i++) best = Math.min(best, this.rank.get(syms[i]! * 0x100000 + syms[i + 1]!) ?? Infinity);
      if (best === Infinity) break;
      const [a, b] = this.merges[best - 256]!;
      const next: number[] = [];
      for (let i = 0; i < syms.length; i++) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
          next.push(best);
          i++;
        } else next.push(syms[i]!);
      }
      syms = next;
    }
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(piece, syms);
    return syms;
  }

  getState(): { type: string } & JsonObject {
    return { type: this.type, merges: this.merges.map(([a, b]) => [a, b]) };
  }

  static fromState(json: JsonObject): ByteBpe {
    if (json.type !== 'byte-bpe' || !Array.isArray(json.merges))
      throw new DataError('byte-bpe: expected JSON { type: "byte-bpe", merges: [number, number][] }');
    return new ByteBpe(json.merges as [number, number][]);
  }

  /** Learns merges from `texts` until the vocabulary has `vocabSize` tokens or no pair occurs `minFrequency` times. */
  static train(texts: Iterable<string>, o: ByteBpeTrainOptions = {}): ByteBpe {
    const { vocabSize = 1024, minFrequency = 2 } = o;
    if (vocabSize < 256) throw new DataError(`byte-bpe: vocabSize ${vocabSize} is below the 256 byte tokens`);
    const counts = new Map<string, number>();
    for (const text of texts) for (const p of text.match(GPT2_SPLIT) ?? []) counts.set(p, (counts.get(p) ?? 0) + 1);
    const encoder = new TextEncoder();
    const words: WordCount[] = [...counts].map(([p, freq]) => ({ syms: Array.from(encoder.encode(p)), freq }));
    let next = 256;
    const merges = learnMerges(words, { minFrequency, done: () => next >= vocabSize, merge: () => next++ });
    return new ByteBpe(merges.map(([a, b]) => [a, b] as const));
  }
}
