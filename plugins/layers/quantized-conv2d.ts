import type * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin,
  int8Conv2d,
  inputQuant,
  LayerBase,
  layerOptions,
  pluginSpecSchema,
  quantizedLayerOptions,
  quantizedWeights,
  refineStatic,
  type Activation,
  type ForwardContext,
  type Parameter,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';
import { convOutLength } from './conv2d';

const pair = z.union([z.number().int().positive(), z.tuple([z.number().int().positive(), z.number().int().positive()])]);
const schema = layerOptions
  .extend({
    filters: z.number().int().positive(),
    kernelSize: pair,
    strides: pair.default(1),
    padding: z.enum(['valid', 'same']).default('valid'),
    activation: pluginSpecSchema.default('linear'),
    useBias: z.boolean().default(true),
  })
  .extend(quantizedLayerOptions.shape)
  .superRefine(refineStatic);

const asPair = (v: number | [number, number]): [number, number] => (typeof v === 'number' ? [v, v] : v);

/**
 * A 2-D convolution (NHWC) with int8 weights, one scale per filter, and a uint8-quantized input (Jacob et al. 2018;
 * static or dynamic as `quantized-dense`). On native-cpu: im2col of the quantized input and the int8 GEMM; elsewhere
 * the same arithmetic in tfjs ops. Inference only. Made from a trained `conv2d` by `quantizeModel`.
 */
export class QuantizedConv2D extends LayerBase {
  private readonly activation: Activation;
  private saved: Parameter[] = [];

  constructor(
    private readonly opts: z.output<typeof schema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'quantized-conv2d');
    this.activation = ctx.create('activation', opts.activation, 'activation');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    this.expectRank(inputShape, 4, '[batch, height, width, channels]');
    const [, h, w, c] = inputShape as [null, number, number, number];
    const [kh, kw] = asPair(this.opts.kernelSize);
    const [sh, sw] = asPair(this.opts.strides);
    const oh = convOutLength(h, kh, sh, this.opts.padding);
    const ow = convOutLength(w, kw, sw, this.opts.padding);
    if (oh <= 0 || ow <= 0) throw this.shapeError(`images of at least ${kh}x${kw} for 'valid' padding`, inputShape);
    this.saved = quantizedWeights(this.name, [kh, kw, c, this.opts.filters], this.opts.useBias, rng);
    return [null, oh, ow, this.opts.filters];
  }

  buffers(): Parameter[] {
    return this.saved;
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const [kernel, scale, bias] = this.saved.map((p) => p.variable);
    const act = this.activation.spec.type;
    const y = int8Conv2d(
      x as tf.Tensor4D,
      kernel as tf.Tensor4D,
      scale as tf.Tensor1D,
      (bias as tf.Tensor1D) ?? null,
      inputQuant(this.opts, x, this.name),
      act === 'relu',
      asPair(this.opts.strides),
      this.opts.padding,
    );
    return act === 'relu' || act === 'linear' ? y : this.activation.apply(y);
  }

  override dispose(): void {
    for (const p of this.saved) p.variable.dispose();
    this.saved = [];
    super.dispose();
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'quantized-conv2d',
  description: '2-D convolution with int8 per-filter weights and a uint8-quantized input (static or dynamic); inference only',
  schema,
  properties: [
    'on every backend, its output is within the bound the scales give of the float convolution with the same weights',
    'the native int8 kernel agrees with the tfjs reference path',
  ],
  examples: [
    { options: { filters: 2, kernelSize: 3, inputScale: 0.02, inputZeroPoint: 128 }, inputShape: [2, 5, 5, 1] },
    { options: { filters: 3, kernelSize: [2, 3], strides: 2, padding: 'same', activation: 'relu', mode: 'dynamic' }, inputShape: [1, 6, 7, 2] },
  ],
  create: (opts, ctx) => new QuantizedConv2D(opts, ctx),
});
