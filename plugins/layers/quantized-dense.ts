import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import {
  definePlugin,
  int8Linear,
  inputQuant,
  LayerBase,
  layerOptions,
  pluginSpecSchema,
  quantizedLayerOptions,
  type PartSpec,
  type QuantizationOption,
  quantizedWeights,
  refineStatic,
  type Activation,
  type ForwardContext,
  type Parameter,
  type PluginContext,
  type Rng,
  type Shape,
} from '../../core';

const schema = layerOptions
  .extend({
    units: z.number().int().positive(),
    activation: pluginSpecSchema.default('linear'),
    useBias: z.boolean().default(true),
  })
  .extend(quantizedLayerOptions.shape)
  .superRefine(refineStatic);

/**
 * A dense layer with int8 weights (Jacob et al. 2018): y = f(S_x·S_w ⊙ (q(x) − Z_x)·Q_W + b), Q_W [in, units] of
 * integers in [−127, 127] with one scale per unit, x quantized to uint8 per tensor (calibrated, or each batch's range
 * in dynamic mode as PyTorch's `quantize_dynamic`). On native-cpu the product runs on the int8 GEMM (AVX-512 VNNI or
 * AVX2); elsewhere on the same arithmetic in tfjs ops. Inference only: its tensors are buffers (saved, not trained).
 * Made from a trained `dense` by `quantizeModel` (runtime/quantize.ts) or `loom quantize`.
 */
export class QuantizedDense extends LayerBase {
  private readonly activation: Activation;
  private saved: Parameter[] = [];

  constructor(
    private readonly opts: z.output<typeof schema>,
    ctx: PluginContext,
  ) {
    super(opts.name ?? 'quantized-dense');
    this.activation = ctx.create('activation', opts.activation, 'activation');
  }

  protected buildLayer(inputShape: Shape, rng: Rng): Shape {
    if (inputShape.length < 2 || inputShape.at(-1) === null) this.expectRank(inputShape, 2, '[batch, ..., features]');
    this.saved = quantizedWeights(this.name, [inputShape.at(-1)!, this.opts.units], this.opts.useBias, rng);
    return [...inputShape.slice(0, -1), this.opts.units];
  }

  buffers(): Parameter[] {
    return this.saved;
  }

  apply(x: tf.Tensor, _ctx: ForwardContext): tf.Tensor {
    const [kernel, scale, bias] = this.saved.map((p) => p.variable);
    const lead = x.shape.slice(0, -1);
    const x2 = (x.rank === 2 ? x : tf.reshape(x, [-1, x.shape.at(-1)!])) as tf.Tensor2D;
    const act = this.activation.spec.type;
    const fused = act === 'relu' || act === 'linear';
    let y: tf.Tensor = int8Linear(
      x2,
      kernel as tf.Tensor2D,
      scale as tf.Tensor1D,
      (bias as tf.Tensor1D) ?? null,
      inputQuant(this.opts, x2, this.name),
      act === 'relu',
    );
    if (!fused) y = this.activation.apply(y);
    return x.rank === 2 ? y : tf.reshape(y, [...lead, this.opts.units]);
  }

  override dispose(): void {
    for (const p of this.saved) p.variable.dispose();
    this.saved = [];
    super.dispose();
  }
}

export default definePlugin({
  kind: 'layer',
  name: 'quantized-dense',
  description: 'dense layer with int8 per-channel weights and a uint8-quantized input (static or dynamic); inference only',
  schema,
  properties: [
    'on every backend, its output is within the bound the scales give of the float dense layer with the same weights',
    'the native int8 kernel agrees with the tfjs reference path',
    'save and load give the same outputs',
  ],
  examples: [
    { options: { units: 3, inputScale: 0.02, inputZeroPoint: 128 }, inputShape: [2, 4] },
    { options: { units: 2, activation: 'relu', mode: 'dynamic' }, inputShape: [3, 5] },
    { options: { units: 2, activation: 'tanh', useBias: false, mode: 'dynamic' }, inputShape: [2, 3, 4] },
  ],
  create: (opts, ctx) => new QuantizedDense(opts, ctx),
});

/**
 * The part `part` of a composed layer or model as it is built under `q` (its `quantization` option): a `dense` spec
 * becomes a `quantized-dense` one with the same units, activation and bias, in q's mode and, in static mode, with the
 * calibrated input q holds for `part` (without one, the layer's schema refuses it, naming `inputScale`). Any other
 * spec, or no `q`, is returned as it is. Initializers and regularizers are dropped: the weights come from the float
 * model.
 */
export function quantizedDenseSpec(spec: PartSpec, q: QuantizationOption | undefined, part: string): PartSpec {
  if (!q || spec.type !== 'dense') return spec;
  const kept = Object.fromEntries(['name', 'units', 'activation', 'useBias'].filter((k) => spec[k] !== undefined).map((k) => [k, spec[k]!]));
  return { type: 'quantized-dense', ...kept, mode: q.mode, ...(q.mode === 'static' ? (q.inputs[part] ?? {}) : {}) };
}
