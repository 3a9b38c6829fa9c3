import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin, LayerBase, layerOptions, pluginSpecSchema, type ForwardContext, type Initializer, type PluginContext,
  type Rng, type Shape,
} from '../../core';

const schema = layerOptions.extend({
  /** Number of token ids (ids must lie in [0, vocabSize)). */
  vocabSize: z.number().int().positive(),
  dim: z.number().int().positive(),
  initializer: pluginSpecSchema.default({ type: 'random-uniform', min: -0.05, max: 0.05 }),
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
    this.init = ctx.registry.create('initializer', opts.initializer, `${ctx.path}.initializer`);
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    if (inputShape.length < 2) throw this.shapeError('[batch, ...ids]', inputShape);
    this.table = this.addWeight('embeddings', [this.opts.vocabSize, this.opts.dim], this.init, rng, 'embedding');
    return [...inputShape, this.opts.dim];
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    return tf.gather(this.table, tf.cast(x, 'int32'));
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
  examples: [{ options: { vocabSize: 7, dim: 3 }, inputShape: [2, 4], inputInts: 7 }],
  create: (opts, ctx) => new Embedding(opts, ctx),
});
