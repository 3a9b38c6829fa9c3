/**
 * Post-training int8 quantization (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
 * Integer-Arithmetic-Only Inference"): a real value r is represented as r ≈ S·(q − Z) (eq. 1).
 * - Weights: int8, symmetric (Z = 0), one scale per output channel, q ∈ [−127, 127] (−128 is left out so the range
 *   is symmetric, as PyTorch's per-channel symmetric observer does).
 * - Activations: uint8 with one scale and zero point per tensor; the range is widened to contain 0, so that 0
 *   (padding, relu's floor) is exact. Static: the range is calibrated once on a sample of training data; dynamic
 *   (PyTorch's `quantize_dynamic`): each batch's own min and max.
 * The product is taken in int32 and dequantized with eq. 7's zero-point correction (native/src/int8.h):
 *   y[i, j] = S_x·S_w[j]·Σ_p (q_x[i, p] − Z_x)·q_w[p, j] + b[j].
 * `int8Linear` and `int8Conv2d` run the backend's fused int8 kernel when it has one (`FUSED_KERNELS.int8Linear`,
 * the native-cpu backend's AVX-512 VNNI / AVX2 kernels) and otherwise the same arithmetic in tfjs ops (the integer
 * products in float32, exact while |Σ| < 2^24), so quantized models run on every backend. Their gradient with respect
 * to x is the straight-through estimate (Bengio et al. 2013): that of the float layer with the dequantized weights.
 */
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { readsAsynchronously } from './backend';
import { ConfigError } from './errors';
import type { Parameter, ParamRole } from './interfaces';
import { FUSED_KERNELS, hasKernel } from './kernels';
import { computeFans } from './layer';
import { type Rng, uniformFloats } from './random';

/** The largest weight code: weights are quantized to [−127, 127]. */
export const WEIGHT_QMAX = 127;
/** The saved layers' quantization format (their `version` option). */
export const QUANTIZATION_VERSION = 1;

/** An activation tensor's uint8 quantization: r ≈ scale·(q − zeroPoint), q ∈ [0, 255]. */
export interface ActivationQuant {
  scale: number;
  zeroPoint: number;
}

/** Rounds half to even (as tfjs's `round` and C's `nearbyint` do). */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return (Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r) + 0; // + 0: no −0
}

/**
 * Symmetric per-channel quantization of a weight whose last axis is the output channel (a dense kernel [in, out], a
 * convolution's [kh, kw, in, out]): scale[j] = max |w[·, j]| / 127 (1 for an all-zero channel) and
 * q = round(w / scale[j]), in [−127, 127]. Dequantized, every weight is within half a step (scale[j] / 2) of w.
 */
export function quantizePerChannel(values: Float32Array, outChannels: number): { q: Float32Array; scales: Float32Array } {
  const scales = new Float32Array(outChannels);
  for (let i = 0; i < values.length; i++) {
    const j = i % outChannels;
    scales[j] = Math.max(scales[j]!, Math.abs(values[i]!));
  }
  for (let j = 0; j < outChannels; j++) scales[j] = scales[j]! > 0 ? Math.fround(scales[j]! / WEIGHT_QMAX) : 1;
  const q = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = roundHalfEven(values[i]! / scales[i % outChannels]!);
    q[i] = Math.min(WEIGHT_QMAX, Math.max(-WEIGHT_QMAX, v));
  }
  return { q, scales };
}

/**
 * uint8 parameters for values observed in [min, max] (eq. 1 with the range widened to contain 0): scale =
 * (max − min) / 255 and zeroPoint = round(−min / scale), so that min and max map to 0 and 255 and 0 is exact.
 * An empty range (all zeros) gets scale 1.
 */
export function activationQuant(min: number, max: number): ActivationQuant {
  const lo = Math.min(min, 0),
    hi = Math.max(max, 0);
  const scale = hi > lo ? Math.fround((hi - lo) / 255) : 1;
  return { scale, zeroPoint: Math.min(255, Math.max(0, roundHalfEven(-lo / scale))) };
}

/**
 * A tensor's own range as uint8 parameters: dynamic quantization's, computed per batch (one pass over its values).
 * With `product` (the quantized product's name) the range is also reported to the observer that
 * {@link observeInputRanges} installs, which is how a composed model's static mode is calibrated.
 */
export function dynamicQuant(x: tf.Tensor, product?: string): ActivationQuant {
  const [lo, hi] = range(x);
  if (observer && product !== undefined) observer(product, lo, hi);
  return activationQuant(lo, hi);
}

