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
  type Parameter,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';
import { Embedding } from '../layers/embedding';
import { quantizedDenseSpec } from '../layers/quantized-dense';

export const bertOptions = moduleOptions.extend({
  vocabSize: z.number().int().positive(),
  maxLength: z.number().int().positive().default(128),
  /** BERT-Tiny: 2 layers, 128 wide, 2 heads; BERT-Mini: 4, 256, 4 (Turc et al. 2019). */
  dModel: z.number().int().positive().default(128),
  numHeads: z.number().int().positive().default(2),
  layers: z.number().int().positive().default(2),
  ff: z.number().int().positive().optional(),
  dropout: z.number().min(0).lt(1).default(0.1),
  /** Dropout on the attention probabilities (BERT's attention_probs_dropout_prob); default: `dropout` (0.1 in BERT). */
  attentionDropout: z.number().min(0).lt(1).optional(),
  /**
   * `bert`: every weight matrix from the truncated normal with σ 0.02 (BERT's initializer_range), biases zero, layer
   * norms γ 1 and β 0. `glorot`: Glorot-uniform kernels outside the embeddings (loom's choice before this option).
   */
  init: z.enum(['bert', 'glorot']).default('bert'),
  /** The layer norms' ε: BERT's 1e-12 (the embedding norm, every encoder layer's and the masked-LM head's). */
  layerNormEpsilon: z.number().positive().default(1e-12),
  /**
   * `mlm`: logits over the vocabulary at every position (masked-LM pretraining, through the tied embeddings);
   * `classifier`: logits over `classes` from the [CLS] position through a tanh pooler (fine-tuning).
   */
  head: z.enum(['mlm', 'classifier']).default('mlm'),
  /**
   * Masked-LM head only: BERT's `max_predictions_per_seq` (Devlin et al.'s create_pretraining_data.py and
   * run_pretraining.py's `gather_indexes`). Each input row then carries its `maxLength` token ids followed by P
   * positions to predict (unused slots 0, with label 0 = ignored), and the head runs at those positions only:
   * logits [batch, P, vocab]. At the same weights, the logits at the selected positions are those of the full head;
   * the vocabulary projection and its softmax, which dominate a small BERT's step, shrink by time / P.
   */
  maxPredictions: z.number().int().positive().optional(),
  classes: z.number().int().min(2).default(2),
  padId: z.number().int().min(0).default(0),
  /**
   * Post-training int8 (docs/quantization.md; written by `quantizeModel` / `loom quantize`): every encoder layer's
   * attention projections and feed-forward network, the pooler, the classifier and the masked-LM transform run in
   * int8 with per-output-channel weights; the embeddings, the tied masked-LM output projection, layer norms, softmax
   * and the attention's score and value products stay float32. Static mode's calibrated inputs are keyed by product
   * path (`encoder_1/attention/qkv`, `encoder_1/ff2`, `pooler`).
   */
  quantization: quantizationOption.optional(),
});

/**
 * BERT (Devlin et al. 2018, §3): token plus learned position embeddings, layer norm and dropout, N post-norm
 * Transformer encoder layers with GELU and padding masks, and either the masked-LM head (dense + GELU + layer norm,
 * then the tied embedding matrix plus an output bias) or the sequence classifier (a tanh "pooler" on the [CLS]
 * position, then a dense layer). Input [batch, time ≤ maxLength] ids (padding `padId`). The encoder's parameter
 * names do not depend on the head, so pretrained weights load into a classifier by name (see
 * {@link encoderParameters}).
 */
export class Bert extends Module {
  private readonly embed: Embedding;
  private readonly encoder: Layer[];
  private readonly headLayers: Layer[];
  private outputBias: tf.Variable | null = null;

