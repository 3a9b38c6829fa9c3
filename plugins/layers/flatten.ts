import * as tf from '@tensorflow/tfjs-core';
import { definePlugin, LayerBase, layerOptions, type ForwardContext, type Shape } from '../../core';

/** Flattens every example to a vector: [batch, d1, d2, ...] -> [batch, d1·d2·...]. */
export class Flatten extends LayerBase {
  private features = 0;
  protected buildLayer(inputShape: Shape): Shape {
    if (inputShape.length < 2) this.expectRank(inputShape, 2, '[batch, ...features]');
    this.features = (inputShape.slice(1) as number[]).reduce((a, b) => a * b, 1);
    return [null, this.features];
  }
  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    return tf.reshape(x, [x.shape[0]!, this.features]);
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'flatten',
  description: 'reshape each example to a vector',
  schema: layerOptions,
  examples: [{ inputShape: [2, 3, 4, 2] }],
  create: (opts) => new Flatten(opts.name ?? 'flatten'),
});