/** [min, max] of x's values, NaN skipped: one kernel where the backend has FUSED_KERNELS.minMax, else a pass here. */
function range(x: tf.Tensor): [number, number] {
  if (x.dtype === 'float32' && hasKernel(FUSED_KERNELS.minMax)) {
    const r = tf.engine().runKernel(FUSED_KERNELS.minMax, { x }) as tf.Tensor;
    const [lo, hi] = r.dataSync() as Float32Array;
    r.dispose();
    return [lo!, hi!];
  }
  const v = x.dataSync() as Float32Array;
  let lo = Infinity,
    hi = -Infinity;
  // Conditional expressions rather than branches: V8 compiles them to selects, where branches on random data
  // mispredict (0.51 against 1.39 ms for 2^18 values). NaN is skipped either way (every comparison with it is false).
  for (let i = 0; i < v.length; i++) {
    const e = v[i]!;
    // biome-ignore lint/complexity/useMathMinMax: Math.min would return NaN for a NaN value, which this skips
    lo = e < lo ? e : lo;
    // biome-ignore lint/complexity/useMathMinMax: as above
    hi = e > hi ? e : hi;
  }
  return [lo, hi];
}

type RangeObserver = (product: string, min: number, max: number) => void;
let observer: RangeObserver | null = null;

/**
 * Runs `body` with `observe` called on every dynamically quantized input (the product's name, the batch's minimum and
 * maximum): a model quantized in dynamic mode, run on calibration data, reports each product's input ranges
 * (PyTorch's observers, here without inserting any). Synchronous, like the forward passes it watches.
 */
export function observeInputRanges<T>(observe: RangeObserver, body: () => T): T {
  const previous = observer;
  observer = observe;
  try {
    return body();
  } finally {
    observer = previous;
  }
}

/** q(x) − Z as a float tensor of integers in [−255, 255]: x quantized to uint8, then centred on its zero point. */
export function quantizeCentred(x: tf.Tensor, quant: ActivationQuant): tf.Tensor {
  return tf.tidy(() => tf.sub(tf.clipByValue(tf.add(tf.round(tf.div(x, quant.scale)), quant.zeroPoint), 0, 255), quant.zeroPoint));
}

/** The dequantized weight, q·scale (per output channel, the last axis). */
export function dequantizeWeight(kernel: tf.Tensor, scale: tf.Tensor1D): tf.Tensor {
  return tf.mul(kernel, scale);
}

function finish(acc: tf.Tensor, quant: ActivationQuant, scale: tf.Tensor1D, bias: tf.Tensor1D | null, relu: boolean): tf.Tensor {
  let y = tf.mul(acc, tf.mul(tf.scalar(quant.scale), scale));
  if (bias) y = tf.add(y, bias);
  return relu ? tf.relu(y) : y;
}

/**
 * A quantized dense layer's product: x [rows, in] quantized with `quant`, kernel [in, out] of integers in
 * [−127, 127] with per-column `scale`, then bias and relu. On the fused kernel where the backend has it.
 */
export function int8Linear(
  x: tf.Tensor2D,
  kernel: tf.Tensor2D,
  scale: tf.Tensor1D,
  bias: tf.Tensor1D | null,
  quant: ActivationQuant,
  relu: boolean,
): tf.Tensor2D {
  const forward = (input: tf.Tensor2D): tf.Tensor2D => {
    if (hasKernel(FUSED_KERNELS.int8Linear)) {
      const inputs: tf.NamedTensorMap = bias ? { x: input, kernel, scale, bias } : { x: input, kernel, scale };
      return tf
        .engine()
        .runKernel(FUSED_KERNELS.int8Linear, inputs, { inputScale: quant.scale, inputZeroPoint: quant.zeroPoint, relu } as never) as tf.Tensor2D;
    }
    return tf.tidy(() => finish(tf.matMul(quantizeCentred(input, quant) as tf.Tensor2D, kernel), quant, scale, bias, relu) as tf.Tensor2D);
  };
  const f = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    const value = forward(input as tf.Tensor2D);
    if (relu) save([value]);
    return {
      value,
      // The float layer's gradient (straight through the quantization), through the relu where there is one.
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.matMul(reluGrad(dy, relu ? saved[0]! : null) as tf.Tensor2D, dequantizeWeight(kernel, scale) as tf.Tensor2D, false, true),
    };
  }) as never);
  return f(x) as tf.Tensor2D;
}