  constructor(
    readonly opts: z.output<typeof bertOptions>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'bert', [null, opts.maxLength + (opts.head === 'mlm' ? (opts.maxPredictions ?? 0) : 0)], ctx);
    const init = { type: 'truncated-normal', stddev: 0.02 };
    const d = opts.dModel;
    this.embed = this.add('token_embedding', { type: 'embedding', vocabSize: opts.vocabSize, dim: d, initializer: init }, Embedding);
    const pos = this.add('position_embedding', { type: 'positional-encoding', kind: 'learned', maxLength: opts.maxLength, initializer: init });
    const norm = { type: 'layer-norm', epsilon: opts.layerNormEpsilon };
    const kernel: JsonObject = opts.init === 'bert' ? { kernelInitializer: init } : {};
    const embedNorm = this.add('embedding_norm', norm);
    const drop = this.add('dropout', { type: 'dropout', rate: opts.dropout });
    const layer = {
      type: 'transformer-encoder',
      numHeads: opts.numHeads,
      ff: opts.ff ?? 4 * d,
      dropout: opts.dropout,
      attentionDropout: opts.attentionDropout ?? opts.dropout,
      activation: 'gelu',
      normEpsilon: opts.layerNormEpsilon,
      ...kernel,
    };
    const encoders = Array.from({ length: opts.layers }, (_, i) =>
      this.add(`encoder_${i + 1}`, { ...layer, ...subQuantization(opts.quantization, `encoder_${i + 1}`) }),
    );
    const dense = (part: string, spec: JsonObject) => this.add(part, quantizedDenseSpec({ type: 'dense', ...spec }, opts.quantization, part));
    // In the order of the forward pass; the embedding table is applied first, outside the list.
    this.encoder = [pos, embedNorm, drop, ...encoders];
    this.headLayers =
      opts.head === 'mlm'
        ? [dense('mlm_transform', { units: d, activation: 'gelu', ...kernel }), this.add('mlm_norm', norm)]
        : [
            dense('pooler', { units: d, activation: 'tanh', ...kernel }),
            this.add('classifier_dropout', { type: 'dropout', rate: opts.dropout }),
            dense('classifier', { units: opts.classes, ...kernel }),
          ];
  }

  /** P, where the masked-LM head gathers its positions from the input's last P columns; else 0. */
  private get predictions(): number {
    return this.opts.head === 'mlm' ? (this.opts.maxPredictions ?? 0) : 0;
  }

  protected buildParts(inputShape: Shape, rng: Rng): Shape {
    const p = this.predictions;
    if (p > 0) {
      if (inputShape.length !== 2 || inputShape[1] === null || inputShape[1]! <= p || inputShape[1]! > this.opts.maxLength + p)
        throw this.shapeError(`[batch, time ≤ maxLength = ${this.opts.maxLength}, then maxPredictions = ${p} positions] ids`, inputShape);
    } else this.expectIds(inputShape, this.opts.maxLength, 'maxLength');
    const seq: Shape = [null, null, this.opts.dModel];
    this.embed.build([null, null], rng);
    for (const l of this.encoder) l.build(seq, rng);
    if (this.opts.head === 'mlm') {
      for (const l of this.headLayers) l.build(seq, rng);
      this.outputBias = this.addWeight('mlm_output_bias', [this.opts.vocabSize], 'zeros', rng, 'bias');
      return [null, p > 0 ? p : inputShape[1]!, this.opts.vocabSize];
    }
    let shape: Shape = [null, this.opts.dModel];
    for (const l of this.headLayers) shape = l.build(shape, rng);
    return [null, this.opts.classes];
  }

  apply(input: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const p = this.predictions;
    const [rows, cols] = input.shape as [number, number];
    const x = p > 0 ? tf.slice(input, [0, 0], [rows, cols - p]) : input;
    const c: ForwardContext = { ...ctx, mask: tf.cast(tf.notEqual(x, this.opts.padId), 'float32') };
    let h = this.embed.apply(x, c);
    for (const l of this.encoder) h = l.apply(h, c);
    if (this.opts.head === 'classifier') {
      let y = tf.squeeze(tf.slice(h, [0, 0, 0], [-1, 1, -1]), [1]); // the [CLS] position
      for (const l of this.headLayers) y = l.apply(y, c);
      return y;
    }
    if (p > 0) {
      // gather_indexes: row r's position j is row r·t + j of the flattened [batch·time, d] states.
      const t = cols - p;
      const positions = tf.cast(tf.slice(input, [0, t], [rows, p]), 'int32');
      const flat = tf.add(positions, tf.mul(tf.reshape(tf.range(0, rows, 1, 'int32'), [rows, 1]), tf.scalar(t, 'int32')));
      h = tf.reshape(tf.gather(tf.reshape(h, [rows * t, this.opts.dModel]), tf.reshape(flat, [rows * p])), [rows, p, this.opts.dModel]);
    }
    for (const l of this.headLayers) h = l.apply(h, c);
    const [b, t, d] = h.shape as [number, number, number];
    const logits = tf.add(tf.matMul(tf.reshape(h, [b * t, d]), this.embed.embeddings, false, true), this.outputBias!);
    return tf.reshape(logits, [b, t, this.opts.vocabSize]);
  }

  /** The parameters shared by both heads (embeddings and encoder layers): what pretraining hands to fine-tuning. */
  encoderParameters(): Parameter[] {
    return [this.embed, ...this.encoder].flatMap((l) => l.parameters());
  }
}

