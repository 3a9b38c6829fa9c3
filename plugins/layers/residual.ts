import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin,
  LayerBase,
  LayerStack,
  layerOptions,
  pluginSpecSchema,
  type ForwardContext,
  type Json,
  type JsonObject,
  type Parameter,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';

const schema = layerOptions.extend({
  /** The residual branch F: a stack of layers whose output shape equals its input shape. */
  layers: z.array(pluginSpecSchema).min(1),
});

/**
 * Residual connection (He et al. 2016, eq. 1): y = x + F(x), where F is the given stack of layers.
 * The identity shortcut needs F to keep the shape; a mismatch is reported with both shapes at build time.
 */
export class Residual extends LayerBase {
  private readonly branch: LayerStack;

  constructor(opts: z.output<typeof schema>, ctx: PluginContext) {
    super(opts.name ?? 'residual');
    this.branch = new LayerStack(opts.layers, ctx, this.name, 'layers');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    const out = this.branch.build(inputShape, rng);
    if (out.join() !== inputShape.join())
      throw this.shapeError(`the branch to keep the input shape, but it outputs [${out.map((d) => d ?? 'batch')}] for input`, inputShape);
    return inputShape;
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return tf.add(x, this.branch.apply(x, ctx));
  }

  override parameters(): Parameter[] {
    return this.branch.parameters();
  }

  buffers(): Parameter[] {
    return this.branch.buffers();
  }

  resetStates(): void {
    this.branch.resetStates();
  }

  // A stateful layer in the branch (an LSTM carrying its state across batches) is saved and restored through here:
  // checkpoints, readToHost and mid-epoch validation see the model's state by walking its parts.
  carriedTensors(): tf.Tensor[] {
    return this.branch.carriedTensors();
  }

  getState(): JsonObject {
    return this.branch.getState();
  }

  setState(s: Json): void {
    this.branch.setState(s);
  }

  override dispose(): void {
    this.branch.dispose();
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'residual',
  description: 'identity shortcut around a stack of layers, y = x + F(x) (He et al. 2016, eq. 1)',
  schema,
  examples: [
    {
      options: {
        layers: [
          { type: 'dense', units: 4, activation: 'tanh' },
          { type: 'dense', units: 4 },
        ],
      },
      inputShape: [2, 4],
    },
    { options: { layers: [{ type: 'layer-norm' }, { type: 'multi-head-attention', numHeads: 2 }] }, inputShape: [2, 3, 4] },
  ],
  create: (opts, ctx) => new Residual(opts, ctx),
});