/** A quantized 2-D convolution (NHWC; kernel [kh, kw, in, out] of integers, per-output-channel `scale`). */
export function int8Conv2d(
  x: tf.Tensor4D,
  kernel: tf.Tensor4D,
  scale: tf.Tensor1D,
  bias: tf.Tensor1D | null,
  quant: ActivationQuant,
  relu: boolean,
  strides: [number, number],
  pad: 'valid' | 'same',
): tf.Tensor4D {
  const forward = (input: tf.Tensor4D): tf.Tensor4D => {
    if (hasKernel(FUSED_KERNELS.int8Conv2d)) {
      const inputs: tf.NamedTensorMap = bias ? { x: input, kernel, scale, bias } : { x: input, kernel, scale };
      const attrs = { inputScale: quant.scale, inputZeroPoint: quant.zeroPoint, relu, strides, pad };
      return tf.engine().runKernel(FUSED_KERNELS.int8Conv2d, inputs, attrs as never) as tf.Tensor4D;
    }
    return tf.tidy(() => finish(tf.conv2d(quantizeCentred(input, quant) as tf.Tensor4D, kernel, strides, pad), quant, scale, bias, relu) as tf.Tensor4D);
  };
  const f = tf.customGrad(((input: tf.Tensor, save: tf.GradSaveFunc) => {
    const value = forward(input as tf.Tensor4D);
    if (relu) save([value]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.conv2dTranspose(
          reluGrad(dy, relu ? saved[0]! : null) as tf.Tensor4D,
          dequantizeWeight(kernel, scale) as tf.Tensor4D,
          input.shape as [number, number, number, number],
          strides,
          pad,
        ),
    };
  }) as never);
  return f(x) as tf.Tensor4D;
}

/** dy where the relu passed its input (y > 0), 0 elsewhere; dy itself without a relu. */
function reluGrad(dy: tf.Tensor, y: tf.Tensor | null): tf.Tensor {
  return y ? tf.mul(dy, tf.step(y)) : dy;
}

// ---------------------------------------------------------------- the quantized layers' shared parts

/** Options every quantized layer takes besides its float layer's: how its input is quantized, and the format. */
export const quantizedLayerOptions = z.object({
  /** static: the calibrated `inputScale` and `inputZeroPoint`; dynamic: each batch's own range (PyTorch's quantize_dynamic). */
  mode: z.enum(['static', 'dynamic']).default('static'),
  /** The input's scale S_x (static mode), calibrated on training data by `quantizeModel`. */
  inputScale: z.number().positive().optional(),
  /** The input's zero point Z_x in [0, 255] (static mode). */
  inputZeroPoint: z.number().int().min(0).max(255).optional(),
  /** The quantization format of the saved weights (integers in float32 `kernel`, per-channel `kernel_scale`). */
  version: z.literal(QUANTIZATION_VERSION).default(QUANTIZATION_VERSION),
});
export type QuantizedLayerOptions = z.output<typeof quantizedLayerOptions>;

/** A static layer needs its calibrated input scale and zero point: an issue on `inputScale` otherwise. */
export function refineStatic(o: { mode: string; inputScale?: number; inputZeroPoint?: number }, c: z.RefinementCtx): void {
  if (o.mode === 'static' && (o.inputScale === undefined || o.inputZeroPoint === undefined)) {
    c.addIssue({
      code: 'custom',
      path: [o.inputScale === undefined ? 'inputScale' : 'inputZeroPoint'],
      message: 'mode "static" needs the calibrated inputScale and inputZeroPoint (loom quantize computes them), or use mode "dynamic"',
    });
  }
}

/**
 * The input's quantization for this batch: the calibrated one (static) or the batch's own range (dynamic). Dynamic
 * mode reads the batch's range on the host inside the forward pass, which must be synchronous; on a backend that
 * reads asynchronously (webgpu in Node) that read is impossible, so layer `layer` is refused with a ConfigError
 * saying what to use instead (static mode runs there: its scale and zero point are numbers in the config).
 */
export function inputQuant(o: QuantizedLayerOptions, x: tf.Tensor, layer: string): ActivationQuant {
  if (o.mode !== 'dynamic') return { scale: o.inputScale!, zeroPoint: o.inputZeroPoint! };
  if (readsAsynchronously())
    throw new ConfigError(
      'mode',
      `layer "${layer}": dynamic quantization reads each batch's range on the host in the forward pass (a synchronous read), which the ${tf.getBackend()} backend cannot do; use mode "static" (calibrated: loom quantize --mode static) or a cpu backend`,
    );
  return dynamicQuant(x, layer);
}

