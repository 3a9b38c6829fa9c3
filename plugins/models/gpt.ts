import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin,
  Module,
  moduleOptions,
  quantizationOption,
  subQuantization,
  type ForwardContext,
  type JsonObject,
  type Layer,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';
import { Embedding } from '../layers/embedding';
import { PositionalEncoding } from '../layers/positional-encoding';
import { quantizedDenseSpec } from '../layers/quantized-dense';
import { TransformerDecoder, type DecoderCache } from '../layers/transformer-decoder';

export const gptOptions = moduleOptions.extend({
  vocabSize: z.number().int().positive(),
  /** Context length (block size): the most positions the model sees at once. */
  context: z.number().int().positive(),
  dModel: z.number().int().positive().default(384),
  numHeads: z.number().int().positive().default(6),
  layers: z.number().int().positive().default(6),
  /** Feed-forward width; GPT uses 4·d_model. */
  ff: z.number().int().positive().optional(),
  dropout: z.number().min(0).lt(1).default(0.2),
  /** Dropout on the attention probabilities (GPT-2's attn_pdrop); default: `dropout`, as GPT-2 and nanoGPT have it. */
  attentionDropout: z.number().min(0).lt(1).optional(),
  /**
   * `gpt2`: every kernel from N(0, 0.02) and the projections into the residual stream (attention output, MLP
   * output) from N(0, 0.02/√(2·layers)) (Radford et al. 2019, §2.3; nanoGPT); biases zero. `glorot`: Glorot-uniform
   * kernels (loom's choice before this option, kept for models trained so).
   */
  init: z.enum(['gpt2', 'glorot']).default('gpt2'),
  /** Output logits = h·Eᵀ with the input embedding E (Press & Wolf 2017), as GPT-2/3 do. */
  tieEmbeddings: z.boolean().default(true),
  /**
   * Post-training int8 (docs/quantization.md; written by `quantizeModel` / `loom quantize`): every block's attention
   * projections (q,k,v and output) and MLP, and an untied head, run in int8 with per-output-channel weights; the
   * embeddings, the tied output projection (it is the embedding matrix), layer norms, softmax and the attention's
   * score and value products stay float32. Static mode's calibrated inputs are keyed by product path
   * (`block_1/self_attention/qkv`, `block_1/ff1`, `head`).
   */
  quantization: quantizationOption.optional(),
});

/**
 * A decoder-only Transformer language model in the GPT-2/3 form (Radford et al. 2019; Brown et al. 2020, §2.1):
 * token plus learned position embeddings, N pre-norm blocks of causal self-attention and a GELU feed-forward
 * network, a final layer norm, and logits through the (tied) embedding matrix. Input [batch, time ≤ context] ids,
 * output [batch, time, vocab] logits. `generate` samples with temperature and top-k, caching keys and values.
 * Parameters are named `<name>/token_embedding/embeddings`, `<name>/block_1/...` (name `gpt` by default).
 */
export class GPT extends Module {
  private readonly embed: Embedding;
  private readonly pos: PositionalEncoding;
  private readonly drop: Layer;
  private readonly blocks: TransformerDecoder[];
  private readonly norm: Layer;
  private readonly head: Layer | null;

