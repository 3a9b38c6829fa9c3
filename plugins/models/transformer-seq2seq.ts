import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin,
  Module,
  moduleOptions,
  quantizationOption,
  subQuantization,
  type ForwardContext,
  type Layer,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';
import { PositionalEncoding } from '../layers/positional-encoding';
import { quantizedDenseSpec } from '../layers/quantized-dense';
import { TransformerDecoder, type DecoderCache } from '../layers/transformer-decoder';
import { reorderCache } from '../layers/multi-head-attention';

export const seq2seqOptions = moduleOptions.extend({
  srcVocab: z.number().int().positive(),
  tgtVocab: z.number().int().positive(),
  /** The input packs [source (srcLen ids), decoder input (tgtLen ids)] into one row of srcLen + tgtLen ids (see the class). */
  srcLen: z.number().int().positive(),
  tgtLen: z.number().int().positive(),
  dModel: z.number().int().positive().default(512),
  numHeads: z.number().int().positive().default(8),
  ff: z.number().int().positive().default(2048),
  /** Encoder and decoder layers (N = 6 in the paper). */
  layers: z.number().int().positive().default(6),
  dropout: z.number().min(0).lt(1).default(0.1),
  preNorm: z.boolean().default(false),
  padId: z.number().int().min(0).default(0),
  bosId: z.number().int().min(0).default(1),
  eosId: z.number().int().min(0).default(2),
  /**
   * Run each batch only as long as its longest source and target (padding is at the end of each row), and pad the
   * logits back to tgtLen with zeros that the loss ignores (their labels are padding). The result is that of the
   * full-length computation, padded keys being masked anyway; with batches bucketed by length
   * (`trainer.bucketByLength`) it saves most of the work. Reads the batch's ids on the CPU once per call.
   */
  trimPadding: z.boolean().default(true),
  /**
   * Post-training int8 (docs/quantization.md; written by `quantizeModel` / `loom quantize`): every encoder and
   * decoder layer's attention projections (self and cross) and feed-forward network, and the output projection, run
   * in int8 with per-output-channel weights; the embeddings, layer norms, softmax and the attention's score and value
   * products stay float32. Static mode's calibrated inputs are keyed by product path (`encoder_1/attention/qkv`,
   * `decoder_1/cross_attention/memory`, `output`).
   */
  quantization: quantizationOption.optional(),
});
type Options = z.output<typeof seq2seqOptions>;

/**
 * The Transformer (Vaswani et al. 2017, §3, Figure 1) for sequence-to-sequence tasks: embeddings scaled by √d_model
 * plus sinusoidal positions (§3.4-3.5), N encoder layers over the source (padding masked), N decoder layers with
 * causal self-attention and attention over the encoder output, and a linear projection to target logits.
 * Decoding (greedy and beam search) caches keys and values, so each step costs one position.
 *
 * Input contract: a batch is one tensor of rows [source | decoder input] of srcLen + tgtLen ids: the source padded
 * with `padId` after its end, then the target shifted right (BOS first), padded the same way (what the `cmudict`
 * data source gives). One tensor, because a batch has one input (`Batch.x`) for the trainer, its metrics, length
 * bucketing and data parallelism alike; the model is what knows the two halves. Decoding takes sources alone
 * ([batch, srcLen]). Output: [batch, tgtLen, tgtVocab] logits. Parameters are named `<name>/src_embedding/embeddings`,
 * `<name>/encoder_1/...` (name `transformer` by default).
 */
export class TransformerSeq2Seq extends Module {
  private readonly srcEmbed: Layer;
  private readonly tgtEmbed: Layer;
  private readonly pos: PositionalEncoding;
  private readonly drop: Layer;
  private readonly encoders: Layer[];
  private readonly decoders: TransformerDecoder[];
  private readonly norms: Layer[];
  private readonly out: Layer;

