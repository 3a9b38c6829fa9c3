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
  /** 'sinusoidal' (Vaswani et al. 2017, §3.5) or 'learned' (a trained [maxLength, d] table, as BERT and GPT). */
  kind: z.enum(['sinusoidal', 'learned']).default('sinusoidal'),
  maxLength: z.number().int().positive().default(512),
  initializer: pluginSpecSchema.default({ type: 'random-normal', stddev: 0.02 }),
});

/** PE(pos, 2i) = sin(pos / 10000^{2i/d}), PE(pos, 2i+1) = cos(pos / 10000^{2i/d}) (Vaswani et al. 2017, §3.5). */
export function sinusoidalTable(length: number, d: number): tf.Tensor2D {
  const v = new Float32Array(length * d);
  for (let pos = 0; pos < length; pos++)
    for (let i = 0; i < d; i++) {
      const angle = pos / 10000 ** ((2 * Math.floor(i / 2)) / d);
      v[pos * d + i] = i % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
    }
  return tf.tensor2d(v, [length, d]);
}

/** Adds position information to [batch, time, d] inputs: fixed sinusoids or a learned table. */
export class PositionalEncoding extends LayerBase {
  private table!: tf.Tensor;
  private readonly init: Initializer;

  constructor(
    private readonly opts: z.output<typeof schema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'positional-encoding');
    this.init = ctx.create('initializer', opts.initializer, 'initializer');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 3, '[batch, time, d_model]', [1]);
    const [, t, d] = inputShape as [null, number | null, number];
    if (t !== null && t > this.opts.maxLength) throw this.shapeError(`at most maxLength = ${this.opts.maxLength} positions`, inputShape);
    this.table =
      this.opts.kind === 'learned'
        ? this.addWeight('positions', [this.opts.maxLength, d], this.init, rng, 'embedding')
        : tf.keep(sinusoidalTable(this.opts.maxLength, d));
    return inputShape;
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    return this.applyAt(x, 0);
  }

  /** Adds the encodings of positions offset, offset + 1, ... (incremental decoding feeds one position at a time). */
  applyAt(x: tf.Tensor, offset: number): tf.Tensor {
    const [, t, d] = x.shape as [number, number, number];
    if (offset + t > this.opts.maxLength) throw this.shapeError(`at most maxLength = ${this.opts.maxLength} positions (got up to ${offset + t})`, [null, t, d]);
    return tf.add(x, tf.slice(this.table, [offset, 0], [t, d]));
  }

  override dispose(): void {
    if (this.opts.kind === 'sinusoidal') this.table?.dispose();
    super.dispose();
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'positional-encoding',
  description: 'sinusoidal (Vaswani et al. 2017, §3.5) or learned position embeddings added to the input',
  schema,
  examples: [
    { options: { maxLength: 8 }, inputShape: [2, 5, 4] },
    { options: { kind: 'learned', maxLength: 6 }, inputShape: [2, 3, 4] },
  ],
  properties: ['adds sin(pos/10000^(2i/d)) and cos(pos/10000^(2i/d)) to even and odd features (Vaswani et al. 2017, §3.5)'],
  create: (opts, ctx) => new PositionalEncoding(opts, ctx),
});
