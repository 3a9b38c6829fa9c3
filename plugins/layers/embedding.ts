import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin,
  LayerBase,
  layerOptions,
  pluginSpecSchema,
  type ForwardContext,
  type Initializer,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';

const schema = layerOptions.extend({
  /** Number of token ids (ids must lie in [0, vocabSize)). */
  vocabSize: z.number().int().positive(),
  dim: z.number().int().positive(),
  initializer: pluginSpecSchema.default({ type: 'random-uniform', min: -0.05, max: 0.05 }),
  /**
   * Word-type dropout (Gal & Ghahramani 2016, §4.2): in training, drop whole rows of the table, so every occurrence of
   * a dropped word in the batch becomes the zero vector; kept rows are scaled by 1/(1 − rate). One mask per batch,
   * as Merity et al. (2018) implement it.
   */
  dropout: z.number().min(0).lt(1).default(0),
  /**
   * Id 0 is padding (Keras's `mask_zero`): the layer sets `ctx.mask` ([batch, time], 0 at padding) so that later
   * attention and pooling layers ignore those positions.
   */
  maskZero: z.boolean().default(false),
});

/**
 * Token embedding (Bengio et al. 2003, the "C" matrix): maps integer ids [batch, ...] to rows of a
 * [vocabSize, dim] table, giving [batch, ..., dim]. Its gradient is a scatter-add into the rows that were used.
 */
export class Embedding extends LayerBase {
  private table!: tf.Variable;
  private readonly init: Initializer;

  constructor(
    private readonly opts: z.output<typeof schema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'embedding');
    this.init = ctx.create('initializer', opts.initializer, 'initializer');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    if (inputShape.length < 2) throw this.shapeError('[batch, ...ids]', inputShape);
    this.table = this.addWeight('embeddings', [this.opts.vocabSize, this.opts.dim], this.init, rng, 'embedding');
    return [...inputShape, this.opts.dim];
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    const ids = tf.cast(x, 'int32');
    if (this.opts.maskZero) ctx.mask = tf.cast(tf.notEqual(ids, 0), 'float32');
    if (!ctx.training || this.opts.dropout === 0) return tf.gather(this.table, ids);
    const rate = this.opts.dropout;
    const keep = tf.cast(tf.greaterEqual(tf.randomUniform([this.opts.vocabSize, 1], 0, 1, 'float32', ctx.rng.nextSeed()), rate), 'float32');
    return tf.gather(tf.mul(this.table, tf.mul(keep, 1 / (1 - rate))), ids);
  }

  /** The [vocabSize, dim] table (for weight tying with an output projection). */
  get embeddings(): tf.Variable {
    return this.table;
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'embedding',
  description: 'lookup table from integer ids to dense vectors (Bengio et al. 2003)',
  schema,
  examples: [
    { options: { vocabSize: 7, dim: 3 }, inputShape: [2, 4], inputInts: 7 },
    { options: { vocabSize: 5, dim: 2, dropout: 0.4 }, inputShape: [3, 4], inputInts: 5 },
  ],
  properties: [
    'word dropout zeroes every occurrence of a dropped word type and scales kept ones by 1/(1 − rate)',
    'maskZero: padded positions change nothing downstream',
  ],
  create: (opts, ctx) => new Embedding(opts, ctx),
});