  constructor(
    readonly opts: Options,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'transformer', [null, opts.srcLen + opts.tgtLen], ctx);
    const { dModel: d, numHeads, ff, dropout, preNorm } = opts;
    const embedding = (vocabSize: number) => ({ type: 'embedding', vocabSize, dim: d, initializer: { type: 'random-normal', stddev: d ** -0.5 } });
    this.srcEmbed = this.add('src_embedding', embedding(opts.srcVocab));
    this.tgtEmbed = this.add('tgt_embedding', embedding(opts.tgtVocab));
    this.pos = this.add('positions', { type: 'positional-encoding', maxLength: Math.max(opts.srcLen, opts.tgtLen) + 1 }, PositionalEncoding);
    this.drop = this.add('dropout', { type: 'dropout', rate: dropout });
    const sublayer = { numHeads, ff, dropout, preNorm };
    const layers = Array.from({ length: opts.layers }, (_, i) => i + 1);
    const q = opts.quantization;
    this.encoders = layers.map((i) => this.add(`encoder_${i}`, { type: 'transformer-encoder', ...sublayer, ...subQuantization(q, `encoder_${i}`) }));
    this.decoders = layers.map((i) =>
      this.add(`decoder_${i}`, { type: 'transformer-decoder', ...sublayer, ...subQuantization(q, `decoder_${i}`) }, TransformerDecoder),
    );
    // Pre-norm stacks end with a layer norm (Xiong et al. 2020); post-norm layers already end normalised.
    this.norms = preNorm ? [this.add('encoder_norm', { type: 'layer-norm' }), this.add('decoder_norm', { type: 'layer-norm' })] : [];
    this.out = this.add('output', quantizedDenseSpec({ type: 'dense', units: opts.tgtVocab }, q, 'output'));
  }

  protected buildParts(inputShape: Shape, rng: Rng): Shape {
    const { srcLen, tgtLen, dModel: d } = this.opts;
    if (inputShape.length !== 2 || inputShape[1] !== srcLen + tgtLen) throw this.shapeError(`[batch, srcLen + tgtLen = ${srcLen + tgtLen}] ids`, inputShape);
    const seq: Shape = [null, null, d];
    this.srcEmbed.build([null, null], rng);
    this.tgtEmbed.build([null, null], rng);
    for (const l of [this.pos, this.drop, ...this.encoders, ...this.decoders, ...this.norms]) l.build(seq, rng);
    this.out.build(seq, rng);
    return [null, tgtLen, this.opts.tgtVocab];
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const b = x.shape[0]!;
    const { srcLen, tgtLen } = this.opts;
    const [ls, lt] = this.opts.trimPadding ? this.usedLengths(x) : [srcLen, tgtLen];
    const { memory, mask } = this.encode(tf.slice(x, [0, 0], [b, ls]), ctx);
    const tgt = tf.slice(x, [0, srcLen], [b, lt]);
    const tctx: ForwardContext = { ...ctx, mask: this.padMask(tgt), memory, memoryMask: mask };
    let h = this.drop.apply(this.pos.apply(this.embed(this.tgtEmbed, tgt, tctx), tctx), tctx);
    for (const dec of this.decoders) h = dec.apply(h, tctx);
    if (this.norms[1]) h = this.norms[1].apply(h, tctx);
    const logits = this.out.apply(h, tctx);
    return lt < tgtLen
      ? tf.pad(logits, [
          [0, 0],
          [0, tgtLen - lt],
          [0, 0],
        ])
      : logits;
  }

  /**
   * The source and target lengths the batch uses: one past the last non-padding id of any row (at least 1); the full
   * lengths where the ids cannot be read synchronously (on webgpu in Node, once they live only on the GPU).
   */
  private usedLengths(x: tf.Tensor): [number, number] {
    const { srcLen, tgtLen, padId } = this.opts;
    let v: tf.TypedArray;
    try {
      v = x.dataSync();
    } catch {
      return [srcLen, tgtLen];
    }
    const width = srcLen + tgtLen;
    let ls = 1;
    let lt = 1;
    for (let r = 0; r < x.shape[0]!; r++) {
      for (let j = srcLen - 1; j >= ls; j--)
        if (v[r * width + j] !== padId) {
          ls = j + 1;
          break;
        }
      for (let j = tgtLen - 1; j >= lt; j--)
        if (v[r * width + srcLen + j] !== padId) {
          lt = j + 1;
          break;
        }
    }
    return [ls, lt];
  }

  /** The encoder output [batch, srcTime, d] and the source padding mask. */
  encode(src: tf.Tensor, ctx: ForwardContext): { memory: tf.Tensor; mask: tf.Tensor } {
    const mask = this.padMask(src);
    const ectx: ForwardContext = { ...ctx, mask };
    let h = this.drop.apply(this.pos.apply(this.embed(this.srcEmbed, src, ectx), ectx), ectx);
    for (const enc of this.encoders) h = enc.apply(h, ectx);
    if (this.norms[0]) h = this.norms[0].apply(h, ectx);
    return { memory: h, mask };
  }

  /** Logits [batch, tgtVocab] for the next token, given the previous tokens [batch, 1] at `position`; updates `caches`. */
  step(prev: tf.Tensor, position: number, memory: tf.Tensor, memoryMask: tf.Tensor, caches: DecoderCache[], ctx: ForwardContext): tf.Tensor {
    const dctx: ForwardContext = { ...ctx, memory, memoryMask };
    let h = this.pos.applyAt(this.embed(this.tgtEmbed, prev, dctx), position);
    this.decoders.forEach((dec, i) => (h = dec.step(h, dctx, caches[i]!)));
    if (this.norms[1]) h = this.norms[1].apply(h, dctx);
    return tf.squeeze(this.out.apply(h, dctx), [1]);
  }

  /**
   * Empty per-decoder-layer caches for {@link step} (`capacity`: the positions decoding will reach at most, when
   * known); release them with {@link releaseCaches}.
   */
  newCaches(capacity?: number): DecoderCache[] {
    return this.decoders.map((d) => d.newCache(capacity));
  }

  releaseCaches(caches: DecoderCache[]): void {
    for (const [i, c] of caches.entries()) this.decoders[i]!.releaseCache(c);
  }

  /**
   * Greedy decoding of a batch of sources [batch, srcLen]: the most probable token at each step, until EOS. Each
   * step's tokens are read with `await data()` (webgpu in Node has no synchronous read; the cpu backends give the
   * same values either way).
   */
  async greedy(src: tf.Tensor, maxLen = this.opts.tgtLen): Promise<number[][]> {
    const b = src.shape[0]!;
    const ctx: ForwardContext = { training: false, rng: null as never };
    const enc = tf.tidy(() => {
      const e = this.encode(src, ctx);
      return { memory: tf.keep(e.memory), mask: tf.keep(e.mask) };
    });
    const caches = this.newCaches(maxLen);
    const out: number[][] = Array.from({ length: b }, () => []);
    const finished = new Array<boolean>(b).fill(false);
    let prev = new Int32Array(b).fill(this.opts.bosId);
    try {
      for (let t = 0; t < maxLen && finished.includes(false); t++) {
        const best = tf.tidy(() => tf.argMax(this.step(tf.tensor2d(prev, [b, 1], 'int32'), t, enc.memory, enc.mask, caches, ctx), 1));
        try {
          prev = Int32Array.from(await best.data());
        } finally {
          best.dispose();
        }
        prev.forEach((token, i) => {
          if (finished[i]) return;
          if (token === this.opts.eosId) finished[i] = true;
          else out[i]!.push(token);
        });
      }
      return out;
    } finally {
      this.releaseCaches(caches);
      tf.dispose([enc.memory, enc.mask]);
    }
  }

  /**
   * Beam search (Sutskever et al. 2014; Wu et al. 2016's length penalty lp(Y) = ((5 + |Y|) / 6)^α): keeps the
   * `beam` best partial outputs per source; a finished output scores log P(Y|X) / lp(Y). An EOS counts only among a
   * step's `beam` best candidates (as fairseq and Hugging Face do), and a source is done only when it has `beam`
   * finished outputs and no live one can still beat the worst of them: a live score can at best reach
   * log P / lp(maxLen + 1) (tensor2tensor's bound; an output cut at maxLen scores by lp(maxLen + 1)), since log P
   * only falls as it grows. Returns the best output of each source (ids, without BOS / EOS). Beam 1 is greedy
   * decoding. Each step's log-probabilities are read with `await data()`, as in {@link greedy}.
   */
  async beamSearch(src: tf.Tensor, beam: number, maxLen = this.opts.tgtLen, alpha = 0.6): Promise<number[][]> {
    if (beam === 1) return this.greedy(src, maxLen);
    const b = src.shape[0]!;
    const ctx: ForwardContext = { training: false, rng: null as never };
    const { eosId, bosId } = this.opts;
    const lp = (n: number) => ((5 + n) / 6) ** alpha;
    // Every source is repeated `beam` times: row r = item · beam + k.
    const rows = Int32Array.from({ length: b * beam }, (_, r) => Math.floor(r / beam));
    const caches = this.newCaches(maxLen);
    // The cross-attention keys and values are projected from each source's memory once, then repeated for its beam
    // (TransformerDecoder.cacheMemory), not projected from the repeated memory.
    const enc = tf.tidy(() => {
      const e = this.encode(src, ctx);
      for (const [i, c] of caches.entries()) this.decoders[i]!.cacheMemory(c, e.memory, rows);
      return { memory: tf.keep(tf.gather(e.memory, rows)), mask: tf.keep(tf.gather(e.mask, rows)) };
    });
    type Hyp = { tokens: number[]; logp: number };
    let alive: Hyp[][] = Array.from({ length: b }, () => [{ tokens: [], logp: 0 }]);
    // The best `beam` finished outputs of each source, best first.
    const done: { tokens: number[]; score: number }[][] = Array.from({ length: b }, () => []);
    const finished = (i: number) => {
      const d = done[i]!;
      if (d.length < beam) return false;
      const best = Math.max(...alive[i]!.map((h) => h.logp));
      return alive[i]!.length === 0 || d.at(-1)!.score >= best / lp(maxLen + 1);
    };
    try {
      // Sources still searching: a live output that could still beat their finished ones.
      const open = () => alive.map((a, i) => a.length > 0 && !finished(i));
      for (let t = 0, searching = open(); t < maxLen && searching.some(Boolean); t++, searching = open()) {
        // Rows without a live hypothesis (at the start, or for finished items) decode a dummy continuation.
        const prev = Int32Array.from({ length: b * beam }, (_, r) => {
          const h = alive[Math.floor(r / beam)]![r % beam];
          return h ? (h.tokens.at(-1) ?? bosId) : bosId;
        });
        const logp = tf.tidy(() => tf.logSoftmax(this.step(tf.tensor2d(prev, [b * beam, 1], 'int32'), t, enc.memory, enc.mask, caches, ctx)));
        const V = logp.shape[1]!;
        let lv: Float32Array;
        try {
          lv = (await logp.data()) as Float32Array;
        } finally {
          logp.dispose();
        }
        const origin = new Int32Array(b * beam);
        const next: Hyp[][] = [];
        for (let i = 0; i < b; i++) {
          if (!searching[i]) {
            next.push([]); // done: no live output can beat its finished ones
            continue;
          }
          const cands = bestCandidates(alive[i]!, lv, i * beam * V, V, 2 * beam);
          const keep: Hyp[] = [];
          for (const [rank, c] of cands.entries()) {
            if (keep.length === beam) break;
            const tokens = [...alive[i]![c.from]!.tokens, c.token];
            if (c.token === eosId) {
              if (rank >= beam) continue; // an EOS outside the step's beam best does not end an output
              const d = done[i]!;
              d.push({ tokens: tokens.slice(0, -1), score: c.logp / lp(tokens.length) });
              d.sort((p, q) => q.score - p.score); // stable: an earlier output wins a tie
              if (d.length > beam) d.pop();
            } else {
              origin[i * beam + keep.length] = i * beam + c.from;
              keep.push({ tokens, logp: c.logp });
            }
          }
          next.push(keep);
        }
        alive = next;
        // Each row's cached keys and values follow its hypothesis to its new row.
        for (const c of caches) reorderCache(c.self, origin);
      }
      return alive.map((a, i) => {
        const all = [...done[i]!, ...a.map((h) => ({ tokens: h.tokens, score: h.logp / lp(h.tokens.length + 1) }))];
        return all.sort((p, q) => q.score - p.score)[0]?.tokens ?? [];
      });
    } finally {
      this.releaseCaches(caches);
      tf.dispose([enc.memory, enc.mask]);
    }
  }

  private embed(table: Layer, ids: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return tf.mul(table.apply(ids, ctx), Math.sqrt(this.opts.dModel));
  }

  private padMask(ids: tf.Tensor): tf.Tensor {
    return tf.cast(tf.notEqual(ids, this.opts.padId), 'float32');
  }
}

