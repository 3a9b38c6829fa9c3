import type * as tf from '@tensorflow/tfjs-core';
import { definePlugin, LayerBase, layerOptions, pluginSpecSchema, type Activation, type ForwardContext, type Shape } from '../../core';

/** Applies a registered activation (relu, softmax, ...) as a layer of its own. */
export class ActivationLayer extends LayerBase {
  constructor(
    name: string,
    private readonly fn: Activation,
  ) {
    super(name);
  }
  protected buildLayer(inputShape: Shape): Shape {
    return inputShape;
  }
  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    return this.fn.apply(x);
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'activation',
  description: 'applies an activation plugin elementwise (or over the last axis for softmax)',
  schema: layerOptions.extend({ activation: pluginSpecSchema }),
  examples: [
    { options: { activation: 'relu' }, inputShape: [2, 6] },
    { options: { activation: 'softmax' }, inputShape: [3, 4] },
  ],
  create: (opts, ctx) => new ActivationLayer(opts.name ?? 'activation', ctx.create('activation', opts.activation, 'activation')),
});
