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
  /** Parallel branches, each a stack of layers applied to the same input; an empty stack is the identity. */
  branches: z.array(z.array(pluginSpecSchema)).min(2),
  /** Axis along which the branch outputs are joined (negative counts from the end; the batch axis is 0). */
  axis: z.number().int().default(-1),
});

/**
 * Runs several branches on one input and concatenates their outputs along `axis` (the "filter concatenation" of
 * Szegedy et al. 2015, §4; Keras's Concatenate). Every other axis must agree across branches.
 */
export class Concatenate extends LayerBase {
  private readonly branches: LayerStack[];
  private axis = -1;

  constructor(
    private readonly opts: z.output<typeof schema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'concatenate');
    this.branches = opts.branches.map((specs, i) => new LayerStack(specs, ctx, `${this.name}/branch${i + 1}`, `branches[${i}]`));
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    const outs = this.branches.map((b) => b.build(inputShape, rng));
    const rank = outs[0]!.length;
    const axis = this.opts.axis < 0 ? rank + this.opts.axis : this.opts.axis;
    if (axis <= 0 || axis >= rank)
      throw this.shapeError(`an axis in 1..${rank - 1} (got axis ${this.opts.axis}) for branch outputs of rank ${rank}`, inputShape);
    for (const [i, o] of outs.entries()) {
      if (o.length !== rank || o.some((d, k) => k !== axis && d !== outs[0]![k])) {
        throw this.shapeError(
          `branch outputs that agree except on axis ${axis}; branch 1 gives [${outs[0]!.map((d) => d ?? 'batch')}], branch ${i + 1} gives [${o.map((d) => d ?? 'batch')}] for input`,
          inputShape,
        );
      }
    }
    this.axis = axis;
    return outs[0]!.map((d, k) => (k === axis ? outs.reduce((n, o) => n + (o[k] as number), 0) : d));
  }

  apply(x: tf.Tensor, ctx: ForwardContext): tf.Tensor {
    return tf.concat(
      this.branches.map((b) => b.apply(x, ctx)),
      this.axis,
    );
  }

  override parameters(): Parameter[] {
    return this.branches.flatMap((b) => b.parameters());
  }

  buffers(): Parameter[] {
    return this.branches.flatMap((b) => b.buffers());
  }

  resetStates(): void {
    for (const b of this.branches) b.resetStates();
  }

  // A stateful layer in a branch (an LSTM carrying its state across batches) is saved and restored through here:
  // checkpoints, readToHost and mid-epoch validation see the model's state by walking its parts.
  carriedTensors(): tf.Tensor[] {
    return this.branches.flatMap((b) => b.carriedTensors());
  }

  getState(): JsonObject {
    return Object.fromEntries(this.branches.map((b, i) => [`branch${i + 1}`, b.getState()] as const).filter(([, s]) => Object.keys(s).length > 0));
  }

  setState(s: Json): void {
    const byBranch = (s ?? {}) as JsonObject;
    for (const [i, b] of this.branches.entries()) if (`branch${i + 1}` in byBranch) b.setState(byBranch[`branch${i + 1}`]!);
  }

  override dispose(): void {
    for (const b of this.branches) b.dispose();
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'concatenate',
  description: 'parallel branches on one input, outputs joined along an axis (Szegedy et al. 2015, §4)',
  schema,
  examples: [
    { options: { branches: [[{ type: 'dense', units: 3 }], [{ type: 'dense', units: 2, activation: 'relu' }], []] }, inputShape: [2, 4] },
    { options: { branches: [[{ type: 'conv2d', filters: 2, kernelSize: 1 }], [{ type: 'max-pool2d', poolSize: 1 }]], axis: 3 }, inputShape: [1, 3, 3, 2] },
  ],
  create: (opts, ctx) => new Concatenate(opts, ctx),
});