export default definePlugin({
  kind: 'model',
  name: 'transformer-seq2seq',
  description: 'encoder-decoder Transformer with padding and causal masks, cached greedy and beam-search decoding (Vaswani et al. 2017)',
  schema: seq2seqOptions,
  examples: [
    { options: { srcVocab: 6, tgtVocab: 5, srcLen: 3, tgtLen: 3, dModel: 4, numHeads: 2, ff: 6, layers: 1, dropout: 0 }, inputShape: [2, 6], inputInts: 5 },
  ],
  properties: [
    'cached incremental decoding gives the same logits as full decoding',
    'encoder self-attention without positions is permutation-equivariant',
    'beam search with beam 1 equals greedy decoding',
  ],
  create: (opts, ctx) => new TransformerSeq2Seq(opts, ctx),
});

/**
 * The `count` best continuations of one source's live hypotheses, best first: hypothesis k's log-probability plus
 * token v's from row k of `logp` (`V` values a row from `offset`), in the order a stable sort of all k·V of them
 * by score would give (equal scores in (k, v) order), without sorting them all. A beam search step takes at most
 * 2·beam of them: each one taken either extends a kept hypothesis (≤ beam) or ends one with EOS (≤ beam).
 */
export function bestCandidates(
  hyps: readonly { logp: number }[],
  logp: ArrayLike<number>,
  offset: number,
  V: number,
  count: number,
): { from: number; token: number; logp: number }[] {
  const score = new Float64Array(count),
    index = new Int32Array(count);
  let n = 0;
  hyps.forEach((h, k) => {
    const base = offset + k * V;
    for (let v = 0; v < V; v++) {
      const x = h.logp + logp[base + v]!;
      // Enters if better than the worst kept (a tie keeps the earlier one, as the stable sort does).
      if (n === count && !(x > score[n - 1]!)) continue;
      let at = n < count ? n++ : n - 1;
      while (at > 0 && score[at - 1]! < x) {
        score[at] = score[at - 1]!;
        index[at] = index[at - 1]!;
        at--;
      }
      score[at] = x;
      index[at] = k * V + v;
    }
  });
  return Array.from({ length: n }, (_, j) => ({ from: Math.floor(index[j]! / V), token: index[j]! % V, logp: score[j]! }));
}