  constructor(
    readonly opts: z.output<typeof gptOptions>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'gpt', [null, opts.context], ctx);
    const { dModel: d, numHeads } = opts;
    const init = { type: 'random-normal', stddev: 0.02 };
    this.embed = this.add('token_embedding', { type: 'embedding', vocabSize: opts.vocabSize, dim: d, initializer: init }, Embedding);
    this.pos = this.add('position_embedding', { type: 'positional-encoding', kind: 'learned', maxLength: opts.context, initializer: init }, PositionalEncoding);
    this.drop = this.add('dropout', { type: 'dropout', rate: opts.dropout });
    const gelu = { type: 'gelu', approximate: 'tanh' };
    const { dropout } = opts;
    const kernels: JsonObject =
      opts.init === 'gpt2' ? { kernelInitializer: init, residualInitializer: { type: 'random-normal', stddev: 0.02 / Math.sqrt(2 * opts.layers) } } : {};
    const attentionDropout = opts.attentionDropout ?? dropout;
    const block = {
      type: 'transformer-decoder',
      numHeads,
      ff: opts.ff ?? 4 * d,
      dropout,
      attentionDropout,
      preNorm: true,
      crossAttention: false,
      activation: gelu,
      ...kernels,
    };
    this.blocks = Array.from({ length: opts.layers }, (_, i) =>
      this.add(`block_${i + 1}`, { ...block, ...subQuantization(opts.quantization, `block_${i + 1}`) }, TransformerDecoder),
    );
    this.norm = this.add('final_norm', { type: 'layer-norm' });
    const headInit: JsonObject = opts.init === 'gpt2' ? { kernelInitializer: init } : {};
    this.head = opts.tieEmbeddings
      ? null
      : this.add('head', quantizedDenseSpec({ type: 'dense', units: opts.vocabSize, useBias: false, ...headInit }, opts.quantization, 'head'));
  }

  protected buildParts(inputShape: Shape, rng: Rng): Shape {
    this.expectIds(inputShape, this.opts.context, 'context');
    const seq: Shape = [null, null, this.opts.dModel];
    this.embed.build([null, null], rng);
    for (const l of [this.pos, this.drop, ...this.blocks, this.norm]) l.build(seq, rng);
    this.head?.build(seq, rng);
    return [null, inputShape[1]!, this.opts.vocabSize];
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    let h = this.drop.apply(this.pos.apply(this.embed.apply(x, ctx), ctx), ctx);
    for (const b of this.blocks) h = b.apply(h, ctx);
    return this.logits(this.norm.apply(h, ctx), ctx);
  }

  /** Logits of the next token after `ids` [batch, n] placed at `position`, updating the per-block caches. */
  step(ids: tf.Tensor, position: number, caches: DecoderCache[], ctx: ForwardContext): tf.Tensor {
    let h = this.pos.applyAt(this.embed.apply(ids, ctx), position);
    this.blocks.forEach((b, i) => (h = b.step(h, ctx, caches[i]!)));
    const out = this.logits(this.norm.apply(h, ctx), ctx);
    return tf.squeeze(tf.slice(out, [0, out.shape[1]! - 1, 0], [-1, 1, -1]), [1]);
  }

  /**
   * Continues `prompt` by `length` tokens, sampling each from softmax(logits / temperature) restricted to the
   * `topK` most likely (temperature 0: the most likely token). The prompt and generated tokens stay within the
   * context window of the cache; the run's `rng` makes sampling reproducible. Each step's logits are read with
   * `await data()`: a backend that reads asynchronously (webgpu in Node) has no synchronous read, and on the cpu
   * backends the values are the same.
   */
  async generate(prompt: number[], length: number, o: { temperature: number; topK?: number; rng: Rng }): Promise<number[]> {
    if (prompt.length === 0) throw this.shapeError('a prompt of at least one token', [1, 0]);
    if (prompt.length + length > this.opts.context) throw this.shapeError(`prompt + length ≤ context = ${this.opts.context}`, [1, prompt.length + length]);
    if (length === 0) return []; // nothing to decode (and no first step's logits to free)
    const ctx: ForwardContext = { training: false, rng: o.rng };
    const caches = this.blocks.map((b) => b.newCache(prompt.length + length));
    const out: number[] = [];
    try {
      let next = tf.tidy(() => tf.keep(this.step(tf.tensor2d([prompt], undefined, 'int32'), 0, caches, ctx)));
      for (let i = 0; i < length; i++) {
        let logits: number[];
        try {
          logits = Array.from(await next.data());
        } finally {
          next.dispose();
        }
        const token = sample(logits, o.temperature, o.topK, o.rng);
        out.push(token);
        if (i + 1 < length) next = tf.tidy(() => tf.keep(this.step(tf.tensor2d([[token]], undefined, 'int32'), prompt.length + i, caches, ctx)));
      }
      return out;
    } finally {
      for (const [i, c] of caches.entries()) this.blocks[i]!.releaseCache(c);
    }
  }

  /** The tied output projection: h · Eᵀ, sharing the embedding variable (one tensor, gradients from both uses). */
  private logits(h: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    if (this.head) return this.head.apply(h, ctx);
    const [b, t, d] = h.shape as [number, number, number];
    return tf.reshape(tf.matMul(tf.reshape(h, [b * t, d]), this.embed.embeddings, false, true), [b, t, this.opts.vocabSize]);
  }

  get tokenEmbedding(): tf.Variable {
    return this.embed.embeddings;
  }
}

/**
 * A token drawn from softmax(logits / temperature) over the top-k logits (top-k 0 or none: all of them, as in Hugging
 * Face's generate); temperature 0 is argmax.
 */
export function sample(logits: number[], temperature: number, topK: number | undefined, rng: Rng): number {
  const order = logits
    .map((v, i) => [v, i] as const)
    .sort((a, b) => b[0] - a[0])
    .slice(0, topK || logits.length);
  if (temperature === 0) return order[0]![1];
  const max = order[0]![0];
  const weights = order.map(([v]) => Math.exp((v - max) / temperature));
  let u = rng.next() * weights.reduce((a, b) => a + b, 0);
  for (const [i, w] of weights.entries()) if ((u -= w) <= 0) return order[i]![1];
  return order.at(-1)![1];
}

export default definePlugin({
  kind: 'model',
  name: 'gpt',
  description: 'decoder-only Transformer LM: learned positions, pre-norm causal blocks, GELU, tied embeddings (Radford et al. 2019; Brown et al. 2020)',
  schema: gptOptions,
  examples: [{ options: { vocabSize: 7, context: 5, dModel: 8, numHeads: 2, layers: 1, dropout: 0 }, inputShape: [2, 4], inputInts: 7 }],
  properties: [
    'the logits at t do not change when later tokens change',
    'cached generation gives the logits of uncached full forward passes',
    'weight tying: the output projection is the embedding variable itself, trained by both uses',
  ],
  create: (opts, ctx) => new GPT(opts, ctx),
});
