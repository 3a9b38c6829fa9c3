import { DataError, type JsonObject, type Tokenizer } from '../../core';
import { learnMerges, type WordCount } from './merges';

/** Special tokens, always ids 0-4. */
export const WORDPIECE_SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] as const;
export const [PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID] = [0, 1, 2, 3, 4];
/** Longer words become [UNK], as in BERT (`max_input_chars_per_word`). */
const MAX_WORD_CHARS = 100;
const PUNCT = /([!-/:-@[-`{-~]|\p{P}|\p{Script=Han})/u;

export interface WordPieceTrainOptions {
  /** Target vocabulary size, special tokens and the alphabet (in both word-initial and ## forms) included. */
  vocabSize?: number;
  /** Merge only pairs seen at least this often. */
  minFrequency?: number;
  /** Uncased (BERT-base-uncased): lower-case and strip accents. */
  lowercase?: boolean;
}

/**
 * BERT's WordPiece tokenizer (Devlin et al. 2018; Wu et al. 2016). Normalization, as BERT's BasicTokenizer:
 * control characters (Unicode category C) are removed and tabs / newlines become spaces; if `lowercase`, text is
 * lower-cased and accents stripped (NFD, then marks removed); words are split on whitespace, and every punctuation
 * mark (ASCII symbols and Unicode P) and CJK ideograph becomes its own word. Each word is then cut greedily into the
 * longest vocabulary pieces from the left, continuation pieces prefixed `##`; a word that cannot be cut (a
 * character outside the vocabulary) or longer than 100 characters becomes [UNK] as a whole.
 * So `decode(encode(t))` is the normalized words of `t` joined by single spaces, with [UNK] for uncuttable ones.
 *
 * Training learns the vocabulary by BPE merges over the `##`-marked pieces, which is what the HuggingFace
 * `tokenizers` WordPieceTrainer does; BERT's original likelihood-based trainer was not released.
 */
export class WordPiece implements Tokenizer {
  readonly type = 'wordpiece';
  private readonly ids: Map<string, number>;
  private readonly maxPiece: number;
  private readonly cache = new Map<string, number[]>();

  constructor(
    readonly vocab: readonly string[],
    readonly lowercase: boolean,
  ) {
    WORDPIECE_SPECIALS.forEach((s, i) => {
      if (vocab[i] !== s) throw new DataError(`wordpiece: vocabulary entry ${i} must be ${s}, got ${JSON.stringify(vocab[i])}`);
    });
    this.ids = new Map(vocab.map((t, i) => [t, i]));
    if (this.ids.size !== vocab.length) throw new DataError('wordpiece: the vocabulary has duplicate entries');
    this.maxPiece = Math.max(...vocab.map((t) => t.length));
  }

  get vocabSize(): number {
    return this.vocab.length;
  }

  /** The normalized words of `text` (see the class comment). */
  words(text: string): string[] {
    let t = text.replace(/[\t\n\r]/g, ' ').replace(/\p{C}/gu, '');
    if (this.lowercase)
      t = t
        .toLowerCase()
        .normalize('NFD')
        .replace(/\p{Mn}/gu, '');
    return t
      .split(/\s+/)
      .flatMap((w) => w.split(PUNCT))
      .filter(Boolean);
  }

  /** Ids of `text`; with `maxTokens`, stops after that many (long documents are then not cut into pieces whole). */
  encode(text: string, maxTokens = Infinity): number[] {
    const out: number[] = [];
    for (const w of this.words(text)) {
      if (out.length >= maxTokens) break;
      out.push(...this.encodeWord(w));
    }
    return out.length > maxTokens ? out.slice(0, maxTokens) : out;
  }

  /** Tokens joined by spaces, `##` pieces attached to the previous one; [PAD] is skipped. */
  decode(ids: ArrayLike<number>): string {
    let out = '';
    for (const i of Array.from(ids)) {
      if (i === PAD_ID) continue;
      const t = this.vocab[i];
      if (t === undefined) throw new RangeError(`wordpiece: id ${i} outside the vocabulary of ${this.vocabSize}`);
      out += t.startsWith('##') ? t.slice(2) : out ? ` ${t}` : t;
    }
    return out;
  }

  private encodeWord(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let pieces: number[] = [];
    if (word.length > MAX_WORD_CHARS && Array.from(word).length > MAX_WORD_CHARS) pieces = [UNK_ID];
    for (let s = 0; s < word.length && pieces[0] !== UNK_ID; ) {
      let e = Math.min(word.length, s + this.maxPiece);
      let id: number | undefined;
      for (; e > s; e--) if ((id = this.ids.get(s ? `##${word.slice(s, e)}` : word.slice(s, e))) !== undefined) break;
      if (id === undefined) pieces = [UNK_ID];
      else pieces.push(id);
      s = e;
    }
    if (this.cache.size > 100_000) this.cache.clear();
    this.cache.set(word, pieces);
    return pieces;
  }

  getState(): { type: string } & JsonObject {
    return { type: this.type, lowercase: this.lowercase, vocab: [...this.vocab] };
  }

  static fromState(json: JsonObject): WordPiece {
    if (json.type !== 'wordpiece' || !Array.isArray(json.vocab))
      throw new DataError('wordpiece: expected JSON { type: "wordpiece", vocab: string[], lowercase }');
    return new WordPiece(json.vocab as string[], json.lowercase !== false);
  }

  /** Learns a vocabulary from `texts` (see the class comment). */
  static train(texts: Iterable<string>, o: WordPieceTrainOptions = {}): WordPiece {
    const { vocabSize = 8000, minFrequency = 2, lowercase = true } = o;
    const norm = new WordPiece([...WORDPIECE_SPECIALS], lowercase);
    const counts = new Map<string, number>();
    for (const text of texts) for (const w of norm.words(text)) counts.set(w, (counts.get(w) ?? 0) + 1);
    const alphabet = [...new Set([...counts.keys()].flatMap((w) => Array.from(w)))].sort();
    const vocab: string[] = [...WORDPIECE_SPECIALS, ...alphabet, ...alphabet.map((c) => `##${c}`)];
    const ids = new Map(vocab.map((t, i) => [t, i]));
    const words: WordCount[] = [...counts].map(([w, freq]) => ({ syms: Array.from(w, (c, i) => ids.get(i ? `##${c}` : c)!), freq }));
    learnMerges(words, {
      minFrequency,
      done: () => vocab.length >= vocabSize,
      merge: (a, b) => {
        const t = vocab[a]! + vocab[b]!.slice(2);
        let id = ids.get(t);
        if (id === undefined) {
          ids.set(t, (id = vocab.length));
          vocab.push(t);
        }
        return id;
      },
    });
    return new WordPiece(vocab, lowercase);
  }
}