/**
 * BERT's masked-LM corruption (Devlin et al. 2018, §3.1 and appendix A.1): each maskable token is selected with
 * probability `rate` (15 %); a selected token is replaced by `maskId` with probability 0.8, by a uniformly random
 * token from [firstRandom, vocabSize) with 0.1, and kept with 0.1. Returns the corrupted ids and the labels: the
 * original id at selected positions, `ignoreId` elsewhere (so the loss counts selected positions only).
 */
export function maskTokens(
  ids: ArrayLike<number>,
  rng: Rng,
  o: { vocabSize: number; maskId: number; firstRandom: number; maskable: (id: number) => boolean; rate?: number; ignoreId?: number },
): { input: Int32Array; labels: Int32Array } {
  const rate = o.rate ?? 0.15;
  const input = Int32Array.from(ids);
  const labels = new Int32Array(input.length).fill(o.ignoreId ?? 0);
  for (let i = 0; i < input.length; i++) {
    if (!o.maskable(input[i]!) || rng.next() >= rate) continue;
    labels[i] = input[i]!;
    const r = rng.next();
    if (r < 0.8) input[i] = o.maskId;
    else if (r < 0.9) input[i] = o.firstRandom + rng.int(o.vocabSize - o.firstRandom);
  }
  return { input, labels };
}

/**
 * The selected positions of one masked sequence in BERT's gathered form (`maxPredictions`): the positions whose
 * label is not `ignoreId`, in order, and their labels, each padded to `max` with position 0 and label `ignoreId`
 * (a padded slot adds nothing to a loss or metric that ignores that label). Selections beyond `max` are dropped
 * from the prediction targets (as create_pretraining_data.py never selects more than max_predictions_per_seq), and
 * counted in `dropped`; given the masked `input`, their tokens are put back there (the label is the original token),
 * so that no token is corrupted without being predicted, as in create_pretraining_data.py.
 */
export function gatherPredictions(
  labels: ArrayLike<number>,
  max: number,
  ignoreId = 0,
  input?: Int32Array,
): { positions: Int32Array; labels: Int32Array; dropped: number } {
  const positions = new Int32Array(max);
  const out = new Int32Array(max).fill(ignoreId);
  let n = 0;
  let dropped = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === ignoreId) continue;
    if (n === max) {
      dropped++;
      if (input) input[i] = labels[i]!;
      continue;
    }
    positions[n] = i;
    out[n++] = labels[i]!;
  }
  return { positions, labels: out, dropped };
}

export default definePlugin({
  kind: 'model',
  name: 'bert',
  description: 'BERT encoder with a masked-LM head (tied embeddings) or a [CLS] classifier head (Devlin et al. 2018)',
  schema: bertOptions,
  examples: [
    { options: { vocabSize: 9, maxLength: 6, dModel: 8, numHeads: 2, layers: 1, dropout: 0 }, inputShape: [2, 5], inputInts: 9 },
    {
      options: { vocabSize: 9, maxLength: 6, dModel: 8, numHeads: 2, layers: 1, dropout: 0, head: 'classifier', classes: 3 },
      inputShape: [2, 5],
      inputInts: 9,
    },
  ],
  properties: [
    'masking selects 15 % of maskable tokens and replaces them 80/10/10 by [MASK], a random token, or themselves (statistical test)',
    'padding changes nothing at real positions; a classifier loads the pretrained encoder by parameter name',
  ],
  create: (opts, ctx) => new Bert(opts, ctx),
});