/**
 * A quantized layer's saved tensors at build: glorot-uniform weights (Glorot & Bengio 2010) quantized per channel,
 * so that a layer built from scratch (the conformance suite's) is a valid one; `quantizeModel` then writes the
 * trained model's. They are buffers, not trainable parameters: the layers are for inference. The kernel is marked
 * `int8`, so saveModel stores it as one byte a weight. `prefix` starts the weights' names (`qkv_`: `qkv_kernel`,
 * `qkv_kernel_scale`, `qkv_bias`) for a layer that holds several products.
 */
export function quantizedWeights(layer: string, shape: number[], useBias: boolean, rng: Rng, prefix = ''): Parameter[] {
  const out = shape.at(-1)!,
    n = shape.reduce((a, b) => a * b, 1);
  const { fanIn, fanOut } = computeFans(shape);
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const u = uniformFloats(rng.nextSeed(), n).map((v) => (2 * v - 1) * limit);
  const { q, scales } = quantizePerChannel(u, out);
  const buffer = (weight: string, values: Float32Array, s: number[], role: ParamRole, int8 = false): Parameter => {
    const initial = tf.tensor(values, s, 'float32');
    const variable = tf.variable(initial, false);
    initial.dispose(); // the variable holds its own reference to the values
    return { name: `${layer}/${prefix}${weight}`, variable, role, trainable: false, ...(int8 ? { int8 } : {}) };
  };
  return [
    buffer('kernel', q, shape, 'kernel', true),
    buffer('kernel_scale', scales, [out], 'other'),
    ...(useBias ? [buffer('bias', new Float32Array(out), [out], 'bias')] : []),
  ];
}

// ---------------------------------------------------------------- quantizing a composed model's parts

/** A calibrated input: the uint8 scale and zero point of one quantized product's input (static mode). */
export const calibratedInput = z.object({ inputScale: z.number().positive(), inputZeroPoint: z.number().int().min(0).max(255) });

/**
 * The `quantization` option of a composed model (gpt, bert, transformer) and of the layers inside it: every dense
 * product in it (attention projections, feed-forward, heads) runs in int8 with per-output-channel weights, and the
 * rest (embeddings, layer norms, softmax, the attention's score and value products) in float32. `inputs` holds, in
 * static mode, each product's calibrated input by its path below the option's owner: `block_1/ff1`,
 * `block_1/self_attention/qkv` (written by `quantizeModel`). A layer receives the entries below its own part name.
 */
export const quantizationOption = z.object({
  mode: z.enum(['static', 'dynamic']),
  inputs: z.record(z.string(), calibratedInput).default({}),
  version: z.literal(QUANTIZATION_VERSION).default(QUANTIZATION_VERSION),
});
export type QuantizationOption = z.output<typeof quantizationOption>;

/** The part `part`'s share of `q`: the same mode, with the inputs under `<part>/` (their paths relative to the part). */
export function subQuantization(q: QuantizationOption | undefined, part: string): { quantization?: QuantizationOption } {
  if (!q) return {};
  const prefix = `${part}/`;
  const inputs = Object.fromEntries(Object.entries(q.inputs).flatMap(([k, v]) => (k.startsWith(prefix) ? [[k.slice(prefix.length), v]] : [])));
  return { quantization: { mode: q.mode, inputs, version: q.version } };
}

/**
 * One product's input quantization inside a quantized layer: its calibrated input (static; a ConfigError naming
 * `quantization.inputs.<product>` when it was not calibrated) or the batch's range (dynamic, reported to an
 * observer under `<layer>/<product>`).
 */
export function productQuant(q: QuantizationOption, x: tf.Tensor, layer: string, product: string): ActivationQuant {
  if (q.mode === 'static') {
    const c = q.inputs[product];
    if (!c)
      throw new ConfigError(
        `quantization.inputs.${product}`,
        `layer "${layer}": static mode needs the calibrated input of "${product}" (quantizeModel writes it)`,
      );
    return { scale: c.inputScale, zeroPoint: c.inputZeroPoint };
  }
  return inputQuant({ mode: 'dynamic', version: QUANTIZATION_VERSION }, x, `${layer}/${product}`);
}
