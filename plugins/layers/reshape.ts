import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { definePlugin, LayerBase, layerOptions, type ForwardContext, type Shape } from '../../core';

const schema = layerOptions.extend({
  /** Shape of one example after reshaping (no batch dimension); one entry may be −1, inferred from the size. */
  targetShape: z
    .array(
      z
        .number()
        .int()
        .refine((d) => d > 0 || d === -1, 'a positive size or -1'),
    )
    .min(1),
});

/** Reshapes every example to `targetShape` (Keras's Reshape); the element count must match. No parameters. */
export class Reshape extends LayerBase {
  private target: number[] = [];

  constructor(private readonly opts: z.output<typeof schema>) {
    super(opts.name ?? 'reshape');
  }

  protected buildLayer(inputShape: Shape): Shape {
    const size = (inputShape.slice(1) as number[]).reduce((a, b) => a * b, 1);
    const t = this.opts.targetShape;
    const known = t.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
    const free = t.filter((d) => d === -1).length;
    if (free > 1 || (free === 0 && known !== size) || (free === 1 && size % known !== 0)) {
      throw this.shapeError(`an input of ${free ? `a multiple of ${known}` : known} elements per example to reshape to [${t}]`, inputShape);
    }
    this.target = t.map((d) => (d === -1 ? size / known : d));
    return [null, ...this.target];
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    return tf.reshape(x, [x.shape[0]!, ...this.target]);
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'reshape',
  description: 'reshape each example to a target shape (one axis may be inferred with -1)',
  schema,
  examples: [
    { options: { targetShape: [3, -1] }, inputShape: [2, 12] },
    { options: { targetShape: [6] }, inputShape: [2, 2, 3] },
  ],
  create: (opts) => new Reshape(opts),
});
